// Runs the Prometheus HTTP API emulator on its own (local stack, manual tests). Point the worker
// at it with REMIT_PROMETHEUS_URL. Its lookback scales with REMIT_HOUR_SECONDS like the product.
//
//   REMIT_PROMETHEUS_EMULATOR_PORT   default 9090
//   REMIT_EMULATOR_HOST              default 127.0.0.1

import { timeSettingsFromEnv } from '../../config/env';
import { startPrometheusEmulator } from './prometheus';
import { envInt, runEmulatorMain } from './run-main';

async function start() {
  const time = timeSettingsFromEnv();
  const port = envInt('REMIT_PROMETHEUS_EMULATOR_PORT', 9090);
  const emu = await startPrometheusEmulator({ port, host: process.env.REMIT_EMULATOR_HOST || '127.0.0.1', hourMs: time.hourMs });
  console.log(`Prometheus emulator listening on ${emu.url} (load series: POST ${emu.url}/_emulator/series, hour = ${time.hourMs / 1000} s)`);
  return [emu];
}

runEmulatorMain('Prometheus emulator', start);
