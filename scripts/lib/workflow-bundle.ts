// The product's workflow bundle: how it is built and written (scripts/bundle-workflows.ts, the
// image's prebuilt bundle, and npm test's), and the one a test process uses. `npm test` builds it
// once in its set-up (scripts/test.ts, from the current sources) and names it in
// REMIT_TEST_WORKFLOW_BUNDLE: each test file that runs a worker loads it instead of running
// webpack again (5 s of CPU a file on this machine, 15-25 s of wall clock under load). Run
// outside `npm test`, a file bundles for itself.

import fs from 'node:fs/promises';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

/** Where scripts/test.ts wrote the prebuilt bundle: `<dir>/workflow-bundle.js` and `.js.map`. */
export const PREBUILT_BUNDLE_ENV = 'REMIT_TEST_WORKFLOW_BUNDLE';

const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error(m: string) { console.error(m); }, log() {} };

/** Bundles workflows/ (what the worker runs), quietly. */
export function buildWorkflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quiet as never });
}

/** Writes a bundle where workflowBundle() of the test files finds it. */
export async function writeWorkflowBundle(bundle: WorkflowBundleWithSourceMap, codePath: string): Promise<void> {
  await fs.writeFile(`${codePath}.map`, JSON.stringify(bundle.sourceMap));
  await fs.writeFile(codePath, bundle.code);
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** One workflow bundle per test process: the prebuilt one when `npm test` made it. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const prebuilt = process.env[PREBUILT_BUNDLE_ENV];
  bundle ??= prebuilt
    ? Promise.all([fs.readFile(prebuilt, 'utf8'), fs.readFile(`${prebuilt}.map`, 'utf8')]).then(([code, map]) => ({ code, sourceMap: JSON.parse(map) as WorkflowBundleWithSourceMap['sourceMap'] }))
    : buildWorkflowBundle();
  return bundle;
}
