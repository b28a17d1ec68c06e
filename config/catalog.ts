// Reading the product catalog file (config/catalog.json, or REMIT_CATALOG_PATH). Only the reading
// lives here, next to the rest of the configuration loading; what a catalog is and how it is
// validated and looked up is pure and lives in domain/catalog.ts.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CatalogError, parseCatalog, type Catalog } from '../domain/catalog';

export const DEFAULT_CATALOG_PATH = resolve(__dirname, 'catalog.json');

/**
 * Load and validate a catalog file. The path defaults to REMIT_CATALOG_PATH, then to the
 * committed config/catalog.json. Throws CatalogError naming every problem found.
 */
export function loadCatalog(path?: string, env: NodeJS.ProcessEnv = process.env): Catalog {
  const file = path ?? (env.REMIT_CATALOG_PATH || DEFAULT_CATALOG_PATH);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CatalogError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CatalogError(file, [`not valid JSON: ${(err as Error).message}`]);
  }
  return parseCatalog(json, file);
}
