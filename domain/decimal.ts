// Exact decimal arithmetic for billing quantities, on BigInt.
//
// Why not JS numbers: 0.1 + 0.2 !== 0.3, and a ceil() over a sum that should be exactly 5 but is
// 5.000000000000001 bills a customer one whole unit too many. Every quantity in billing (tally
// values, month-to-date totals, billing factors, coverage, claims) is therefore a Decimal, and
// JS numbers appear only at the edges (JSON in, marketplace quantities out).
//
// Semantics worth knowing:
// - A value is coef / 10^scale with scale >= 0, kept normalized (no trailing fractional zeros), so
//   equal values have equal representations and toString() is canonical: "12", "0.0000001".
// - From a JS number we take its shortest round-trip decimal (String(n)): 0.1 becomes exactly 0.1,
//   not the binary double 0.1000000000000000055511151231257827. That is the decimal the sender
//   meant; any other choice would invent digits nobody sent. Exponent forms (1e-7, 1.5e+21) are
//   expanded exactly.
// - add, sub and mul are exact. Magnitude is unbounded (BigInt), so 1e12 Cores x 0.25 is exactly
//   250000000000 and a month of such hours sums without loss.
// - Division is exact whenever the quotient terminates (dividing by 0.5, 0.25, 0.2, 0.125 ...
//   always does). When it does not (bill / 0.3333 = bill x 10000/3333 = 3.000300030003...), the
//   quotient is rounded to `scale` fractional digits (default DIV_SCALE = 20) in the rounding mode
//   asked for (default half-even). Billing itself never needs a non-terminating division: see
//   domain/billing.ts, which works in billing units and divides only to report a claim.

export type Rounding = 'ceil' | 'floor' | 'half-even';

/** Fractional digits kept when a quotient does not terminate. */
export const DIV_SCALE = 20;

/**
 * Bound on the decimal exponent accepted by parse(). JS numbers need at most ~340 digits and
 * PostgreSQL NUMERIC at most 16383 fractional digits; anything beyond is hostile input that would
 * make BigInt allocate without limit.
 */
const MAX_EXPONENT = 20_000;

const DECIMAL_RE = /^([+-])?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

const POW10_CACHE: bigint[] = [];
function pow10(n: number): bigint {
  if (n < 64) {
    let v = POW10_CACHE[n];
    if (v === undefined) {
      v = 10n ** BigInt(n);
      POW10_CACHE[n] = v;
    }
    return v;
  }
  return 10n ** BigInt(n);
}

function absBig(v: bigint): bigint {
  return v < 0n ? -v : v;
}

function gcd(a: bigint, b: bigint): bigint {
  a = absBig(a);
  b = absBig(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/** num / den rounded to an integer; den > 0. */
function divRound(num: bigint, den: bigint, rounding: Rounding): bigint {
  const q = num / den; // truncates toward zero
  const r = num % den; // same sign as num
  if (r === 0n) return q;
  switch (rounding) {
    case 'floor':
      return num < 0n ? q - 1n : q;
    case 'ceil':
      return num > 0n ? q + 1n : q;
    case 'half-even': {
      const twice = absBig(r) * 2n;
      const away = num < 0n ? q - 1n : q + 1n;
      if (twice > den) return away;
      if (twice < den) return q;
      return q % 2n === 0n ? q : away;
    }
  }
}

export class DecimalError extends Error {
  override name = 'DecimalError';
}

export class Decimal {
  static readonly ZERO = new Decimal(0n, 0);
  static readonly ONE = new Decimal(1n, 0);

  /** Value = coef / 10^scale, scale >= 0, normalized. */
  private constructor(
    readonly coef: bigint,
    readonly scale: number,
  ) {}

  private static of(coef: bigint, scale: number): Decimal {
    if (coef === 0n) return Decimal.ZERO;
    while (scale > 0 && coef % 10n === 0n) {
      coef /= 10n;
      scale--;
    }
    return new Decimal(coef, scale);
  }

  static fromBigInt(v: bigint): Decimal {
    return Decimal.of(v, 0);
  }

  /**
   * A decimal string as PostgreSQL NUMERIC returns it ("1064.104", "-3", "0.000") or as JS prints
   * numbers ("1e-7", "1.5e+21"). No whitespace, no "NaN"/"Infinity", no ".5" or "5.".
   */
  static parse(s: string): Decimal {
    const d = Decimal.tryParse(s);
    if (d === null) throw new DecimalError(`not a decimal number: ${JSON.stringify(s)}`);
    return d;
  }

  static tryParse(s: string): Decimal | null {
    if (typeof s !== 'string' || s.length === 0 || s.length > 100_000) return null;
    const m = DECIMAL_RE.exec(s);
    if (!m) return null;
    const [, sign, intPart = '', fracPart = '', expPart] = m;
    const exp = expPart === undefined ? 0 : Number(expPart);
    if (!Number.isSafeInteger(exp) || Math.abs(exp) > MAX_EXPONENT) return null;
    let coef = BigInt(intPart + fracPart);
    if (sign === '-') coef = -coef;
    let scale = fracPart.length - exp;
    if (scale < 0) {
      coef *= pow10(-scale);
      scale = 0;
    }
    return Decimal.of(coef, scale);
  }

  /** The shortest round-trip decimal of a finite JS number (see the header). */
  static fromNumber(n: number): Decimal {
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new DecimalError(`not a finite number: ${String(n)}`);
    return Decimal.parse(String(n));
  }

  /** Parse a decimal string or take a finite JS number. */
  static from(v: Decimal | string | number | bigint): Decimal {
    if (v instanceof Decimal) return v;
    if (typeof v === 'bigint') return Decimal.fromBigInt(v);
    if (typeof v === 'number') return Decimal.fromNumber(v);
    return Decimal.parse(v);
  }

  static sum(values: Iterable<Decimal | string | number>): Decimal {
    let acc = Decimal.ZERO;
    for (const v of values) acc = acc.add(Decimal.from(v));
    return acc;
  }

  static max(a: Decimal, b: Decimal): Decimal {
    return a.cmp(b) >= 0 ? a : b;
  }

  static min(a: Decimal, b: Decimal): Decimal {
    return a.cmp(b) <= 0 ? a : b;
  }

  private aligned(other: Decimal): [bigint, bigint, number] {
    if (this.scale === other.scale) return [this.coef, other.coef, this.scale];
    if (this.scale > other.scale) return [this.coef, other.coef * pow10(this.scale - other.scale), this.scale];
    return [this.coef * pow10(other.scale - this.scale), other.coef, other.scale];
  }

  add(other: Decimal): Decimal {
    const [a, b, scale] = this.aligned(other);
    return Decimal.of(a + b, scale);
  }

  sub(other: Decimal): Decimal {
    const [a, b, scale] = this.aligned(other);
    return Decimal.of(a - b, scale);
  }

  mul(other: Decimal): Decimal {
    return Decimal.of(this.coef * other.coef, this.scale + other.scale);
  }

  neg(): Decimal {
    return Decimal.of(-this.coef, this.scale);
  }

  /** -1, 0 or 1. */
  cmp(other: Decimal): -1 | 0 | 1 {
    const [a, b] = this.aligned(other);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  eq(other: Decimal): boolean {
    return this.coef === other.coef && this.scale === other.scale;
  }

  lt(other: Decimal): boolean {
    return this.cmp(other) < 0;
  }

  lte(other: Decimal): boolean {
    return this.cmp(other) <= 0;
  }

  gt(other: Decimal): boolean {
    return this.cmp(other) > 0;
  }

  gte(other: Decimal): boolean {
    return this.cmp(other) >= 0;
  }

  isZero(): boolean {
    return this.coef === 0n;
  }

  isNegative(): boolean {
    return this.coef < 0n;
  }

  isPositive(): boolean {
    return this.coef > 0n;
  }

  isInteger(): boolean {
    return this.scale === 0;
  }

  /** Smallest integer >= this. */
  ceil(): bigint {
    return this.scale === 0 ? this.coef : divRound(this.coef, pow10(this.scale), 'ceil');
  }

  /** Largest integer <= this. */
  floor(): bigint {
    return this.scale === 0 ? this.coef : divRound(this.coef, pow10(this.scale), 'floor');
  }

  /** Round to `scale` fractional digits. */
  round(scale: number, rounding: Rounding = 'half-even'): Decimal {
    if (this.scale <= scale) return this;
    return Decimal.of(divRound(this.coef, pow10(this.scale - scale), rounding), scale);
  }

  /**
   * this / divisor, exact when the quotient terminates (see divExact); otherwise rounded to
   * `scale` fractional digits with `rounding`. Throws on division by zero.
   */
  div(divisor: Decimal, opts: { scale?: number; rounding?: Rounding } = {}): Decimal {
    const exact = this.divExact(divisor);
    if (exact !== null) return exact;
    const scale = opts.scale ?? DIV_SCALE;
    const [num, den] = this.ratio(divisor);
    return Decimal.of(divRound(num * pow10(scale), den, opts.rounding ?? 'half-even'), scale);
  }

  /** this / divisor when the quotient has a finite decimal expansion, else null. */
  divExact(divisor: Decimal): Decimal | null {
    const [num, den] = this.ratio(divisor);
    // A reduced fraction terminates iff its denominator is 2^a x 5^b; it then needs max(a, b) digits.
    let rest = den;
    let twos = 0;
    let fives = 0;
    while (rest % 2n === 0n) {
      rest /= 2n;
      twos++;
    }
    while (rest % 5n === 0n) {
      rest /= 5n;
      fives++;
    }
    if (rest !== 1n) return null;
    const scale = Math.max(twos, fives);
    return Decimal.of((num * pow10(scale)) / den, scale);
  }

  /** this / divisor as a reduced fraction num/den with den > 0. */
  private ratio(divisor: Decimal): [bigint, bigint] {
    if (divisor.isZero()) throw new DecimalError('division by zero');
    let num = this.coef * pow10(divisor.scale);
    let den = divisor.coef * pow10(this.scale);
    if (den < 0n) {
      num = -num;
      den = -den;
    }
    const g = gcd(num, den);
    return g > 1n ? [num / g, den / g] : [num, den];
  }

  /** Plain decimal notation, never an exponent: PostgreSQL NUMERIC and humans both read it. */
  toString(): string {
    const neg = this.coef < 0n;
    const digits = absBig(this.coef).toString();
    if (this.scale === 0) return neg ? `-${digits}` : digits;
    const padded = digits.padStart(this.scale + 1, '0');
    const cut = padded.length - this.scale;
    return `${neg ? '-' : ''}${padded.slice(0, cut)}.${padded.slice(cut)}`;
  }

  toJSON(): string {
    return this.toString();
  }

  /** Nearest JS number; for display and JSON edges only, never for further billing arithmetic. */
  toNumber(): number {
    return Number(this.toString());
  }
}

/** Exact integer as a JS number, or a RangeError when it is not a safe integer. */
export function toSafeInteger(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`integer ${v} is beyond Number.MAX_SAFE_INTEGER`);
  }
  return Number(v);
}
