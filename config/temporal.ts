// How every remit process reaches Temporal, as settings: the API, the workers, the CLI and the
// scripts read them here and connect with lib/temporal-connection.ts, so that a TLS-only
// frontend, mTLS or a Temporal Cloud API key works everywhere or nowhere. No SDK import here:
// the CLI loads this for every command.
//
// The variable names are the Temporal CLI's and the SDKs' own (`temporal options` lists them):
// one environment serves `remit` and `temporal` alike. TEMPORAL_API_KEY_FILE is remit's addition,
// so that the key can come from a mounted secret rather than the environment.

import { readFileSync } from 'node:fs';

export interface TemporalTlsSettings {
  /** PEM of the CA that signed the frontend's certificate; unset: the system's trusted CAs (Temporal Cloud). */
  serverCaFile?: string;
  /** Name to check the frontend's certificate against (and SNI), when it differs from the address's host. */
  serverName?: string;
  /** mTLS: this client's certificate and private key (PEM files), both or neither. */
  clientCertFile?: string;
  clientKeyFile?: string;
}

export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  /** undefined: plaintext gRPC. */
  tls?: TemporalTlsSettings;
  /**
   * The API key (Temporal Cloud), behind a function so that it never shows up when the settings
   * are logged or serialised (JSON.stringify and pino skip functions).
   */
  apiKey?: () => string;
}

/** The variables read, for messages and docs. */
export const TEMPORAL_ENV = {
  address: 'TEMPORAL_ADDRESS',
  namespace: 'TEMPORAL_NAMESPACE',
  tls: 'TEMPORAL_TLS',
  serverCaFile: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  serverName: 'TEMPORAL_TLS_SERVER_NAME',
  clientCertFile: 'TEMPORAL_TLS_CLIENT_CERT_PATH',
  clientKeyFile: 'TEMPORAL_TLS_CLIENT_KEY_PATH',
  apiKey: 'TEMPORAL_API_KEY',
  apiKeyFile: 'TEMPORAL_API_KEY_FILE',
} as const;

function readSecretFile(file: string, variable: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${variable} names ${file}, which cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const key = text.trim();
  if (!key) throw new Error(`${variable} names ${file}, which is empty`);
  return key;
}

/**
 * TLS and API key settings from the environment (address and namespace come with them). Like
 * the Temporal CLI: TLS switches on by itself when a TLS file, a server name or an API key is
 * set; TEMPORAL_TLS=true alone means TLS with the system's CAs. Contradictions are errors, so
 * that a typo never silently falls back to plaintext.
 */
export function temporalConnectionFromEnv(env: NodeJS.ProcessEnv, defaults: { address?: string; namespace?: string } = {}): TemporalConnectionSettings {
  const v = (name: string) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const tlsFlag = v(TEMPORAL_ENV.tls);
  if (tlsFlag !== undefined && !['true', 'false', '1', '0'].includes(tlsFlag.toLowerCase())) {
    throw new Error(`${TEMPORAL_ENV.tls} must be true or false, got ${JSON.stringify(tlsFlag)}`);
  }
  const tlsOn = tlsFlag === undefined ? undefined : ['true', '1'].includes(tlsFlag.toLowerCase());
  const files: TemporalTlsSettings = {
    serverCaFile: v(TEMPORAL_ENV.serverCaFile),
    serverName: v(TEMPORAL_ENV.serverName),
    clientCertFile: v(TEMPORAL_ENV.clientCertFile),
    clientKeyFile: v(TEMPORAL_ENV.clientKeyFile),
  };
  const setTls = (Object.keys(files) as (keyof TemporalTlsSettings)[]).filter((k) => files[k] !== undefined);
  if (tlsOn === false && setTls.length > 0) {
    throw new Error(`${TEMPORAL_ENV.tls}=false contradicts ${setTls.map((k) => TEMPORAL_ENV[k]).join(', ')}: unset one or the other`);
  }
  if ((files.clientCertFile === undefined) !== (files.clientKeyFile === undefined)) {
    throw new Error(`mTLS needs both ${TEMPORAL_ENV.clientCertFile} and ${TEMPORAL_ENV.clientKeyFile}; only ${files.clientCertFile ? TEMPORAL_ENV.clientCertFile : TEMPORAL_ENV.clientKeyFile} is set`);
  }
  const keyInline = v(TEMPORAL_ENV.apiKey);
  const keyFile = v(TEMPORAL_ENV.apiKeyFile);
  if (keyInline !== undefined && keyFile !== undefined) throw new Error(`set ${TEMPORAL_ENV.apiKey} or ${TEMPORAL_ENV.apiKeyFile}, not both`);
  let apiKey: (() => string) | undefined;
  if (keyInline !== undefined) {
    const key = keyInline.trim();
    apiKey = () => key;
  } else if (keyFile !== undefined) {
    const key = readSecretFile(keyFile, TEMPORAL_ENV.apiKeyFile);
    apiKey = () => key;
  }
  // An API key travels as a bearer token: TLS unless explicitly switched off (a local proxy).
  const tls = tlsOn === true || setTls.length > 0 || (apiKey !== undefined && tlsOn !== false) ? Object.fromEntries(setTls.map((k) => [k, files[k]])) : undefined;
  return {
    address: v(TEMPORAL_ENV.address) ?? defaults.address ?? 'localhost:7233',
    namespace: v(TEMPORAL_ENV.namespace) ?? defaults.namespace ?? 'default',
    ...(tls ? { tls } : {}),
    ...(apiKey ? { apiKey } : {}),
  };
}

/** One line for logs and error messages: where and how, never the key. */
export function describeTemporal(s: TemporalConnectionSettings): string {
  const parts = [`${s.address} (namespace ${s.namespace}`];
  if (!s.tls) parts.push('plaintext');
  else {
    const t = s.tls;
    parts.push(`TLS${t.serverCaFile ? ` with CA ${t.serverCaFile}` : ' with the system CAs'}${t.serverName ? `, server name ${t.serverName}` : ''}${t.clientCertFile ? `, client certificate ${t.clientCertFile}` : ''}`);
  }
  if (s.apiKey) parts.push('API key set');
  return `${parts.join(', ')})`;
}

