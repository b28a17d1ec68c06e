import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Decimal, DecimalError, DIV_SCALE, toSafeInteger } from '../../domain/decimal';

const d = (s: string) => Decimal.parse(s);

void test('parse: PostgreSQL NUMERIC strings, normalized', () => {
  assert.equal(d('1064.104').toString(), '1064.104');
  assert.equal(d('0.000').toString(), '0');
  assert.equal(d('-0').toString(), '0');
  assert.equal(d('12.500').toString(), '12.5');
  assert.equal(d('007').toString(), '7');
  assert.equal(d('-3.10').toString(), '-3.1');
  assert.equal(d('+2').toString(), '2');
  assert.ok(d('12.500').eq(d('12.5')));
});

void test('parse: exponent forms are expanded exactly', () => {
  assert.equal(d('1e-7').toString(), '0.0000001');
  assert.equal(d('1.5e+21').toString(), '1500000000000000000000');
  assert.equal(d('1.23e-18').toString(), '0.00000000000000000123');
  assert.equal(d('123.45e1').toString(), '1234.5');
  assert.equal(d('5E2').toString(), '500');
});

void test('parse: rejects what is not a decimal', () => {
  for (const bad of ['', ' 1', '1 ', 'NaN', 'Infinity', '-Infinity', '.5', '5.', '1,5', '0x10', '1e', '1e+', '--1', '1.2.3', 'abc', '1e99999999']) {
    assert.throws(() => d(bad), DecimalError, bad);
    assert.equal(Decimal.tryParse(bad), null, bad);
  }
});

void test('fromNumber: shortest round-trip decimal, including exponent forms', () => {
  assert.equal(Decimal.fromNumber(0.1).toString(), '0.1');
  assert.equal(Decimal.fromNumber(0.1).add(Decimal.fromNumber(0.2)).toString(), '0.3');
  assert.equal(Decimal.fromNumber(1e-7).toString(), '0.0000001');
  assert.equal(Decimal.fromNumber(1.5e21).toString(), '1500000000000000000000');
  assert.equal(Decimal.fromNumber(5e-324).toString(), `0.${'0'.repeat(323)}5`);
  assert.equal(Decimal.fromNumber(-0).toString(), '0');
  assert.equal(Decimal.fromNumber(2 ** 53 + 2).toString(), '9007199254740994');
  assert.throws(() => Decimal.fromNumber(NaN), DecimalError);
  assert.throws(() => Decimal.fromNumber(Infinity), DecimalError);
  assert.throws(() => Decimal.fromNumber(-Infinity), DecimalError);
});

void test('property: fromNumber round-trips every finite double', () => {
  fc.assert(
    fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (n) => {
      const s = Decimal.fromNumber(n).toString();
      assert.ok(!/e/i.test(s), s);
      assert.ok(Object.is(Number(s), n) || (n === 0 && Number(s) === 0));
    }),
    { numRuns: 2000 },
  );
});

void test('add/sub/mul are exact where floats are not', () => {
  let acc = Decimal.ZERO;
  for (let i = 0; i < 10; i++) acc = acc.add(d('0.1'));
  assert.equal(acc.toString(), '1');
  assert.equal(d('4.4').sub(d('3')).toString(), '1.4');
  assert.equal(d('1064.104').mul(d('0.25')).toString(), '266.026');
  assert.equal(d('-2.5').mul(d('-0.4')).toString(), '1');
  assert.equal(d('1').sub(d('1.5')).toString(), '-0.5');
  assert.equal(Decimal.sum(['0.1', 0.2, d('0.3')]).toString(), '0.6');
});

void test('large totals stay exact: 1e12 Cores x 0.25, and a month of them', () => {
  const hour = Decimal.fromNumber(1e12);
  let month = Decimal.ZERO;
  for (let h = 0; h < 744; h++) month = month.add(hour);
  assert.equal(month.toString(), '744000000000000');
  assert.equal(month.mul(d('0.25')).toString(), '186000000000000');
  // Beyond 2^53 numbers lose units; decimals do not.
  const huge = d('9007199254740993').add(d('0.0000001'));
  assert.equal(huge.toString(), '9007199254740993.0000001');
  assert.equal(huge.ceil(), 9007199254740994n);
});

void test('compare', () => {
  assert.equal(d('1.10').cmp(d('1.1')), 0);
  assert.equal(d('1.09').cmp(d('1.1')), -1);
  assert.equal(d('-1').cmp(d('-2')), 1);
  assert.ok(d('0.0003').gt(Decimal.ZERO));
  assert.ok(d('2').gte(d('2.0')));
  assert.ok(d('2').lte(d('2.0')));
  assert.ok(d('-0.1').lt(Decimal.ZERO));
  assert.equal(Decimal.max(d('3'), d('2.9')).toString(), '3');
  assert.equal(Decimal.min(d('3'), d('2.9')).toString(), '2.9');
});

void test('ceil and floor', () => {
  assert.equal(d('0.0003').ceil(), 1n);
  assert.equal(d('2').ceil(), 2n);
  assert.equal(d('2.5').ceil(), 3n);
  assert.equal(d('-2.5').ceil(), -2n);
  assert.equal(d('266.026').ceil(), 267n);
  assert.equal(d('2.5').floor(), 2n);
  assert.equal(d('-2.5').floor(), -3n);
  assert.equal(Decimal.ZERO.ceil(), 0n);
});

void test('property: ceil is the least integer >= x', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 25 }), (coef, scale) => {
      const x = d(`${coef}e-${scale}`);
      const c = Decimal.fromBigInt(x.ceil());
      assert.ok(c.gte(x));
      assert.ok(c.sub(Decimal.ONE).lt(x));
    }),
  );
});

void test('divide by terminating billing factors is exact', () => {
  assert.equal(d('18').div(d('0.25')).toString(), '72');
  assert.equal(d('3').div(d('0.5')).toString(), '6');
  assert.equal(d('1').div(d('0.125')).toString(), '8');
  assert.equal(d('1').div(d('8')).toString(), '0.125');
  assert.equal(d('1').div(d('1024')).toString(), '0.0009765625');
  assert.equal(d('7').divExact(d('0.2'))?.toString(), '35');
  assert.equal(d('-3').div(d('0.25')).toString(), '-12');
});

void test('divide: non-terminating quotients are rounded as asked, to DIV_SCALE digits by default', () => {
  // A catalog with bf 0.3333: 1 billing unit is 10000/3333 Cores = 3.000300030003...
  assert.equal(d('1').divExact(d('0.3333')), null);
  const q = d('1').div(d('0.3333'), { rounding: 'ceil' });
  assert.equal(q.scale, DIV_SCALE);
  assert.equal(q.toString(), '3.00030003000300030004');
  assert.equal(d('1').div(d('0.3333'), { rounding: 'floor' }).toString(), '3.00030003000300030003');
  assert.equal(d('1').div(d('0.3333')).toString(), '3.00030003000300030003'); // half-even: the 21st digit 0 rounds down
  assert.equal(d('2').div(d('3'), { scale: 4 }).toString(), '0.6667');
  assert.equal(d('-2').div(d('3'), { scale: 4, rounding: 'ceil' }).toString(), '-0.6666');
  assert.equal(d('-2').div(d('3'), { scale: 4, rounding: 'floor' }).toString(), '-0.6667');
  assert.throws(() => d('1').div(Decimal.ZERO), DecimalError);
});

void test('half-even rounds ties to even', () => {
  assert.equal(d('0.125').round(2).toString(), '0.12');
  assert.equal(d('0.135').round(2).toString(), '0.14');
  assert.equal(d('-0.125').round(2).toString(), '-0.12');
  assert.equal(d('0.1251').round(2).toString(), '0.13');
  assert.equal(d('0.125').round(2, 'ceil').toString(), '0.13');
  assert.equal(d('0.125').round(5).toString(), '0.125');
});

void test('property: exact division inverts multiplication', () => {
  const bf = fc.constantFrom('1', '0.5', '0.25', '0.2', '0.125', '2', '0.01');
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 10n ** 18n }), fc.integer({ min: 0, max: 12 }), bf, (coef, scale, f) => {
      const x = d(`${coef}e-${scale}`);
      const q = x.div(d(f));
      assert.ok(q.mul(d(f)).eq(x));
    }),
  );
});

void test('property: rounded division brackets the exact quotient', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 1n, max: 10n ** 12n }), fc.bigInt({ min: 1n, max: 10n ** 6n }), (a, b) => {
      const x = Decimal.fromBigInt(a);
      const y = d(`${b}e-4`);
      const up = x.div(y, { rounding: 'ceil' });
      const down = x.div(y, { rounding: 'floor' });
      assert.ok(up.mul(y).gte(x));
      assert.ok(down.mul(y).lte(x));
      assert.ok(up.sub(down).lte(d(`1e-${DIV_SCALE}`)));
    }),
  );
});

void test('toString is plain notation and JSON is the string', () => {
  assert.equal(d('1e-30').toString(), `0.${'0'.repeat(29)}1`);
  assert.equal(JSON.stringify({ v: d('2.50') }), '{"v":"2.5"}');
  assert.equal(d('-0.5').toNumber(), -0.5);
});

void test('toSafeInteger refuses silent precision loss', () => {
  assert.equal(toSafeInteger(2147483647n), 2147483647);
  assert.throws(() => toSafeInteger(2n ** 53n), RangeError);
});
