// `remit report`'s summary under the totals: every status of the vocabulary is counted in
// exactly one line, so that a status (Unconfirmed once) cannot silently drop out of it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summaryLines } from '../../cli/commands/report';
import { REMITTANCE_STATUSES } from '../../domain/lifecycle';

describe('remit report summary', () => {
  it('counts every status in exactly one line', () => {
    const totals = Object.fromEntries(REMITTANCE_STATUSES.map((s, i) => [s, { remittances: i + 1, quantity: 10 * (i + 1), claim: String(10 * (i + 1)) }]));
    const lines = summaryLines(totals);
    for (const [i, s] of REMITTANCE_STATUSES.entries()) {
      const showing = lines.filter((l) => l.includes(`${s} ${i + 1}`));
      assert.equal(showing.length, 1, `${s} is in ${showing.length} summary lines:\n${lines.join('\n')}`);
    }
    const shown = lines.reduce((a, l) => a + Number(/in (\d+) remittances?/.exec(l)![1]), 0);
    assert.equal(shown, REMITTANCE_STATUSES.reduce((a, _s, i) => a + i + 1, 0), 'the lines add up to every remittance');
  });

  it('shows an unconfirmed send as counted but to be checked, not as remitted', () => {
    const lines = summaryLines({ Succeeded: { remittances: 3, quantity: 30, claim: '30' }, Unconfirmed: { remittances: 2, quantity: 7, claim: '7' } });
    const unconfirmed = lines.find((l) => l.includes('Unconfirmed 2'));
    assert.ok(unconfirmed, lines.join('\n'));
    assert.match(unconfirmed, /7 billing units in 2 remittances/);
    assert.match(unconfirmed, /remit audit/);
    assert.doesNotMatch(lines.find((l) => l.includes('Succeeded 3'))!, /Unconfirmed/);
  });
});
