// The connections to Temporal, built from config/temporal.ts's settings: the only place that
// turns them into SDK options (TLS files read, API key attached).

import { readFileSync } from 'node:fs';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { TEMPORAL_ENV, type TemporalConnectionSettings, type TemporalTlsSettings } from '../config/temporal';

export { describeTemporal } from '../config/temporal';

function readPem(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${variable} names ${file}, which cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The SDK's TLS options; the PEM files are read now, so a renewed certificate is picked up at the next connect. */
export function tlsConfig(t: TemporalTlsSettings): TLSConfig {
  return {
    ...(t.serverCaFile ? { serverRootCACertificate: readPem(t.serverCaFile, TEMPORAL_ENV.serverCaFile) } : {}),
    ...(t.serverName ? { serverNameOverride: t.serverName } : {}),
    ...(t.clientCertFile && t.clientKeyFile
      ? { clientCertPair: { crt: readPem(t.clientCertFile, TEMPORAL_ENV.clientCertFile), key: readPem(t.clientKeyFile, TEMPORAL_ENV.clientKeyFile) } }
      : {}),
  };
}

function common(s: TemporalConnectionSettings) {
  return { address: s.address, ...(s.tls ? { tls: tlsConfig(s.tls) } : {}), ...(s.apiKey ? { apiKey: s.apiKey() } : {}) };
}

/** A client Connection (API, CLI, scripts). */
export function connectClientConnection(s: TemporalConnectionSettings, opts: { connectTimeout?: string | number } = {}): Promise<Connection> {
  return Connection.connect({ ...common(s), ...(opts.connectTimeout !== undefined ? { connectTimeout: opts.connectTimeout } : {}) });
}

/** A Client on its own Connection; close() closes the connection. */
export async function connectClient(s: TemporalConnectionSettings, opts: { connectTimeout?: string | number } = {}): Promise<{ client: Client; connection: Connection; close(): Promise<void> }> {
  const connection = await connectClientConnection(s, opts);
  return { client: new Client({ connection, namespace: s.namespace }), connection, close: () => connection.close() };
}

/** The worker's native (Rust core) connection. */
export function connectNativeConnection(s: TemporalConnectionSettings): Promise<NativeConnection> {
  return NativeConnection.connect(common(s));
}
