// What every emulator's stand-alone entry point (aws-main, azure-main, prometheus-main) shares:
// reading its settings from the environment, and running until SIGINT/SIGTERM.

import type { Marketplace } from '../../domain/key';
import { loadCatalog } from '../../config/catalog';

export function envInt(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return v;
}

export function envList(name: string): string[] | undefined {
  const items = process.env[name]?.split(',').map((s) => s.trim()).filter(Boolean);
  return items && items.length > 0 ? items : undefined;
}

/** The dimensions the product's catalog bills on a marketplace: what its emulator accepts. */
export function catalogDimensions(marketplace: Marketplace): string[] {
  const dims = new Set<string>();
  for (const product of loadCatalog().products.values()) {
    for (const m of product.metrics) {
      const d = m.dimensions[marketplace];
      if (d) dims.add(d);
    }
  }
  return [...dims];
}

/** Start the emulator(s), then close them and exit on SIGINT/SIGTERM; exit 1 if start fails. */
export function runEmulatorMain(name: string, start: () => Promise<Array<{ close(): Promise<void> }>>): void {
  start().then(
    (servers) => {
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        Promise.all(servers.map((s) => s.close())).then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    },
    (err: unknown) => {
      console.error(`${name} failed to start: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
