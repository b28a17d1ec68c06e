// Runs the Prometheus HTTP API emulator on its own (local stack, manual tests). Point the worker
// at it with REMIT_PROMETHEUS_URL. Its lookback scales with REMIT_HOUR_SECONDS like the product.
//
//   REMIT_PROMETHEUS_EMULATOR_PORT   default 9090
//   REMIT_EMULATOR_HOST              default 127.0.0.1

import { timeConfigFromEnv } from '../config/env';
import { startPrometheusEmulator } from './prometheus';

async function main(): Promise<void> {
  const time = timeConfigFromEnv();
  const raw = process.env.REMIT_PROMETHEUS_EMULATOR_PORT;
  const port = raw === undefined || raw === '' ? 9090 : Number(raw);
  if (!Number.isInteger(port) || port < 0) throw new Error(`REMIT_PROMETHEUS_EMULATOR_PORT must be a non-negative integer, got ${JSON.stringify(raw)}`);
  const emu = await startPrometheusEmulator({ port, host: process.env.REMIT_EMULATOR_HOST || '127.0.0.1', hourMs: time.hourMs });
  console.log(`Prometheus emulator listening on ${emu.url} (load series: POST ${emu.url}/_emulator/series, hour = ${time.hourMs / 1000} s)`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    emu.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`Prometheus emulator failed to start: ${(err as Error).message}`);
  process.exit(1);
});
