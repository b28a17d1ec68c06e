// Operator guard rails of the `remit` CLI (issue 10, item 5) against the real API and
// PostgreSQL: nothing changes without --yes (the dry run is shown and the command stops), --force
// is the only way past the API's per-request bounds, the token can come from a file, and a token
// given on the command line is never copied onto another process's command line (that one as
// operators run it, `node bin/remit.mjs` in a process of its own; the others through the CLI's
// entry in this process, as cli.test.ts does: a process each cost start-up CPU and showed nothing
// more, and cli.test.ts checks each kind of outcome through the real process).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../api/app';
import { main } from '../../cli/remit';
import { openDatabase, type Database } from '../../db/client';
import { loadCatalog } from '../../config/catalog';
import { createLogger } from '../../lib/log';
import { createTestDatabase, type TestDatabase } from '../../scripts/lib/test-database';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'remit.mjs');
const OPERATOR = `operator-${randomUUID()}`;
const range = ['--product', 'rosa', '--start', '2026-11-25T00:00:00Z', '--end', '2026-11-25T05:00:00Z', '--orgs', 'org-guard'];

let testDb: TestDatabase;
let database: Database;
let app: FastifyInstance;
let apiUrl: string;
let dir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** What a `remit` run sees: the test's environment without REMIT_ settings, pointed at this API. */
function cliEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REMIT_')));
  return { ...base, REMIT_STACK_FILE: 'none', REMIT_API_URL: apiUrl, ...env };
}

/** `node bin/remit.mjs ...args` in a process of its own. */
function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd: dir, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The CLI's entry (cli/remit.ts main, which bin/remit.mjs runs) in this process. */
async function remit(args: string[], env: NodeJS.ProcessEnv = { REMIT_OPERATOR_TOKEN: OPERATOR }): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (l = '') => (stdout += `${l}\n`), err: (l = '') => (stderr += `${l}\n`), env: cliEnv(env), cwd: dir });
  return { code, stdout, stderr };
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const lastAudit = async () => (await database.pool.query('SELECT id, actor, dry_run AS "dryRun", request FROM audit_log ORDER BY id DESC LIMIT 1')).rows[0];
const auditCount = async () => Number((await database.pool.query('SELECT count(*) AS n FROM audit_log')).rows[0].n);

before(async () => {
  testDb = await createTestDatabase('cli_guard');
  database = openDatabase(testDb.url, { max: 4 });
  const time = { hourMs: 3_600_000, graceHours: 0.1667, acceptanceHours: { aws: 6, azure: 24 } };
  app = await buildApi({ database, catalog: loadCatalog(), time, tokens: { ingest: `ingest-${randomUUID()}`, operator: OPERATOR }, operationLimits: { maxHours: 24, maxIds: 10 }, log: createLogger('cli-guard', 'silent') });
  await app.listen({ port: 0, host: '127.0.0.1' });
  apiUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-cli-guard-'));
});
after(async () => {
  await app?.close();
  await database?.close();
  await testDb?.drop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('nothing changes without --yes', () => {
  for (const action of ['reset', 'recalculate', 'retry']) {
    it(`${action} without --yes sends a dry run, shows it, and stops with exit 2; with --yes it acts`, async () => {
      const r = await remit([action, ...range]);
      assert.equal(r.code, 2, show(r));
      assert.match(r.stdout, /DRY RUN: nothing was changed/);
      assert.match(r.stderr, new RegExp(`nothing was changed: this was a dry run\\. Check it, then run the same command with --yes`));
      assert.equal((await lastAudit()).dryRun, true, 'the API got a dry run');

      const done = await remit([action, ...range, '--yes', '--actor', 'alice']);
      assert.equal(done.code, 0, show(done));
      assert.doesNotMatch(done.stdout, /DRY RUN/);
      const entry = await lastAudit();
      assert.equal(entry.dryRun, false);
      assert.equal(entry.actor, 'operator-token');
      assert.equal(entry.request.claimedBy, 'alice');
    });
  }

  it('--dry-run with --yes is a usage error that sends nothing', async () => {
    const n = await auditCount();
    const r = await remit(['reset', ...range, '--dry-run', '--yes']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--dry-run and --yes contradict each other/);
    assert.equal(await auditCount(), n);
  });

  it('replay: --dry-run with --yes is a usage error too (its no---yes stop is in cli.test.ts, with Temporal)', async () => {
    const r = await remit(['replay', '--query', 'OrgId="x"', '--dry-run', '--yes']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--dry-run and --yes contradict each other/);
  });
});

describe('the API bounds, and --force', () => {
  it('a range past the bound exits 2 with the API message; --force passes it and is audited', async () => {
    const wide = ['--product', 'rosa', '--start', '2026-11-01T00:00:00Z', '--end', '2026-11-03T00:00:00Z', '--orgs', 'org-guard'];
    const refused = await remit(['reset', ...wide, '--yes']);
    assert.equal(refused.code, 2, show(refused));
    assert.match(refused.stderr, /the range spans 48 remittance hours; at most 24 per request \(REMIT_OPERATION_MAX_HOURS\), or send force: true/);
    const forced = await remit(['reset', ...wide, '--yes', '--force']);
    assert.equal(forced.code, 0, show(forced));
    assert.equal((await lastAudit()).request.force, true);
  });
});

describe('the operator token', () => {
  it('is read from --token-file or REMIT_OPERATOR_TOKEN_FILE (final newline dropped)', async () => {
    const file = path.join(dir, 'operator-token');
    fs.writeFileSync(file, `${OPERATOR}\n`, { mode: 0o600 });
    const viaFlag = await remit(['report', '--token-file', file, '--json'], {});
    assert.equal(viaFlag.code, 0, show(viaFlag));
    const viaEnv = await remit(['report', '--json'], { REMIT_OPERATOR_TOKEN_FILE: file });
    assert.equal(viaEnv.code, 0, show(viaEnv));
    const missing = await remit(['report'], { REMIT_OPERATOR_TOKEN_FILE: path.join(dir, 'nope') });
    assert.equal(missing.code, 2, show(missing));
    assert.match(missing.stderr, /cannot read the operator token file .*nope \(REMIT_OPERATOR_TOKEN_FILE\): ENOENT/);
    const both = await remit(['report', '--token-file', file, '--token', 'x'], {});
    assert.equal(both.code, 2);
    assert.match(both.stderr, /give one of --token and --token-file/);
  });

  it('given with --token, it is on no other process command line while the CLI runs', async () => {
    // An API that accepts the connection and never answers: the CLI stays up while we look.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const secret = `cmdline-${randomUUID()}`;
    const child = start(['report', '--token', secret, '--api', `http://127.0.0.1:${port}`], {});
    try {
      while (sockets.length === 0) await new Promise((r) => setTimeout(r, 20));
      const holders: string[] = [];
      for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        let cmdline: string;
        try {
          cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          continue; // gone meanwhile
        }
        if (cmdline.includes(secret) && Number(pid) !== child.pid) holders.push(`${pid}: ${cmdline.replace(/\0/g, ' ')}`);
      }
      assert.deepEqual(holders, [], 'only the process the operator started has the token in its arguments');
    } finally {
      child.kill('SIGKILL');
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});
