// The Temporal Web UI for a Temporal server that is not the CLI's dev server (the CLI's UI serves
// only its own dev server): the standalone UI server (github.com/temporalio/ui-server, the same
// code the CLI embeds, its web assets embedded in the Go module), built from the Go module proxy
// into the git-ignored .tools/ when missing, run with a config written here that points it at the
// cluster's frontend (with the cluster's TLS when it has TLS). Used by `npm run cluster`.

import fs from 'node:fs';
import path from 'node:path';
import type { TemporalConnectionSettings } from '../../config/temporal';
import { isExecutable, type Log, REPO_ROOT, run, stderrLog, which } from './proc';
import { TEMPORAL_SERVER_GO_TOOLCHAIN } from './temporal-server';

export const TEMPORAL_UI_MODULE = 'github.com/temporalio/ui-server/v2';
/**
 * The newest release whose dependencies the Go module proxy served here (v2.58.x needs
 * labstack/echo v4.16.1 and go.temporal.io/api v1.64.0, which it refused: 403 "not available").
 * It talks to any server from 1.2x on; the server here is v1.32.2.
 */
export const TEMPORAL_UI_VERSION = 'v2.56.4';

/**
 * The UI server binary: $TEMPORAL_UI_SERVER_PATH when set, else .tools/temporal-ui/<version>/server,
 * built there with `go install` when missing (about 1 minute of compiling, plus downloads: 5.5
 * minutes on a loaded machine the first time).
 */
export async function ensureTemporalUi(log: Log = stderrLog, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.TEMPORAL_UI_SERVER_PATH) {
    const p = path.resolve(env.TEMPORAL_UI_SERVER_PATH);
    if (!isExecutable(p)) throw new Error(`TEMPORAL_UI_SERVER_PATH is ${env.TEMPORAL_UI_SERVER_PATH}, not an executable`);
    return p;
  }
  const dir = path.join(REPO_ROOT, '.tools', 'temporal-ui', TEMPORAL_UI_VERSION);
  const server = path.join(dir, 'server');
  if (isExecutable(server)) return server;
  const go = which('go', env.PATH);
  if (!go) throw new Error(`the Temporal UI server is not in ${dir} and there is no \`go\` on PATH to build it (or set TEMPORAL_UI_SERVER_PATH)`);
  const scratch = `${dir}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(scratch, { recursive: true });
  const started = Date.now();
  log(`Temporal UI: building ${TEMPORAL_UI_MODULE}/cmd/server@${TEMPORAL_UI_VERSION} into ${path.relative(process.cwd(), dir)} (once per machine, a few minutes) ...`);
  try {
    const r = await run(go, ['install', `${TEMPORAL_UI_MODULE}/cmd/server@${TEMPORAL_UI_VERSION}`], { env: { ...env, GOBIN: scratch, GOTOOLCHAIN: TEMPORAL_SERVER_GO_TOOLCHAIN, CGO_ENABLED: '0' }, timeoutMs: 30 * 60_000 });
    if (r.code !== 0) throw new Error(`go install of the Temporal UI server failed (${r.signal ?? `exit ${r.code}`}):\n${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-10).join('\n')}`);
    try {
      fs.renameSync(scratch, dir);
    } catch (err) {
      if (!isExecutable(server)) throw err;
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  log(`Temporal UI: built in ${Math.round((Date.now() - started) / 1000)} s`);
  return server;
}

const yamlString = (v: string) => JSON.stringify(v);

/**
 * The command that runs the UI on 127.0.0.1:`port` against `temporal`, its config written to
 * `<dir>/config/production.yaml` (the keys an operator sets: docs/deploy.md). TLS files are
 * referenced by path, never inlined.
 */
export function temporalUiCommand(o: { binary: string; dir: string; temporal: TemporalConnectionSettings; port: number }): { command: string; args: string[] } {
  const t = o.temporal;
  if (t.apiKey) throw new Error('the Temporal UI server takes no API key (Temporal Cloud has its own UI)');
  const lines = [
    '# Written by scripts/lib/temporal-ui.ts for `npm run cluster`.',
    `temporalGrpcAddress: ${yamlString(t.address)}`,
    'host: 127.0.0.1',
    `port: ${o.port}`,
    'enableUi: true',
    `defaultNamespace: ${yamlString(t.namespace)}`,
    'disableNewsFetch: true',
    'notifyOnNewVersion: false',
    'cors:',
    '  cookieInsecure: true',
    'refreshInterval: 0s',
  ];
  if (t.tls) {
    lines.push('tls:');
    if (t.tls.serverCaFile) lines.push(`  caFile: ${yamlString(t.tls.serverCaFile)}`);
    if (t.tls.clientCertFile) lines.push(`  certFile: ${yamlString(t.tls.clientCertFile)}`);
    if (t.tls.clientKeyFile) lines.push(`  keyFile: ${yamlString(t.tls.clientKeyFile)}`);
    if (t.tls.serverName) lines.push(`  serverName: ${yamlString(t.tls.serverName)}`);
    lines.push('  enableHostVerification: true');
  }
  fs.mkdirSync(path.join(o.dir, 'config'), { recursive: true });
  fs.writeFileSync(path.join(o.dir, 'config', 'production.yaml'), `${lines.join('\n')}\n`, { mode: 0o600 });
  return { command: o.binary, args: ['--root', o.dir, '--config', 'config', '--env', 'production', 'start'] };
}
