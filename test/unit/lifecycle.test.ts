import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canMove, COUNTS_AS_REMITTED, NOT_REMITTED, RECOMPUTABLE, REMITTANCE_STATUSES, RESETTABLE, sourcesOf, STATUS_GROUPS, TRANSITIONS } from '../../domain/lifecycle';

describe('remittance lifecycle', () => {
  it('covers every status of the vocabulary', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...REMITTANCE_STATUSES].sort());
  });
  it('never moves an accepted record anywhere but to voided', () => {
    assert.deepEqual(TRANSITIONS.Succeeded, ['Voided']);
    assert.equal(canMove('Succeeded', 'Failed'), false);
    assert.equal(canMove('Succeeded', 'Expired'), false);
  });
  it('never voids a record in flight, whose send may still be accepted', () => {
    assert.equal(sourcesOf('Voided').includes('Sending'), false);
    assert.equal(sourcesOf('Voided').includes('Pending'), false);
    assert.deepEqual(sourcesOf('Voided').sort(), ['Failed', 'Gratis', 'Succeeded', 'Unconfirmed']);
  });
  it('ends expired and voided for good: their amounts are billed by a later hour instead', () => {
    assert.deepEqual(TRANSITIONS.Expired, []);
    assert.deepEqual(TRANSITIONS.Voided, []);
    assert.deepEqual([...NOT_REMITTED].sort(), ['Expired', 'Failed', 'Voided']);
  });
  it('recomputes in place only hours that were never accepted', () => {
    for (const s of RECOMPUTABLE) assert.ok(canMove(s, 'Pending'), s);
    assert.equal(RECOMPUTABLE.includes('Succeeded'), false);
    assert.equal(RECOMPUTABLE.includes('Expired'), false);
  });
  it('reaches Succeeded only from a send in flight, or from one whose answer was lost', () => {
    assert.deepEqual(sourcesOf('Succeeded'), ['Sending', 'Unconfirmed']);
    assert.equal(NOT_REMITTED.includes('Unconfirmed'), false, 'an unconfirmed send counts: billing it again could bill twice');
  });
  it('puts every status in exactly one report group', () => {
    const grouped = Object.values(STATUS_GROUPS).flat();
    assert.deepEqual([...grouped].sort(), [...REMITTANCE_STATUSES].sort());
  });
  it('counts as remitted exactly what is not billed again', () => {
    for (const s of REMITTANCE_STATUSES) assert.notEqual(COUNTS_AS_REMITTED.includes(s), NOT_REMITTED.includes(s), s);
  });
  it('resets only what was recorded as remitted and may be voided', () => {
    for (const s of RESETTABLE) {
      assert.ok(canMove(s, 'Voided'), s);
      assert.ok(COUNTS_AS_REMITTED.includes(s), s);
    }
    for (const s of STATUS_GROUPS.inFlight) assert.equal(RESETTABLE.includes(s), false, s);
  });
});
