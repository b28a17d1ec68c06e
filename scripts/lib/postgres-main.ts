// `npm start`'s embedded database as a process of its own, so that the stack's supervisor lists
// its pid, restarts it if it dies, and stops it last: a real PostgreSQL (scripts/lib/postgres.ts)
// whose data is kept in REMIT_POSTGRES_DATA_DIR across restarts, on REMIT_POSTGRES_PORT.
// The postmaster is this process's child: when it dies this process exits too (and is restarted),
// and SIGINT/SIGTERM here shut it down cleanly.

import { startPostgres } from './postgres';

async function main() {
  const dataDir = process.env.REMIT_POSTGRES_DATA_DIR;
  const port = Number(process.env.REMIT_POSTGRES_PORT || 0);
  if (!dataDir) throw new Error('REMIT_POSTGRES_DATA_DIR is required');
  if (!port) throw new Error('REMIT_POSTGRES_PORT is required');
  const server = await startPostgres({ dataDir, port, serverOutput: 'inherit', log: (m) => console.log(m) });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  await server.exited;
  if (!stopping) {
    console.error('PostgreSQL exited on its own');
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
