// Runs the AWS Marketplace Metering emulator on its own. Its notion of an hour and its
// acceptance window come from the same variables as the product's (REMIT_HOUR_SECONDS,
// REMIT_AWS_ACCEPTANCE_HOURS), so both agree on what "too old" means.
//
//   REMIT_EMULATOR_PORT (or REMIT_AWS_EMULATOR_PORT)  default 4566
//   REMIT_EMULATOR_HOST                               default 127.0.0.1
//   REMIT_AWS_EMULATOR_RATE_LIMIT                     calls/s per account and region, default 10
//   REMIT_AWS_EMULATOR_DIMENSIONS                     comma-separated; default: the catalog's AWS dimensions
//   REMIT_AWS_EMULATOR_UNSUBSCRIBED                   comma-separated customer account ids

import { timeConfigFromEnv } from '../config/env';
import { loadCatalog } from '../domain/catalog';
import { startAwsEmulator } from './aws';

function list(v: string | undefined): string[] | undefined {
  const items = v?.split(',').map((s) => s.trim()).filter(Boolean);
  return items && items.length > 0 ? items : undefined;
}

function int(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return v;
}

function catalogDimensions(): string[] {
  const dims = new Set<string>();
  for (const product of loadCatalog().products.values()) {
    for (const m of product.metrics) if (m.dimensions.aws) dims.add(m.dimensions.aws);
  }
  return [...dims];
}

async function main(): Promise<void> {
  const time = timeConfigFromEnv();
  const port = int('REMIT_AWS_EMULATOR_PORT', int('REMIT_EMULATOR_PORT', 4566));
  const host = process.env.REMIT_EMULATOR_HOST || '127.0.0.1';
  const dimensions = list(process.env.REMIT_AWS_EMULATOR_DIMENSIONS) ?? catalogDimensions();
  const emu = await startAwsEmulator({
    port,
    host,
    hourMs: time.hourMs,
    acceptanceHours: time.awsAcceptanceHours,
    rateLimitPerSecond: int('REMIT_AWS_EMULATOR_RATE_LIMIT', 10),
    dimensions,
    unsubscribedCustomers: list(process.env.REMIT_AWS_EMULATOR_UNSUBSCRIBED),
  });
  console.log(`AWS Marketplace Metering emulator listening on ${emu.url} (admin: ${emu.url}/_emulator/records, hour = ${time.hourMs / 1000} s, window = ${time.awsAcceptanceHours} h, dimensions: ${dimensions.join(', ')})`);

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
  console.error(`AWS emulator failed to start: ${(err as Error).message}`);
  process.exit(1);
});
