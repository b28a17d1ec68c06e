// Month-long simulations of the billing engine against an oracle that shares no code with it
// (integer arithmetic on thousandths). However tallies are split into hours, corrected, replayed,
// reordered and grouped into remittance windows, and however remittances fail, expire, hang or
// are voided and billed again: no computation ever bills what is already claimed, and once the
// marketplace is healthy the month adds up to exactly ceil(final MTD x bf), or, under a contract
// committing C billing units, ceil(max(0, final MTD x bf - C)).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { computeRemittance, type EarlierRemittance } from '../../domain/billing';
import { lookupMetric, parseCatalog, type CatalogMetric } from '../../domain/catalog';
import type { Contract } from '../../domain/contracts';
import { Decimal } from '../../domain/decimal';
import type { RemittanceStatus } from '../../domain/lifecycle';

const HOUR_MS = 3_600_000;
const PERIOD = '2026-03';
const MONTH_START = Date.parse('2026-03-01T00:00:00Z');
const HOURS_IN_MONTH = 31 * 24;
const LAST_HOUR = MONTH_START + (HOURS_IN_MONTH - 1) * HOUR_MS;
const ACCOUNT = 'acct-1';

type Flavor = 'payg' | 'contract' | 'gratis' | 'late-contract';

function entryFor(bf: string, flavor: Flavor): CatalogMetric {
  const contractEnabled = flavor !== 'payg';
  const catalog = parseCatalog({
    products: [{ productTag: 'p', contractEnabled, awsProductCode: 'pc', metrics: [{ metric: 'Units', billingFactor: bf, dimensions: { aws: 'units', azure: null }, gratis: flavor === 'gratis' }] }],
  });
  const e = lookupMetric(catalog, 'p', 'units');
  assert.ok(e);
  return e;
}

function contractsFor(flavor: Flavor, lateStartHour: number, coverageK: number): Contract[] {
  const metrics = coverageK > 0 ? [{ dimension: 'units', value: Decimal.fromBigInt(BigInt(coverageK)).div(Decimal.fromBigInt(1000n)).toString() }] : [];
  const base = { orgId: 'o', billingProvider: 'aws' as const, billingAccountId: ACCOUNT, productTag: 'p', endDate: null, licenseId: 'lic', aws: { productCode: 'pc', customerAwsAccountId: '123' }, metrics };
  switch (flavor) {
    case 'payg':
      return [];
    case 'contract':
      return [{ ...base, contractId: 'c', startDate: '2025-01-01T00:00:00.000Z' }];
    case 'gratis':
      // Starts in the first second of the month: strictly after 00:00, active for every hour slot after it.
      return [{ ...base, contractId: 'c', startDate: '2026-03-01T00:00:01.000Z' }];
    case 'late-contract':
      return [{ ...base, contractId: 'c', startDate: new Date(MONTH_START + lateStartHour * HOUR_MS).toISOString() }];
  }
}

/**
 * The oracle, in integers: bf as a fraction n/d, usage and coverage in thousandths, and
 * ceil(max(0, usage x bf - coverage)) = max(0, ceil((K x n - C x d) / (1000 x d))).
 */
const BF: Record<string, [bigint, bigint]> = { '1': [1n, 1n], '0.5': [1n, 2n], '0.25': [1n, 4n], '0.3333': [3333n, 10000n] };
function owedOracle(thousandths: bigint, bf: string, coverageK = 0n): bigint {
  const [n, d] = BF[bf]!;
  const num = thousandths * n - coverageK * d;
  const den = 1000n * d;
  return num <= 0n ? 0n : (num + den - 1n) / den;
}

type Outcome = 'Succeeded' | 'Failed' | 'Expired' | 'Pending' | 'Sending' | 'Unconfirmed';
type Step = { kind: 'tallies'; count: number } | { kind: 'compute' } | { kind: 'resolve'; index: number; to: 'Succeeded' | 'Failed' | 'Expired' } | { kind: 'void'; index: number };

interface Scenario {
  bf: string;
  flavor: Flavor;
  lateStartHour: number;
  /** Committed billing units of the contract, in thousandths (contract flavors only). */
  coverageK: number;
  /** Final value of each hour used, in thousandths of a metric unit. */
  hours: Array<{ hour: number; final: number; earlier: number[]; replays: number }>;
  /** Random priorities that interleave the sends of different hours. */
  order: number[];
  steps: Step[];
  outcomes: Outcome[];
}

const outcome = fc.constantFrom<Outcome>('Succeeded', 'Succeeded', 'Succeeded', 'Failed', 'Failed', 'Expired', 'Pending', 'Sending', 'Unconfirmed');

const scenario: fc.Arbitrary<Scenario> = fc.record({
  bf: fc.constantFrom('1', '0.5', '0.25', '0.3333'),
  flavor: fc.constantFrom<Flavor>('payg', 'contract', 'gratis', 'late-contract'),
  lateStartHour: fc.integer({ min: 1, max: HOURS_IN_MONTH - 1 }),
  coverageK: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 60_000 })),
  hours: fc.uniqueArray(
    fc.record({
      hour: fc.oneof(fc.integer({ min: 1, max: HOURS_IN_MONTH - 1 }), fc.constantFrom(1, HOURS_IN_MONTH - 1)),
      final: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 5 }), fc.constantFrom(1000, 2000, 4000)),
      // Earlier sends of the hour, as fractions of the final value: corrections upward.
      earlier: fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 3 }),
      replays: fc.integer({ min: 0, max: 2 }),
    }),
    { selector: (h) => h.hour, minLength: 1, maxLength: 12 },
  ),
  order: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 80, maxLength: 80 }),
  steps: fc.array(
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('tallies' as const), count: fc.integer({ min: 1, max: 4 }) }) },
      { weight: 4, arbitrary: fc.constant({ kind: 'compute' as const }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('resolve' as const), index: fc.nat(), to: fc.constantFrom('Succeeded' as const, 'Failed' as const, 'Expired' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('void' as const), index: fc.nat() }) },
    ),
    { maxLength: 60 },
  ),
  outcomes: fc.array(outcome, { minLength: 1, maxLength: 40 }),
});

interface LedgerEntry extends EarlierRemittance {
  status: RemittanceStatus;
  bill: number;
}

function run(s: Scenario) {
  const entry = entryFor(s.bf, s.flavor);
  const contracts = contractsFor(s.flavor, s.lateStartHour, s.coverageK);
  const coverageK = entry.contractEnabled ? BigInt(s.coverageK) : 0n;

  // Sends per hour: earlier (upward) corrections, the final value, replays of it.
  const perHour = s.hours.map((h) => {
    const values = [...h.earlier.map((f) => Math.floor((h.final * f) / 1000)).sort((a, b) => a - b), h.final];
    for (let i = 0; i < h.replays; i++) values.push(h.final);
    return values.map((v) => ({ hour: h.hour, thousandths: v }));
  });
  // Interleave hours randomly while each hour's sends keep their order.
  let p = 0;
  const keyed = perHour.flatMap((sends) => {
    const prios = sends.map(() => s.order[p++ % s.order.length]! + p * 1e-9).sort((a, b) => a - b);
    return sends.map((send, i) => ({ send, prio: prios[i]! }));
  });
  const arrivals = keyed.sort((a, b) => a.prio - b.prio).map((k) => k.send);

  const current = new Map<number, number>(); // hour -> thousandths
  const ledger: LedgerEntry[] = [];
  let received = 0;
  let outcomeIndex = 0;
  let waits = 0;

  const counted = () => ledger.filter((e) => !['Failed', 'Expired', 'Voided'].includes(e.status)).reduce((a, e) => a + BigInt(e.bill), 0n);
  const mtdThousandths = () => [...current.values()].reduce((a, v) => a + BigInt(v), 0n);

  const compute = (evaluatedAtMs: number, settle: boolean) => {
    const mtdK = mtdThousandths();
    const mtd = Decimal.fromBigInt(mtdK).div(Decimal.fromBigInt(1000n)).toString();
    const before = counted();
    const d = computeRemittance({ entry, marketplace: 'aws', billingAccountId: ACCOUNT, period: PERIOD, mtd, evaluatedAtMs, contracts, earlier: ledger });
    const owed = owedOracle(mtdK, s.bf, coverageK);
    const contractActive = contracts.some((c) => Date.parse(c.startDate) <= evaluatedAtMs);
    if (entry.contractEnabled && !contractActive) {
      assert.equal(d.kind, 'waiting_for_contract');
      waits++;
      return;
    }
    if (d.kind === 'bill' || d.kind === 'gratis') {
      // Never billed twice: a bill brings what counts as remitted exactly up to what is owed.
      assert.equal(before + BigInt(d.bill), owed, `bill ${d.bill} on top of ${before} with ${owed} owed`);
      assert.equal(d.kind, s.flavor === 'gratis' ? 'gratis' : 'bill');
      assert.ok(Decimal.parse(d.claim).mul(Decimal.parse(s.bf)).gte(Decimal.fromBigInt(BigInt(d.bill))));
      const status: Outcome | 'Gratis' = d.kind === 'gratis' ? 'Gratis' : settle ? 'Succeeded' : s.outcomes[outcomeIndex++ % s.outcomes.length]!;
      ledger.push({ status, bill: d.bill, claim: d.claim, gratis: d.kind === 'gratis' });
    } else {
      assert.equal(d.kind, 'nothing_due', JSON.stringify(d));
      assert.ok(before >= owed, `nothing due while ${before} remitted < ${owed} owed`);
    }
  };

  const latestHourMs = () => MONTH_START + Math.max(...current.keys()) * HOUR_MS;

  for (const step of s.steps) {
    if (step.kind === 'tallies') {
      for (let i = 0; i < step.count && received < arrivals.length; i++, received++) {
        const a = arrivals[received]!;
        current.set(a.hour, a.thousandths); // a re-sent hour replaces its value
      }
    } else if (step.kind === 'compute') {
      if (current.size > 0) compute(latestHourMs(), false);
    } else if (step.kind === 'resolve') {
      const open = ledger.filter((e) => ['Pending', 'Sending', 'Unconfirmed'].includes(e.status));
      const e = open[step.index % Math.max(open.length, 1)];
      if (e) e.status = step.to;
    } else {
      // An operator voids a remitted amount: it is billed again.
      const done = ledger.filter((e) => e.status === 'Succeeded');
      const e = done[step.index % Math.max(done.length, 1)];
      if (e) e.status = 'Voided';
    }
  }

  // The rest of the month's tallies arrive; every open send is settled one way or the other;
  // then the marketplace is healthy and the month is computed (at its last hour, as late
  // tallies are) until nothing is due.
  for (; received < arrivals.length; received++) current.set(arrivals[received]!.hour, arrivals[received]!.thousandths);
  for (const e of ledger) if (['Pending', 'Sending', 'Unconfirmed'].includes(e.status)) e.status = s.outcomes[outcomeIndex++ % s.outcomes.length] === 'Succeeded' ? 'Succeeded' : 'Failed';
  for (let i = 0; i < 3; i++) compute(LAST_HOUR, true);

  const finalK = s.hours.reduce((a, h) => a + BigInt(h.final), 0n);
  assert.equal(mtdThousandths(), finalK);
  const billed = ledger.filter((e) => e.status === 'Succeeded' || e.status === 'Gratis').reduce((a, e) => a + BigInt(e.bill), 0n);
  assert.equal(billed, owedOracle(finalK, s.bf, coverageK), `month billed ${billed}, owed ceil(${finalK}/1000 x ${s.bf} - ${coverageK}/1000)`);
  return { waits, records: ledger.length };
}

void test('property: a month bills exactly ceil(final MTD x bf), never twice, through failures and re-bills', () => {
  fc.assert(
    fc.property(scenario, (s) => {
      run(s);
    }),
    { numRuns: 400 },
  );
});

void test('property: every billing factor and product flavor is exercised (the generator is not vacuous)', () => {
  const seen = new Set<string>();
  let waited = 0;
  let rebilled = 0;
  fc.assert(
    fc.property(scenario, (s) => {
      const r = run(s);
      seen.add(`${s.bf}/${s.flavor}`);
      waited += r.waits > 0 ? 1 : 0;
      rebilled += s.outcomes.some((o) => o === 'Failed' || o === 'Expired') && r.records > 1 ? 1 : 0;
    }),
    { numRuns: 300, seed: 42 },
  );
  for (const bf of ['1', '0.5', '0.25', '0.3333']) for (const f of ['payg', 'contract', 'gratis', 'late-contract']) assert.ok(seen.has(`${bf}/${f}`), `${bf}/${f}`);
  assert.ok(waited > 0, 'some runs wait for a contract');
  assert.ok(rebilled > 0, 'some runs bill failed amounts again');
});

void test('a hand-made month: failures at the very end of the month are billed again, not lost', () => {
  const s: Scenario = {
    bf: '0.25',
    flavor: 'payg',
    lateStartHour: 1,
    coverageK: 0,
    hours: [
      { hour: 10, final: 10_000, earlier: [], replays: 1 },
      { hour: HOURS_IN_MONTH - 1, final: 13_000, earlier: [500], replays: 0 },
    ],
    order: [0.1, 0.2, 0.3, 0.4, 0.5],
    steps: [{ kind: 'tallies', count: 5 }, { kind: 'compute' }, { kind: 'compute' }],
    outcomes: ['Failed', 'Expired'],
  };
  const r = run(s);
  // First computation fails; the replayed computation bills it again (expires); the settled
  // month bills it a third time and succeeds: ceil(23 x 0.25) = 6.
  assert.equal(r.records, 3);
});
