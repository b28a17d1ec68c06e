// Runs the AWS Marketplace Metering emulator on its own. Its notion of an hour and its
// acceptance window come from the same variables as the product's (REMIT_HOUR_SECONDS,
// REMIT_AWS_ACCEPTANCE_HOURS), so both agree on what "too old" means.
//
//   REMIT_EMULATOR_PORT (or REMIT_AWS_EMULATOR_PORT)  default 4566
//   REMIT_EMULATOR_HOST                               default 127.0.0.1
//   REMIT_AWS_EMULATOR_RATE_LIMIT                     calls/s per account and region, default 10
//   REMIT_AWS_EMULATOR_DIMENSIONS                     comma-separated; default: the catalog's AWS dimensions
//   REMIT_AWS_EMULATOR_UNSUBSCRIBED                   comma-separated customer account ids

import { timeSettingsFromEnv } from '../../config/env';
import { startAwsEmulator } from './aws';
import { catalogDimensions, envInt, envList, runEmulatorMain } from './run-main';

async function start() {
  const time = timeSettingsFromEnv();
  const port = envInt('REMIT_AWS_EMULATOR_PORT', envInt('REMIT_EMULATOR_PORT', 4566));
  const host = process.env.REMIT_EMULATOR_HOST || '127.0.0.1';
  const dimensions = envList('REMIT_AWS_EMULATOR_DIMENSIONS') ?? catalogDimensions('aws');
  const emu = await startAwsEmulator({
    port,
    host,
    hourMs: time.hourMs,
    acceptanceHours: time.acceptanceHours.aws,
    rateLimitPerSecond: envInt('REMIT_AWS_EMULATOR_RATE_LIMIT', 10),
    dimensions,
    unsubscribedCustomers: envList('REMIT_AWS_EMULATOR_UNSUBSCRIBED'),
  });
  console.log(`AWS Marketplace Metering emulator listening on ${emu.url} (admin: ${emu.url}/_emulator/records, hour = ${time.hourMs / 1000} s, window = ${time.acceptanceHours.aws} h, dimensions: ${dimensions.join(', ')})`);

  return [emu];
}

runEmulatorMain('AWS emulator', start);
