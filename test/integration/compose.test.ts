// The container deployment (Dockerfile, docker-compose.yml, ops/compose/) checked without a Docker
// engine. The compose file is loaded by compose-go, the loader of Docker Compose itself
// (tools/compose-check, built from the Go module proxy into .tools/ when missing): interpolation,
// the Compose Specification's schema, references. Then what the model says is held against the
// code: every variable set for a remit container is one the code reads, no secret has a default,
// nothing is published beyond loopback, Prometheus scrapes the ports the services listen on, and
// the Temporal set-up registers the search attributes the workflows use.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import YAML from 'yaml';
import { REPO_ROOT, run, which } from '../../scripts/lib/proc';
import { SEARCH_ATTRIBUTE_CLI_ARGS } from '../../workflows/definitions';

const COMPOSE = path.join(REPO_ROOT, 'docker-compose.yml');
const TOOL_SRC = path.join(REPO_ROOT, 'tools', 'compose-check');
const TOOL = path.join(REPO_ROOT, '.tools', 'compose-check');

/** The secrets the stack refuses to start without, each set to a value that is found nowhere else. */
const REQUIRED = ['REMIT_DB_PASSWORD', 'TEMPORAL_DB_PASSWORD', 'REMIT_INGEST_TOKEN', 'REMIT_OPERATOR_TOKEN', 'REMIT_METRICS_TOKEN', 'GRAFANA_ADMIN_PASSWORD'];
const secrets = Object.fromEntries(REQUIRED.map((k) => [k, `given-${k.toLowerCase()}`]));

/**
 * Read by a library rather than by remit's code: the AWS SDK's default credential chain, and
 * NODE_ENV (npm and the libraries' production mode).
 */
const READ_BY_LIBRARIES = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'NODE_ENV']);
const RUNTIME_DIRS = ['activities', 'api', 'cli', 'config', 'db', 'domain', 'lib', 'marketplaces', 'operations', 'usage', 'workers', 'workflows'];
/** What the emulators' image adds (docker compose --profile emulators); never in the product image. */
const EMULATOR_DIRS = ['scripts/emulators'];

/** Every environment variable remit's runtime code reads, by how it reads them. */
function variablesTheCodeReads(): Set<string> {
  const names = new Set<string>();
  // The last pattern: config/temporal.ts names the Temporal connection's variables in a table (TEMPORAL_ENV).
  const patterns = [/\benv\.([A-Z][A-Z0-9_]*)\b/g, /\benv\[\s*'([A-Z][A-Z0-9_]*)'\s*\]/g, /\b(?:envInt|envList|num)\(\s*(?:env,\s*)?'([A-Z][A-Z0-9_]*)'/g, /^\s+[a-zA-Z]+: '(TEMPORAL_[A-Z0-9_]+)',$/gm];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const text = fs.readFileSync(p, 'utf8');
        for (const re of patterns) for (const m of text.matchAll(re)) names.add(m[1]!);
      }
    }
  };
  for (const d of [...RUNTIME_DIRS, ...EMULATOR_DIRS]) walk(path.join(REPO_ROOT, d));
  return names;
}

async function ensureComposeCheck(): Promise<string> {
  const sources = ['main.go', 'go.mod', 'go.sum'].map((f) => fs.statSync(path.join(TOOL_SRC, f)).mtimeMs);
  if (fs.existsSync(TOOL) && fs.statSync(TOOL).mtimeMs > Math.max(...sources)) return TOOL;
  // Where the official Go distribution installs, for a shell whose PATH lacks it.
  const go = which('go', process.env.PATH) ?? (fs.existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : null);
  assert.ok(go, 'the Go toolchain builds tools/compose-check (compose-go, the Compose loader): install Go (https://go.dev/doc/install) or put it on PATH');
  const r = await run(go, ['build', '-buildvcs=false', '-o', TOOL, '.'], { cwd: TOOL_SRC, timeoutMs: 9 * 60_000 });
  assert.equal(r.code, 0, `go build of tools/compose-check failed:\n${r.stdout}${r.stderr}`);
  return TOOL;
}

type Model = { services: Record<string, any>; secrets?: Record<string, any>; volumes?: Record<string, any> };

async function load(env: Record<string, string>, profiles: string[] = []): Promise<{ code: number | null; model?: Model; stderr: string }> {
  const r = await run(TOOL, [...profiles.flatMap((p) => ['-profile', p]), COMPOSE], { env: { PATH: process.env.PATH ?? '', ...env }, timeoutMs: 60_000 });
  return { code: r.code, stderr: r.stderr, model: r.code === 0 ? (JSON.parse(r.stdout) as Model) : undefined };
}

let model: Model;
let reads: Set<string>;
const remitServices = () => Object.entries(model.services).filter(([, s]) => String(s.image).startsWith('remit:'));

before(async () => {
  await ensureComposeCheck();
  const r = await load(secrets);
  assert.equal(r.code, 0, r.stderr);
  model = r.model!;
  reads = variablesTheCodeReads();
});

describe('docker-compose.yml, loaded by the Compose loader', () => {
  it('refuses to load without each token and password, naming it', async () => {
    for (const name of REQUIRED) {
      const { [name]: _gone, ...rest } = secrets;
      const r = await load(rest);
      assert.equal(r.code, 1, `${name} missing: compose loaded anyway`);
      assert.match(r.stderr, new RegExp(`required variable ${name} is missing a value: set ${name}`));
    }
  });

  it('has no default secret: every token, password or secret a service gets is one we gave, or empty', () => {
    const given = new Set(Object.values(secrets));
    for (const [name, s] of Object.entries(model.services)) {
      for (const [k, v] of Object.entries((s.environment ?? {}) as Record<string, string | null>)) {
        if (!/TOKEN|PASSWORD|PWD|SECRET/.test(k)) continue;
        assert.ok(v === '' || v === null || given.has(v) || [...given].some((g) => v.includes(`:${g}@`)), `${name}: ${k}=${v} is a default secret`);
      }
    }
    assert.equal(model.services.api.environment.DATABASE_URL, `postgres://remit:${secrets.REMIT_DB_PASSWORD}@postgres:5432/remit`);
  });

  it('sets for remit containers only variables the code reads', () => {
    for (const known of ['DATABASE_URL', 'REMIT_INGEST_TOKEN', 'REMIT_WORKER_METRICS_HOST', 'REMIT_WORKFLOW_BUNDLE_PATH', 'REMIT_EMULATOR_HOST', 'REMIT_OPERATION_MAX_HOURS']) assert.ok(reads.has(known), `the scan finds ${known}`);
    assert.ok(!reads.has('REMIT_INGEST_TOKENS'));
    const services = remitServices();
    assert.deepEqual(services.map(([n]) => n).sort(), ['api', 'worker']);
    for (const [name, s] of services) {
      for (const k of Object.keys(s.environment ?? {})) assert.ok(reads.has(k) || READ_BY_LIBRARIES.has(k), `${name}: ${k} is set but nothing reads it`);
    }
  });

  it('runs the API and worker replicas from the image, with healthchecks; one-shot jobs gate the services', () => {
    for (const n of ['api', 'worker']) {
      const s = model.services[n];
      assert.equal(s.build.dockerfile, 'Dockerfile');
      assert.ok(s.deploy.replicas >= 2, `${n} has replicas`);
      assert.ok(s.healthcheck?.test, `${n} has a healthcheck`);
      assert.equal(s.depends_on['temporal-setup'].condition, 'service_completed_successfully');
    }
    assert.equal(model.services.temporal.depends_on['temporal-schema'].condition, 'service_completed_successfully');
    const jobs = new Set(['temporal-schema', 'temporal-setup']);
    for (const [n, s] of Object.entries(model.services)) if (!jobs.has(n)) assert.ok(s.healthcheck?.test, `${n} has a healthcheck`);
  });

  it('names real, pinned images (no :latest) and keeps state on named volumes', () => {
    for (const [n, s] of Object.entries(model.services)) {
      if (s.build) continue;
      assert.match(String(s.image), /^[\w./-]+:[\w.-]+$/, `${n}: ${s.image}`);
      assert.doesNotMatch(String(s.image), /:latest$/, n);
    }
    for (const [n, target] of [['postgres', '/var/lib/postgresql/data'], ['prometheus', '/prometheus'], ['grafana', '/var/lib/grafana']]) {
      const v = (model.services[n!].volumes as any[]).find((x) => x.target === target);
      assert.equal(v?.type, 'volume', `${n} keeps ${target} on a named volume`);
    }
  });

  it('publishes nothing beyond 127.0.0.1 by default', () => {
    for (const [n, s] of Object.entries(model.services)) for (const p of s.ports ?? []) assert.equal(p.host_ip, '127.0.0.1', `${n} publishes ${p.published} on ${p.host_ip ?? 'every address'}`);
  });

  it('runs the emulators only with --profile emulators', async () => {
    assert.ok(!('aws-emulator' in model.services));
    const r = await load(secrets, ['emulators']);
    assert.equal(r.code, 0, r.stderr);
    for (const n of ['aws-emulator', 'prometheus-emulator']) {
      const s = r.model!.services[n];
      assert.ok(s, n);
      for (const k of Object.keys(s.environment ?? {})) assert.ok(reads.has(k), `${n}: ${k} is set but nothing reads it`);
      for (const p of s.ports ?? []) assert.equal(p.host_ip, '127.0.0.1');
    }
  });
});

describe('what the compose file mounts', () => {
  const mount = (service: string, target: string) => (model.services[service].volumes as any[]).find((v) => v.target === target);

  it('Prometheus loads remit alert rules and scrapes every API and worker replica on their ports, the API with the metrics token', () => {
    const promPath = mount('prometheus', '/etc/prometheus/prometheus.yml').source;
    const prom = YAML.parse(fs.readFileSync(promPath, 'utf8'));
    const rules = mount('prometheus', '/etc/prometheus/rules');
    assert.equal(path.relative(REPO_ROOT, rules.source), path.join('ops', 'prometheus'));
    assert.deepEqual(prom.rule_files, ['/etc/prometheus/rules/*.yml']);
    assert.ok(fs.readdirSync(rules.source).some((f) => f.endsWith('.yml')));
    const job = (name: string) => prom.scrape_configs.find((j: any) => j.job_name === name);
    assert.deepEqual(job('remit-api').dns_sd_configs[0].names, ['api']);
    assert.equal(String(job('remit-api').dns_sd_configs[0].port), model.services.api.environment.REMIT_API_PORT);
    assert.deepEqual(job('remit-worker').dns_sd_configs[0].names, ['worker']);
    assert.equal(String(job('remit-worker').dns_sd_configs[0].port), model.services.worker.environment.REMIT_WORKER_METRICS_PORT);
    assert.equal(model.services.worker.environment.REMIT_WORKER_METRICS_HOST, '0.0.0.0', 'the worker metrics are reachable from Prometheus');
    const secret = (model.services.prometheus.secrets as any[])[0].source;
    assert.equal(job('remit-api').authorization.credentials_file, `/run/secrets/${secret}`);
    assert.equal(model.secrets![secret].environment, 'REMIT_METRICS_TOKEN');
    assert.equal(job('temporal').static_configs[0].targets[0], `temporal:${model.services.temporal.environment.PROMETHEUS_ENDPOINT.split(':')[1]}`);
  });

  it('Grafana is provisioned with the remit dashboard and the Prometheus data source', () => {
    const prov = mount('grafana', '/etc/grafana/provisioning').source;
    const dashboards = YAML.parse(fs.readFileSync(path.join(prov, 'dashboards', 'remit.yml'), 'utf8'));
    const dashMount = mount('grafana', dashboards.providers[0].options.path);
    assert.equal(path.relative(REPO_ROOT, dashMount.source), path.join('ops', 'grafana'));
    const home = model.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH as string;
    assert.equal(path.dirname(home), dashboards.providers[0].options.path);
    assert.ok(fs.existsSync(path.join(dashMount.source, path.basename(home))), `the home dashboard ${home} is in ops/grafana`);
    const ds = YAML.parse(fs.readFileSync(path.join(prov, 'datasources', 'prometheus.yml'), 'utf8'));
    assert.equal(ds.datasources[0].type, 'prometheus');
    assert.equal(ds.datasources[0].url, 'http://prometheus:9090');
  });

  it('the Temporal set-up job registers exactly the search attributes the workflows use', () => {
    const script = fs.readFileSync(mount('temporal-setup', '/scripts/setup.sh').source, 'utf8');
    const registered = [...script.matchAll(/^\s+(\w+):(Keyword|Datetime|Int|Double|Bool|Text|KeywordList)\b/gm)].map((m) => `${m[1]}=${m[2]}`).sort();
    const used = SEARCH_ATTRIBUTE_CLI_ARGS.filter((a) => a !== '--search-attribute').sort();
    assert.deepEqual(registered, used);
  });

  it('the Temporal schema job migrates both databases with the official SQL tool, never with --overwrite', () => {
    const script = fs.readFileSync(mount('temporal-schema', '/scripts/schema.sh').source, 'utf8');
    assert.match(script, /migrate temporal temporal\n/);
    assert.match(script, /migrate temporal_visibility visibility\n/);
    assert.doesNotMatch(script.replace(/#.*$/gm, ''), /--overwrite/);
    assert.equal(model.services.temporal.environment.DB, 'postgres12');
  });
});

describe('the Dockerfile', () => {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const stages = text.split(/^FROM /m).slice(1);
  const runtime = stages[stages.length - 1]!;

  it('installs production dependencies only, from the lockfile', () => {
    assert.match(text, /npm ci --omit=dev/);
    assert.doesNotMatch(runtime, /npm (install|ci)(?! --omit=dev)/);
  });

  it('runs as the unprivileged node user', () => {
    assert.match(runtime, /^USER node$/m);
  });

  it('builds the workflow bundle at image build time, where the worker is told to load it', () => {
    const built = /bundle-workflows\.ts (\S+)/.exec(text)?.[1];
    const env = /REMIT_WORKFLOW_BUNDLE_PATH=(\S+)/.exec(runtime)?.[1];
    assert.ok(built && env, 'a bundle is built and named');
    assert.equal(env, built);
    assert.ok(runtime.includes(`COPY --from=bundle ${built} ./${path.relative('/app', built)}`), 'the runtime image holds the bundle');
  });

  it('sets only variables the code reads', () => {
    const names = [...runtime.matchAll(/(?:^ENV |\\\n\s+)([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    assert.ok(names.includes('REMIT_WORKFLOW_BUNDLE_PATH'));
    for (const n of names) assert.ok(reads.has(n) || READ_BY_LIBRARIES.has(n), `${n} is set in the image but nothing reads it`);
  });

  it('copies into the image every folder the runtime code imports from', () => {
    for (const d of RUNTIME_DIRS) assert.match(runtime, new RegExp(`^COPY ${d} \\./${d}$`, 'm'), d);
    const ignored = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const d of RUNTIME_DIRS) assert.ok(!ignored.includes(d), `${d} is not left out of the build context`);
    for (const secret of ['.env', '.remit', 'node_modules', '.git']) assert.ok(ignored.includes(secret), `${secret} stays out of the build context`);
    assert.doesNotMatch(runtime, /^COPY (scripts|test)\b/m, 'development tooling stays out of the product image');
  });
});
