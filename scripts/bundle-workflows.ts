// `node --import tsx scripts/bundle-workflows.ts OUT.js`: the Temporal workflow bundle, built once
// (at image build time) instead of by every worker at start-up. A worker loads it when
// REMIT_WORKFLOW_BUNDLE_PATH names it; without it, the worker bundles workflows/ itself.
// `npm test` builds its bundle with the same two functions (scripts/lib/workflow-bundle.ts).

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { buildWorkflowBundle, writeWorkflowBundle } from './lib/workflow-bundle';

async function main() {
  const out = path.resolve(process.argv[2] ?? 'dist/workflow-bundle.js');
  const bundle = await buildWorkflowBundle();
  mkdirSync(path.dirname(out), { recursive: true });
  await writeWorkflowBundle(bundle, out);
  console.log(`workflow bundle: ${out} (${bundle.code.length} bytes, source map ${path.basename(out)}.map)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
