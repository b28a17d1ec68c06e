// How the TEMPORAL_* variables become connection settings: TLS switches on when any TLS setting or
// an API key is present, contradictions are refused rather than falling back to plaintext, and
// the API key never shows in what gets logged.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { describeTemporal, temporalConnectionFromEnv } from '../../config/temporal';
import { loadConfig } from '../../config/env';
import { tlsConfig } from '../../lib/temporal-connection';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-temporal-config-'));
const file = (name: string, text: string) => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
};

describe('Temporal connection settings from the environment', () => {
  it('is plaintext to localhost:7233, namespace default, when nothing is set', () => {
    const s = temporalConnectionFromEnv({});
    assert.deepEqual({ ...s }, { address: 'localhost:7233', namespace: 'default' });
    assert.match(describeTemporal(s), /plaintext/);
  });

  it('uses TLS with the given CA, server name and client pair, and the SDK gets the files\' contents', () => {
    const ca = file('ca.pem', 'CA');
    const crt = file('c.pem', 'CRT');
    const key = file('k.pem', 'KEY');
    const s = temporalConnectionFromEnv({ TEMPORAL_ADDRESS: 'temporal.example:7233', TEMPORAL_NAMESPACE: 'billing', TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca, TEMPORAL_TLS_SERVER_NAME: 'frontend.internal', TEMPORAL_TLS_CLIENT_CERT_PATH: crt, TEMPORAL_TLS_CLIENT_KEY_PATH: key });
    assert.deepEqual(s.tls, { serverCaFile: ca, serverName: 'frontend.internal', clientCertFile: crt, clientKeyFile: key });
    const t = tlsConfig(s.tls!);
    assert.equal(Buffer.from(t.serverRootCACertificate!).toString(), 'CA');
    assert.equal(t.serverNameOverride, 'frontend.internal');
    assert.equal(Buffer.from(t.clientCertPair!.crt).toString(), 'CRT');
    assert.equal(Buffer.from(t.clientCertPair!.key).toString(), 'KEY');
    assert.equal(loadConfig({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca }).temporal.tls?.serverCaFile, ca);
  });

  it('turns TLS on with the system CAs for an API key (Temporal Cloud), read from the variable or a file', () => {
    const cloud = temporalConnectionFromEnv({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'sekrit-key' });
    assert.deepEqual(cloud.tls, {});
    assert.equal(cloud.apiKey?.(), 'sekrit-key');
    const fromFile = temporalConnectionFromEnv({ TEMPORAL_API_KEY_FILE: file('key', 'from-file-key\n') });
    assert.equal(fromFile.apiKey?.(), 'from-file-key', 'trailing newline of a mounted secret dropped');
    assert.deepEqual(temporalConnectionFromEnv({ TEMPORAL_TLS: 'true' }).tls, {});
    assert.equal(temporalConnectionFromEnv({ TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: 'k' }).tls, undefined, 'explicitly off (e.g. a local proxy)');
  });

  it('never shows the API key when the settings or the config are logged', () => {
    const cfg = loadConfig({ TEMPORAL_API_KEY: 'sekrit-key' });
    assert.doesNotMatch(JSON.stringify(cfg), /sekrit/);
    assert.doesNotMatch(describeTemporal(cfg.temporal), /sekrit/);
    assert.match(describeTemporal(cfg.temporal), /API key set/);
  });

  it('refuses contradictions and half-set pairs, naming the variables', () => {
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_TLS: 'false', TEMPORAL_TLS_SERVER_CA_CERT_PATH: '/ca.pem' }), /TEMPORAL_TLS=false contradicts TEMPORAL_TLS_SERVER_CA_CERT_PATH/);
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_TLS_CLIENT_CERT_PATH: '/c.pem' }), /needs both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/);
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_API_KEY: 'a', TEMPORAL_API_KEY_FILE: '/k' }), /not both/);
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_TLS: 'yes' }), /TEMPORAL_TLS must be true or false/);
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_API_KEY_FILE: path.join(tmp, 'missing') }), /TEMPORAL_API_KEY_FILE names .*missing, which cannot be read: ENOENT/);
    assert.throws(() => temporalConnectionFromEnv({ TEMPORAL_API_KEY_FILE: file('empty', '  \n') }), /is empty/);
    assert.throws(() => tlsConfig({ serverCaFile: path.join(tmp, 'nope.pem') }), /TEMPORAL_TLS_SERVER_CA_CERT_PATH names .*nope\.pem, which cannot be read/);
  });
});
