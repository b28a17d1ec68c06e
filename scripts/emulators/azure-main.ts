// Runs the Azure Marketplace Metering emulator and the Entra token emulator together on their own.
// Their hour and acceptance window come from the same variables as the product's
// (REMIT_HOUR_SECONDS, REMIT_AZURE_ACCEPTANCE_HOURS), and the Entra app from the product's own
// AZURE_* settings, so the product configured from the same environment gets tokens and agrees
// on what "too old" means. Both serve HTTPS with the local CA in REMIT_CERT_DIR: point the product
// at its ca.pem with REMIT_EXTRA_CA_CERT_FILE.
//
//   REMIT_AZURE_EMULATOR_PORT          default 4567
//   REMIT_ENTRA_EMULATOR_PORT          default 4568
//   REMIT_EMULATOR_HOST                default 127.0.0.1
//   REMIT_CERT_DIR                     default .remit/certs
//   AZURE_TENANT_ID / AZURE_CLIENT_ID  the one registered app (defaults as the product's)
//   AZURE_CLIENT_SECRET                its secret; default local-emulator-secret
//   REMIT_ENTRA_TOKEN_SECRET           token signing key shared by both emulators
//   REMIT_AZURE_EMULATOR_DIMENSIONS    comma-separated; default: the catalog's Azure dimensions

import { loadConfig } from '../../config/env';
import { DEFAULT_AZURE_DIMENSIONS, startAzureEmulator } from './azure';
import { DEFAULT_CERTS_DIR, ensureLocalCerts } from './certs';
import { startEntraEmulator } from './entra';
import { catalogDimensions, envInt, envList, runEmulatorMain } from './run-main';

async function start() {
  const config = loadConfig();
  const time = config.time;
  const host = process.env.REMIT_EMULATOR_HOST || '127.0.0.1';
  const certs = await ensureLocalCerts(process.env.REMIT_CERT_DIR || DEFAULT_CERTS_DIR);
  const dimensions = envList('REMIT_AZURE_EMULATOR_DIMENSIONS') ?? (catalogDimensions('azure').length > 0 ? catalogDimensions('azure') : [...DEFAULT_AZURE_DIMENSIONS]);
  const clientSecret = config.azureClientSecret ?? 'local-emulator-secret';

  const entra = await startEntraEmulator({
    port: envInt('REMIT_ENTRA_EMULATOR_PORT', 4568),
    host,
    certPem: certs.certPem,
    keyPem: certs.keyPem,
    tenantId: config.azureTenantId,
    clients: [{ clientId: config.azureClientId, clientSecret }],
  });
  const azure = await startAzureEmulator({
    port: envInt('REMIT_AZURE_EMULATOR_PORT', 4567),
    host,
    certPem: certs.certPem,
    keyPem: certs.keyPem,
    hourMs: time.hourMs,
    acceptanceHours: time.acceptanceHours.azure,
    tenantId: config.azureTenantId,
    dimensions: dimensions.length > 0 ? dimensions : undefined,
  });
  console.log(`Azure Marketplace Metering emulator listening on ${azure.url} (admin: ${azure.url}/_emulator/records, hour = ${time.hourMs / 1000} s, window = ${time.acceptanceHours.azure} h, dimensions: ${dimensions.join(', ')})`);
  console.log(`Microsoft Entra emulator listening on ${entra.url} (tenant ${config.azureTenantId}, client ${config.azureClientId}${config.azureClientSecret ? '' : ', secret local-emulator-secret'})`);
  console.log(`Trust the local CA explicitly: REMIT_EXTRA_CA_CERT_FILE=${certs.caFile}`);

  return [azure, entra];
}

runEmulatorMain('Azure/Entra emulators', start);
