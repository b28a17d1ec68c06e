import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canMove, NOT_REMITTED, RECOMPUTABLE, sourcesOf, TRANSITIONS } from '../../domain/lifecycle';
import { REMITTANCE_STATUSES } from '../../workflows/definitions';

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
});
