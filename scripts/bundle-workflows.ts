// `node --import tsx scripts/bundle-workflows.ts OUT.js`: the Temporal workflow bundle, built once
// (at image build time) instead of by every worker at start-up. A worker loads it when
// REMIT_WORKFLOW_BUNDLE_PATH names it; without it, the worker bundles workflows/ itself.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main() {
  const out = path.resolve(process.argv[2] ?? 'dist/workflow-bundle.js');
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, code);
  console.log(`workflow bundle: ${out} (${code.length} bytes)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
