// Coalesces concurrent submissions into marketplace calls and keeps calls under the
// marketplace's rate limit. Marketplace-agnostic: it knows only MarketplaceClient.
//
// Why: AWS allows 10 BatchMeterUsage calls a second per account and region. One record per call
// caps remittance at 10 records a second; 25 per call raises it to 250. Each submitter still gets
// its own record's outcome, and a record already outside the acceptance window never joins a
// batch, since AWS rejects a whole batch for one stale record.

import { performance } from 'node:perf_hooks';
import type { Logger } from '../lib/log';
import type { MarketplaceClient, SendOutcome, UsageRecord } from './types';

/**
 * Admits calls under a key (seller account + region). `acquire` resolves when one more call is
 * allowed. It may resolve to a `release` function, which the caller invokes once the call has
 * completed: a limiter that counts calls from their completion rather than their admission is
 * exact about what the marketplace sees, since a call arrives there somewhere between the two.
 */
export interface RateLimiter {
  acquire(key: string): Promise<void | (() => void)>;
}

export interface InProcessRateLimiterOptions {
  /** Calls allowed per window per key (AWS: 10). */
  callsPerSecond: number;
  /** Default 1000 ms. */
  windowMs?: number;
  /** Extra spacing for timer and clock granularity; default 10 ms. */
  marginMs?: number;
  /** A call never released stops counting after this long; default 60 s. */
  maxHoldMs?: number;
  now?: () => number;
}

interface Slot {
  admittedAt: number;
  completedAt: number | undefined;
}

/**
 * At most `callsPerSecond` calls per key in any window, where a call occupies the window from
 * its admission until `windowMs` after its completion. The marketplace counts calls when they
 * arrive, which is after we admit them by a variable delay (signing, a cold SDK, a busy event
 * loop); counting from completion bounds that delay instead of guessing it. For one process
 * only; a cross-process limiter implements the same interface.
 */
export function createInProcessRateLimiter(options: InProcessRateLimiterOptions): RateLimiter {
  const limit = options.callsPerSecond;
  if (!(limit >= 1)) throw new Error('callsPerSecond must be at least 1');
  const spanMs = (options.windowMs ?? 1000) + (options.marginMs ?? 10);
  const maxHoldMs = options.maxHoldMs ?? 60_000;
  const now = options.now ?? (() => performance.now());
  const slots = new Map<string, Slot[]>();
  const tails = new Map<string, Promise<unknown>>();
  const wakers = new Map<string, () => void>();

  function live(s: Slot, t: number): boolean {
    return s.completedAt === undefined ? t - s.admittedAt < maxHoldMs : t - s.completedAt < spanMs;
  }

  async function admit(key: string): Promise<() => void> {
    for (;;) {
      const t = now();
      const held = (slots.get(key) ?? []).filter((s) => live(s, t));
      slots.set(key, held);
      if (held.length < limit) {
        const slot: Slot = { admittedAt: t, completedAt: undefined };
        held.push(slot);
        return () => {
          if (slot.completedAt !== undefined) return;
          slot.completedAt = now();
          wakers.get(key)?.();
        };
      }
      // Wake when the oldest completed call leaves the window, or when a call completes.
      const ends = held.map((s) => (s.completedAt === undefined ? s.admittedAt + maxHoldMs : s.completedAt + spanMs));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(0, Math.min(...ends) - t));
        function done(): void {
          clearTimeout(timer);
          wakers.delete(key);
          resolve();
        }
        wakers.set(key, done);
      });
    }
  }

  return {
    acquire(key: string): Promise<() => void> {
      // One waiter at a time per key, so admissions are first come, first served.
      const turn = (tails.get(key) ?? Promise.resolve()).then(() => admit(key));
      const tail = turn.catch(() => undefined);
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return turn;
    },
  };
}

export interface BatcherOptions {
  client: MarketplaceClient;
  /** Records with the same group key may share a call (e.g. marketplace, region, product). */
  groupKey(record: UsageRecord): string;
  /** Rate-limit key (seller account + region); default: the client's marketplace. */
  rateKey?(record: UsageRecord): string;
  /** How long a partial batch waits for the next record before it goes. */
  lingerMs: number;
  /** Longest a record waits for company in all; default 10 x lingerMs. */
  maxLingerMs?: number;
  /** Whether more records like this one are on their way (asked before a partial batch goes). */
  moreExpected?(record: UsageRecord): Promise<boolean>;
  rateLimiter: RateLimiter;
  /** True for records the marketplace would reject as too old. */
  isExpired(record: UsageRecord): boolean;
  /** Default: client.maxBatchSize. */
  maxBatchSize?: number;
  /** Outcome for every record of a call whose send() threw; default ambiguous. */
  classifyError?(err: unknown): SendOutcome;
  log?: Logger;
}

export interface Batcher {
  /** Resolves with this record's own outcome; never rejects for a marketplace answer. */
  submit(record: UsageRecord, hooks?: SubmitHooks): Promise<SendOutcome>;
  /** Resolves when everything submitted so far has its outcome. */
  drain(): Promise<void>;
}

export interface SubmitHooks {
  /**
   * Awaited just before the record's call goes out (not while it waits in the queue): the ledger
   * records that this record may now reach the marketplace. If it fails, the record is not sent.
   */
  onDispatch?(): Promise<void>;
}

interface Entry {
  record: UsageRecord;
  hooks?: SubmitHooks;
  resolve(outcome: SendOutcome): void;
  /** Sent in a call of its own (after a whole-batch window rejection). */
  alone: boolean;
}

interface Group {
  queue: Entry[];
  timer: NodeJS.Timeout | undefined;
  /** When the oldest record not yet taken into a call arrived. */
  firstAt?: number;
  /** Send what is queued even if it is not a full batch (debounce ran out, or a lone re-send). */
  flush?: boolean;
  draining: boolean;
}

/**
 * Deadline first: a record's acceptance deadline is its hour plus the marketplace's window, so
 * the oldest hour waiting is the one closest to being rejected. Under a backlog (throttling, an
 * outage ending) it is sent first; records of equal hours keep their arrival order.
 */
export function insertByDeadline(queue: { record: UsageRecord }[], entry: { record: UsageRecord }): void {
  let lo = 0;
  let hi = queue.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((queue[mid] as { record: UsageRecord }).record.timestampMs <= entry.record.timestampMs) lo = mid + 1;
    else hi = mid;
  }
  queue.splice(lo, 0, entry);
}

export function windowExpired(record: UsageRecord): SendOutcome {
  return {
    kind: 'terminal',
    code: 'marketplace_window_expired',
    reason: `the record for ${new Date(record.timestampMs).toISOString()} is outside the marketplace's acceptance window; it was not sent`,
  };
}

export function createBatcher(options: BatcherOptions): Batcher {
  const { client, rateLimiter, isExpired, log } = options;
  const maxBatchSize = Math.max(1, Math.min(options.maxBatchSize ?? client.maxBatchSize, client.maxBatchSize));
  const rateKey = options.rateKey ?? (() => client.marketplace);
  const classifyError = options.classifyError ?? ((err: unknown): SendOutcome => ({ kind: 'ambiguous', reason: `marketplace call failed unexpectedly: ${(err as Error)?.message ?? String(err)}` }));
  const maxLingerMs = options.maxLingerMs ?? options.lingerMs * 10;
  const groups = new Map<string, Group>();
  const inFlight = new Set<Promise<void>>();

  function submit(record: UsageRecord, hooks?: SubmitHooks): Promise<SendOutcome> {
    if (isExpired(record)) return Promise.resolve(windowExpired(record));
    return new Promise<SendOutcome>((resolve) => enqueue(options.groupKey(record), { record, hooks, resolve, alone: false }));
  }

  function enqueue(key: string, entry: Entry, front = false): void {
    let g = groups.get(key);
    if (!g) {
      g = { queue: [], timer: undefined, draining: false };
      groups.set(key, g);
    }
    if (front) g.queue.unshift(entry);
    else insertByDeadline(g.queue, entry);
    if (front) g.flush = true;
    if (g.draining) return;
    if (g.queue.length >= maxBatchSize || front) startDrain(key, g);
    else arm(key, g);
  }

  /**
   * Debounce a partial batch: while records keep arriving (remittances closing together, picked
   * up by workers one by one) it waits for company, until no record came for lingerMs or its
   * oldest record has waited maxLingerMs; then it goes as it is. Full batches never wait.
   */
  function arm(key: string, g: Group): void {
    g.firstAt ??= Date.now();
    if (g.timer) clearTimeout(g.timer);
    const wait = Math.max(0, Math.min(options.lingerMs, g.firstAt + maxLingerMs - Date.now()));
    g.timer = setTimeout(() => {
      g.timer = undefined;
      const goNow = () => {
        if (g.draining || g.timer || g.queue.length === 0) return;
        g.flush = true;
        startDrain(key, g);
      };
      const overdue = Date.now() - (g.firstAt ?? Date.now()) >= maxLingerMs;
      if (overdue || !options.moreExpected) return goNow();
      // Records known to be on their way (e.g. remittances computed but not yet handed to us)
      // are worth waiting for, as long as the oldest record has not waited too long.
      options.moreExpected(g.queue[0]!.record).then(
        (more) => (more && !g.draining && !g.timer ? arm(key, g) : goNow()),
        () => goNow(),
      );
    }, wait);
  }

  function startDrain(key: string, g: Group): void {
    if (g.timer) clearTimeout(g.timer);
    g.timer = undefined;
    if (g.draining) return;
    g.draining = true;
    track(drainGroup(key, g));
  }

  async function drainGroup(key: string, g: Group): Promise<void> {
    try {
      while (g.queue.length > 0) {
        // A partial batch goes only when its debounce ran out (flush); otherwise it waits.
        if (g.queue.length < maxBatchSize && !g.flush) break;
        const head = g.queue[0] as Entry;
        let release: void | (() => void);
        try {
          release = await rateLimiter.acquire(rateKey(head.record));
        } catch (err) {
          // Nothing was sent: every waiting record may simply try again.
          const reason = `rate limiter failed: ${(err as Error)?.message ?? String(err)}`;
          for (const e of g.queue.splice(0)) e.resolve({ kind: 'retryable', code: 'unknown', reason });
          break;
        }
        // Taken after the wait, so records that arrived meanwhile ride along.
        const batch = takeBatch(g);
        if (g.queue.length < maxBatchSize) g.flush = false;
        g.firstAt = g.queue.length > 0 ? Date.now() : undefined;
        if (batch.length > 0) track(sendBatch(key, batch).finally(() => release?.()));
        else release?.();
      }
    } finally {
      g.draining = false;
      if (g.queue.length === 0) groups.delete(key);
      else if (g.queue.length >= maxBatchSize || g.flush) startDrain(key, g);
      else arm(key, g);
    }
  }

  function takeBatch(g: Group): Entry[] {
    const batch: Entry[] = [];
    while (g.queue.length > 0 && batch.length < maxBatchSize) {
      const e = g.queue[0] as Entry;
      if ((e.alone || batch[0]?.alone) && batch.length > 0) break;
      g.queue.shift();
      // It may have aged out while waiting for its turn.
      if (isExpired(e.record)) e.resolve(windowExpired(e.record));
      else batch.push(e);
    }
    return batch;
  }

  async function sendBatch(key: string, all: Entry[]): Promise<void> {
    // A record whose dispatch could not be recorded stays unsent: sending it unrecorded could
    // leave a crash unexplained.
    const dispatched = await Promise.all(all.map((e) => (e.hooks?.onDispatch ? e.hooks.onDispatch().then(() => true, () => false) : true)));
    const batch = all.filter((e, i) => {
      if (!dispatched[i]) e.resolve({ kind: 'retryable', code: 'unknown', reason: 'could not record the send before making it; nothing was sent' });
      return dispatched[i];
    });
    if (batch.length === 0) return;
    let outcomes: SendOutcome[];
    try {
      outcomes = await client.send(batch.map((e) => e.record));
    } catch (err) {
      log?.error({ err: (err as Error)?.message, records: batch.length }, 'marketplace send threw');
      const outcome = classifyError(err);
      outcomes = batch.map(() => outcome);
    }
    const wholeBatchExpired = batch.length > 1 && outcomes.length === batch.length && outcomes.every((o) => o.kind === 'terminal' && o.code === 'marketplace_window_expired');
    batch.forEach((e, i) => {
      const outcome = outcomes[i] ?? { kind: 'ambiguous', reason: 'the marketplace client returned no outcome for this record' };
      if (wholeBatchExpired && !e.alone && !isExpired(e.record)) {
        // The marketplace judged the batch stale though we did not (clock skew): send each
        // record once on its own, so only the truly stale ones fail.
        enqueue(key, { ...e, alone: true }, true);
        return;
      }
      e.resolve(outcome);
    });
  }

  function track(p: Promise<void>): void {
    inFlight.add(p);
    void p
      .catch((err: unknown) => log?.error({ err: (err as Error)?.message }, 'batcher bug'))
      .finally(() => inFlight.delete(p));
  }

  async function drain(): Promise<void> {
    for (;;) {
      for (const [key, g] of groups) {
        if (g.timer && !g.draining) {
          g.flush = true;
          startDrain(key, g);
        }
      }
      if (inFlight.size === 0) return;
      await Promise.allSettled([...inFlight]);
    }
  }

  return { submit, drain };
}
