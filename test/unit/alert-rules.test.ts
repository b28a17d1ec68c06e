// The alert rules evaluated, not only parsed: `promtool test rules` runs
// ops/prometheus/alerts.test.yml (a firing and a quiet case for every rule, two API replicas where
// counting matters) with Debian's promtool, installed by scripts/lib/prometheus.ts when missing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { promtool } from '../../scripts/lib/prometheus';

const dir = path.resolve(__dirname, '..', '..', 'ops', 'prometheus');
const rulesText = fs.readFileSync(path.join(dir, 'alerts.yml'), 'utf8');
const casesText = fs.readFileSync(path.join(dir, 'alerts.test.yml'), 'utf8');

/** alertname -> how many cases expect it to fire, and how many expect it quiet. */
function casesByAlert(text: string): Map<string, { firing: number; quiet: number }> {
  const out = new Map<string, { firing: number; quiet: number }>();
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    const m = /^\s+alertname:\s*(\S+)\s*$/.exec(line);
    if (!m) continue;
    const next = lines[i + 1] ?? '';
    const entry = out.get(m[1]!) ?? { firing: 0, quiet: 0 };
    if (/^\s+exp_alerts:\s*\[\]\s*$/.test(next)) entry.quiet++;
    else if (/^\s+exp_alerts:\s*$/.test(next)) entry.firing++;
    else assert.fail(`alerts.test.yml line ${i + 2}: exp_alerts must follow alertname ${m[1]}`);
    out.set(m[1]!, entry);
  }
  return out;
}

describe('ops/prometheus/alerts.yml under promtool', () => {
  const alerts = [...rulesText.matchAll(/^\s+- alert:\s*(\S+)\s*$/gm)].map((m) => m[1]!);

  it('has a firing and a quiet case for every rule, and none for a rule that does not exist', () => {
    assert.ok(alerts.length >= 17, `alerts.yml has its rules (${alerts.length})`);
    const cases = casesByAlert(casesText);
    for (const a of alerts) {
      const c = cases.get(a);
      assert.ok(c && c.firing > 0, `${a} has a case where it fires`);
      assert.ok(c.quiet > 0, `${a} has a case where it stays quiet`);
    }
    for (const a of cases.keys()) assert.ok(alerts.includes(a), `alerts.test.yml tests ${a}, which alerts.yml does not have`);
  });

  it('passes promtool check rules and promtool test rules', async () => {
    assert.match(await promtool(['check', 'rules', path.join(dir, 'alerts.yml')]), new RegExp(`SUCCESS: ${alerts.length} rules found`));
    assert.match(await promtool(['test', 'rules', 'alerts.test.yml'], { cwd: dir }), /SUCCESS/);
  });

  it('the replica cases catch ledger gauges summed over replicas (the bug they guard against)', async () => {
    // With `sum by`, two replicas that each see 3 expired remittances make 6, above the threshold of 5.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'remit-rules-'));
    try {
      const summed = rulesText.replace('max by (marketplace) (delta(remit_remittances{status="Expired"}[1h]))', 'sum by (marketplace) (delta(remit_remittances{status="Expired"}[1h]))');
      assert.notEqual(summed, rulesText);
      fs.writeFileSync(path.join(tmp, 'alerts.yml'), summed);
      // Only the cases with two replicas: the whole file again cost 6 s of promtool's CPU.
      const cases = YAML.parse(casesText) as { tests: Array<{ name: string }> };
      cases.tests = cases.tests.filter((t) => /replica/.test(t.name));
      assert.ok(cases.tests.length >= 5, `the replica cases (${cases.tests.length})`);
      fs.writeFileSync(path.join(tmp, 'alerts.test.yml'), YAML.stringify(cases));
      await assert.rejects(promtool(['test', 'rules', 'alerts.test.yml'], { cwd: tmp }), /RemitRemittancesExpiring: quiet with 3 expired seen by each of two replicas/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
