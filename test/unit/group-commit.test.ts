import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupCommit } from '../../db/group-commit';

/** A write that records each batch it gets and answers each input with its double. */
function recorder() {
  const batches: number[][] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const run = async (inputs: number[]) => {
    batches.push(inputs);
    if (hold) await new Promise<void>((r) => (release = r));
    return inputs.map((x) => x * 2);
  };
  return { batches, run, holdNext: () => (hold = true), release: () => ((hold = false), release?.()) };
}

describe('group commit of per-record writes', () => {
  it('writes the calls of the 25 records of one marketplace call in one batch, each caller getting its own answer', async () => {
    const r = recorder();
    const write = groupCommit(r.run);
    // The callers resume one after another in microtasks, as the sends of one call do.
    const answers = await Promise.all(Array.from({ length: 25 }, (_, i) => Promise.resolve().then(() => write(i))));
    assert.deepEqual(answers, Array.from({ length: 25 }, (_, i) => i * 2));
    assert.deepEqual(r.batches, [Array.from({ length: 25 }, (_, i) => i)]);
  });

  it('a lone call is written without waiting for company', async () => {
    const r = recorder();
    const write = groupCommit(r.run);
    assert.equal(await write(7), 14);
    assert.equal(await write(8), 16);
    assert.deepEqual(r.batches, [[7], [8]]);
  });

  it('calls arriving while a batch is being written go together in the next one', async () => {
    const r = recorder();
    const write = groupCommit(r.run);
    r.holdNext();
    const first = write(1);
    await new Promise((res) => setImmediate(res));
    const later = [write(2), write(3), write(4)];
    r.release();
    assert.deepEqual(await Promise.all([first, ...later]), [2, 4, 6, 8]);
    assert.deepEqual(r.batches, [[1], [2, 3, 4]]);
  });

  it('a failed write fails every call of its batch and no other', async () => {
    let n = 0;
    const write = groupCommit(async (inputs: number[]) => {
      if (n++ === 0) throw new Error('connection lost');
      return inputs;
    });
    const failed = await Promise.allSettled([write(1), write(2)]);
    assert.deepEqual(failed.map((f) => f.status), ['rejected', 'rejected']);
    assert.equal(await write(3), 3);
  });

  it('never writes more than maxBatch inputs at once', async () => {
    const r = recorder();
    const write = groupCommit(r.run, 10);
    await Promise.all(Array.from({ length: 25 }, (_, i) => write(i)));
    assert.deepEqual(r.batches.map((b) => b.length), [10, 10, 5]);
  });

  it('a write that answers for fewer inputs than it got fails the batch instead of answering wrongly', async () => {
    const write = groupCommit(async (inputs: number[]) => inputs.slice(1));
    await assert.rejects(Promise.all([write(1), write(2)]), /1 results for 2 inputs/);
  });
});
