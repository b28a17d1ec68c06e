// A local certificate authority for the HTTPS emulators. @azure/identity refuses a non-HTTPS
// authority, so the Entra emulator (and, for symmetry, the Azure emulator) must serve TLS with a
// certificate the product can verify. The product trusts this CA explicitly, per client (undici
// Agent `ca`, the identity pipeline's `tlsOptions.ca`), never by turning verification off.
//
// The CA and the server certificate are made once and kept in a directory (default
// `.remit/certs/`), so that emulators and the product started as separate processes, or again
// after a restart, agree on the same CA.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';
import { DAY_MS } from '../../domain/time';

export interface LocalCerts {
  /** The CA certificate (PEM) clients must trust. */
  caPem: string;
  /** Server certificate for `localhost`, `127.0.0.1` and `::1`, signed by the CA (PEM). */
  certPem: string;
  /** The server certificate's private key (PEM). */
  keyPem: string;
  /** Path of a file holding `caPem`, for REMIT_EXTRA_CA_CERT_FILE and tools such as curl. */
  caFile: string;
}

export const DEFAULT_CERTS_DIR = path.join('.remit', 'certs');

const FILES = { ca: 'ca.pem', caKey: 'ca-key.pem', cert: 'server.pem', key: 'server-key.pem' } as const;
// Renew well before expiry, so a long-running local stack does not start failing TLS mid-run.
const RENEW_BEFORE_MS = 30 * DAY_MS;
const LOCK_STALE_MS = 60_000;
const LOCK_WAIT_MS = 30_000;

/**
 * The CA and server certificate in `dir`, made on first use (or when missing, expiring, or not
 * valid for the local names). Safe to call from several processes at once: one makes them, the
 * others wait and read the same files.
 */
export async function ensureLocalCerts(dir: string = DEFAULT_CERTS_DIR): Promise<LocalCerts> {
  const abs = path.resolve(dir);
  const existing = await readValid(abs);
  if (existing) return existing;
  await fs.mkdir(abs, { recursive: true, mode: 0o700 });
  return withLock(path.join(abs, '.lock'), async () => {
    // Another process may have made them while this one waited for the lock.
    const again = await readValid(abs);
    if (again) return again;
    return create(abs);
  });
}

async function readValid(dir: string): Promise<LocalCerts | undefined> {
  let caPem: string, certPem: string, keyPem: string;
  try {
    [caPem, certPem, keyPem] = await Promise.all([FILES.ca, FILES.cert, FILES.key].map((f) => fs.readFile(path.join(dir, f), 'utf8'))) as [string, string, string];
  } catch {
    return undefined;
  }
  try {
    const ca = new X509Certificate(caPem);
    const cert = new X509Certificate(certPem);
    const renewBy = Date.now() + RENEW_BEFORE_MS;
    const fresh = Date.parse(ca.validTo) > renewBy && Date.parse(cert.validTo) > renewBy;
    const names = cert.checkHost('localhost') !== undefined && cert.checkIP('127.0.0.1') !== undefined;
    if (!fresh || !names || !cert.checkIssued(ca) || !cert.verify(ca.publicKey) || !cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
  } catch {
    return undefined;
  }
  return { caPem, certPem, keyPem, caFile: path.join(dir, FILES.ca) };
}

async function create(dir: string): Promise<LocalCerts> {
  const now = new Date();
  const ca = await generate([{ name: 'commonName', value: 'remit local development CA' }, { name: 'organizationName', value: 'remit emulators' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - DAY_MS),
    notAfterDate: new Date(now.getTime() + 10 * 365 * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const server = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca: { key: ca.private, cert: ca.cert },
    notBeforeDate: new Date(now.getTime() - DAY_MS),
    notAfterDate: new Date(now.getTime() + 365 * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  // Keys first and the CA last: a reader that finds ca.pem finds a complete set.
  await writeAtomic(path.join(dir, FILES.caKey), ca.private, 0o600);
  await writeAtomic(path.join(dir, FILES.key), server.private, 0o600);
  await writeAtomic(path.join(dir, FILES.cert), server.cert, 0o644);
  await writeAtomic(path.join(dir, FILES.ca), ca.cert, 0o644);
  return { caPem: ca.cert, certPem: server.cert, keyPem: server.private, caFile: path.join(dir, FILES.ca) };
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text, { mode });
  await fs.rename(tmp, file);
}

async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await fs.open(lockFile, 'wx');
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A process that died holding the lock must not block every later start.
      const stat = await fs.stat(lockFile).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > LOCK_STALE_MS) {
        await fs.rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockFile}; delete it if no other remit process is starting`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockFile, { force: true });
  }
}
