// Group commit for the ledger's per-record writes. A marketplace call carries up to 25 records,
// and the workflows of those records write their intent, dispatch and outcome at about the same
// moment: written one by one that is 25 round trips (and, on a database that runs transactions
// one at a time, 25 turns) where one set-based statement does. Calls that arrive while a batch
// is being written go together in the next one; a lone call goes out on the next turn of the
// event loop, so nothing waits for a batch to fill.

export type Coalesced<I, O> = (input: I) => Promise<O>;

/**
 * `run` gets the inputs of one batch and returns one output per input, in order. If it throws,
 * every call of that batch rejects with the error (each caller retries as it would alone).
 */
export function groupCommit<I, O>(run: (inputs: I[]) => Promise<O[]>, maxBatch = 200): Coalesced<I, O> {
  type Waiting = { input: I; resolve: (o: O) => void; reject: (e: unknown) => void };
  let queue: Waiting[] = [];
  let scheduled = false;

  async function flush(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      try {
        const out = await run(batch.map((w) => w.input));
        if (out.length !== batch.length) throw new Error(`group commit: ${out.length} results for ${batch.length} inputs`);
        batch.forEach((w, i) => w.resolve(out[i]!));
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    scheduled = false;
  }

  return (input) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ input, resolve, reject });
      if (!scheduled) {
        scheduled = true;
        // setImmediate, not a microtask: the 25 callers of one marketplace call resume in
        // successive microtasks, and should all be queued before the batch is taken.
        setImmediate(() => void flush());
      }
    });
}
