// The local stack's embedded database as a process of its own (so the stack can list its pid
// and restart it): PGlite under REMIT_EMBEDDED_DB_DIR, served on REMIT_EMBEDDED_DB_PORT.

import { startEmbeddedDatabase } from './embedded';

async function main() {
  const dataDir = process.env.REMIT_EMBEDDED_DB_DIR;
  const port = Number(process.env.REMIT_EMBEDDED_DB_PORT || 0);
  if (!dataDir) throw new Error('REMIT_EMBEDDED_DB_DIR is required');
  const db = await startEmbeddedDatabase({ dataDir, port, log: (m) => console.log(m) });
  console.log(`embedded database ready: ${db.url.replace(/:[^:@/]*@/, ':***@')}`);
  const stop = async () => {
    await db.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
