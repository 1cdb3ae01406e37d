/** The label selector language (policy/selector.ts): parsing, evaluation and canonical text. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '../../lib/errors';
import { canonical, matches, parseSelector, quote } from '../../policy/selector';

const bad = (re: RegExp) => (e: unknown) => e instanceof BadRequestError && re.test(e.message);
const m = (src: string, labels: Record<string, string>) => matches(parseSelector(src), labels);
const db = { role: 'db', tier: 'back' };
const web = { role: 'web' };
const none = {};

describe('parseSelector and matches', () => {
  test('== matches only when the key is present with that value', () => {
    assert.equal(m("role == 'db'", db), true);
    assert.equal(m("role == 'db'", web), false);
    assert.equal(m("role == 'db'", none), false);
    assert.deepEqual(parseSelector("role == 'db'"), { op: 'eq', key: 'role', value: 'db' });
  });

  test('!= is true when the key has another value or is absent', () => {
    assert.equal(m("role != 'db'", db), false);
    assert.equal(m("role != 'db'", web), true);
    assert.equal(m("role != 'db'", none), true);
  });

  test('has() and !has() test only the presence of the key', () => {
    assert.equal(m('has(tier)', db), true);
    assert.equal(m('has(tier)', web), false);
    assert.equal(m('has(tier)', { tier: '' }), true);
    assert.equal(m('!has(tier)', db), false);
    assert.equal(m('!has(tier)', web), true);
    assert.deepEqual(parseSelector('!has(tier)'), { op: 'not', arg: { op: 'has', key: 'tier' } });
  });

  test('in matches a value of the set and never an absent key', () => {
    assert.equal(m("role in {'db','cache'}", db), true);
    assert.equal(m("role in {'web', 'cache'}", db), false);
    assert.equal(m("role in {'db'}", none), false);
    assert.equal(m('role in {}', db), false);
    assert.deepEqual(parseSelector('role in {\'a\', "b"}'), { op: 'in', key: 'role', values: ['a', 'b'] });
  });

  test('not in is true when the value is outside the set or the key is absent', () => {
    assert.equal(m("role not in {'db','cache'}", db), false);
    assert.equal(m("role not in {'db','cache'}", web), true);
    assert.equal(m("role not in {'db'}", none), true);
    assert.equal(m('role not in {}', db), true);
  });

  test('all(), an empty text, blanks, null and undefined all match everything', () => {
    for (const s of ['all()', ' all ( ) ', '', '   ', null, undefined]) {
      assert.deepEqual(parseSelector(s), { op: 'all' });
      assert.equal(matches(parseSelector(s), none), true);
    }
  });

  test('&& needs every side and || any side', () => {
    assert.equal(m("role == 'db' && tier == 'back'", db), true);
    assert.equal(m("role == 'db' && tier == 'front'", db), false);
    assert.equal(m("role == 'web' || tier == 'back'", db), true);
    assert.equal(m("role == 'web' || tier == 'front'", db), false);
    assert.equal(m("role == 'a' || role == 'b' || role == 'db'", db), true);
  });

  test('! negates the comparison, has() or parenthesised group after it', () => {
    assert.equal(m("!role == 'db'", db), false);
    assert.equal(m("!role == 'db'", none), true);
    assert.equal(m("!(role == 'db' && has(tier))", db), false);
    assert.equal(m("!(role == 'db' && has(tier))", { role: 'db' }), true);
    assert.equal(m("!!role == 'db'", db), true);
    assert.deepEqual(parseSelector("!a == 'x' && b == 'y'"), {
      op: 'and',
      args: [
        { op: 'not', arg: { op: 'eq', key: 'a', value: 'x' } },
        { op: 'eq', key: 'b', value: 'y' },
      ],
    });
  });

  test('&& binds tighter than ||', () => {
    const s = parseSelector("a == '1' || b == '2' && c == '3'");
    assert.equal(s.op, 'or');
    assert.deepEqual(s, {
      op: 'or',
      args: [
        { op: 'eq', key: 'a', value: '1' },
        {
          op: 'and',
          args: [
            { op: 'eq', key: 'b', value: '2' },
            { op: 'eq', key: 'c', value: '3' },
          ],
        },
      ],
    });
    // a alone is enough; b alone is not.
    assert.equal(matches(s, { a: '1' }), true);
    assert.equal(matches(s, { b: '2' }), false);
    assert.equal(matches(s, { b: '2', c: '3' }), true);
  });

  test('parentheses override the precedence', () => {
    const s = parseSelector("(a == '1' || b == '2') && c == '3'");
    assert.equal(s.op, 'and');
    assert.equal(matches(s, { a: '1' }), false);
    assert.equal(matches(s, { a: '1', c: '3' }), true);
    assert.equal(matches(s, { b: '2', c: '3' }), true);
  });

  test('keys may hold letters, digits, dots, dashes, underscores and slashes', () => {
    assert.equal(m("calico/network == 'front'", { 'calico/network': 'front' }), true);
    assert.equal(m("app.kubernetes.io/name-x_1 == 'v'", { 'app.kubernetes.io/name-x_1': 'v' }), true);
  });

  test('values keep spaces and the other kind of quote, and compare exactly', () => {
    assert.equal(m('owner == "bob\'s"', { owner: "bob's" }), true);
    assert.equal(m('note == \'say "hi"\'', { note: 'say "hi"' }), true);
    assert.equal(m("role == ' db'", db), false);
    assert.equal(m("role == 'DB'", db), false);
  });

  test('has, all, in and not are usable as plain label keys', () => {
    assert.equal(m("has == 'x'", { has: 'x' }), true);
    assert.equal(m("all == 'x'", { all: 'x' }), true);
    assert.equal(m("in in {'x'}", { in: 'x' }), true);
    assert.equal(m("not not in {'x'}", { not: 'y' }), true);
  });

  test('does not treat inherited object properties as labels', () => {
    assert.equal(m('has(toString)', none), false);
    assert.equal(m("constructor != 'x'", none), true);
  });
});

describe('parseSelector errors', () => {
  test('refuses an unknown character naming it and its position', () => {
    assert.throws(() => parseSelector("role == 'db' & x"), bad(/unexpected "&" at position 13/));
    assert.throws(() => parseSelector('role = db'), bad(/unexpected "=" at position 5/));
  });

  test('refuses an unterminated string naming where it starts', () => {
    assert.throws(() => parseSelector("role == 'db"), bad(/unterminated string at position 8/));
  });

  test('refuses an unquoted value naming its position', () => {
    assert.throws(() => parseSelector('role == db'), bad(/expected a quoted value at position 8/));
  });

  test('refuses a missing operator after a key and suggests the syntax', () => {
    assert.throws(() => parseSelector('role'), bad(/expected ==, !=, in or not in after "role" at position 4; use e\.g\. role == 'db' && has\(tier\)/));
    assert.throws(() => parseSelector("role 'db'"), bad(/after "role" at position 5/));
  });

  test('refuses a dangling operator at the end, naming the end position', () => {
    assert.throws(() => parseSelector("a == 'x' &&"), bad(/expected a label key, has\(\), all\(\), ! or \( at position 11/));
    assert.throws(() => parseSelector("a == 'x' ||  "), bad(/at position 11/));
  });

  test('refuses unbalanced parentheses', () => {
    assert.throws(() => parseSelector("(a == 'x'"), bad(/expected "\)" at position 9/));
    assert.throws(() => parseSelector("a == 'x')"), bad(/unexpected "\)" at position 8/));
    assert.throws(() => parseSelector('()'), bad(/expected a label key.* at position 1/));
  });

  test('refuses a malformed has() or all()', () => {
    assert.throws(() => parseSelector("has('tier')"), bad(/expected a label key at position 4/));
    assert.throws(() => parseSelector('has(tier'), bad(/expected "\)" at position 8/));
    assert.throws(() => parseSelector('all(x)'), bad(/expected "\)" at position 4/));
  });

  test('refuses a malformed set', () => {
    assert.throws(() => parseSelector("a in 'x'"), bad(/expected "\{" at position 5/));
    assert.throws(() => parseSelector("a in {'x' 'y'}"), bad(/expected "\}" at position 10/));
    assert.throws(() => parseSelector("a in {'x',}"), bad(/expected a quoted value at position 10/));
    assert.throws(() => parseSelector("a not {'x'}"), bad(/after "a" at position 2/));
  });

  test('quotes the selector text (trimmed) in the message', () => {
    assert.throws(() => parseSelector('  role ==  '), bad(/^selector "role ==": expected a quoted value at position 7/));
  });
});

describe('canonical', () => {
  const c = (s: string) => canonical(parseSelector(s));

  test('is the same for equivalent spacing and quoting', () => {
    const want = "(role == 'db' && has(tier))";
    for (const s of ["role=='db'&&has(tier)", 'role == "db" && has( tier )', "  role  ==  'db'\n&&\thas(tier) ", "(role == 'db' && has(tier))"])
      assert.equal(c(s), want);
    assert.equal(c('a in {\'x\', "y"}'), c("a in {'x','y'}"));
    assert.equal(c('all()'), c(''));
  });

  test('writes every operator in one form', () => {
    assert.equal(c('all()'), 'all()');
    assert.equal(c("a == 'x'"), "a == 'x'");
    assert.equal(c("a != 'x'"), "a != 'x'");
    assert.equal(c('has(a)'), 'has(a)');
    assert.equal(c('!has(a)'), '!(has(a))');
    assert.equal(c("a in {'x','y'}"), "a in {'x','y'}");
    assert.equal(c('a not in {}'), 'a not in {}');
    assert.equal(c("a == 'x' || b == 'y' && c == 'z'"), "(a == 'x' || (b == 'y' && c == 'z'))");
  });

  test('differs for selectors that differ in grouping or values', () => {
    assert.notEqual(c("a == '1' || b == '2' && c == '3'"), c("(a == '1' || b == '2') && c == '3'"));
    assert.notEqual(c("a == 'x'"), c("a != 'x'"));
  });

  test('keeps values holding a quote apart from look-alike selectors', () => {
    // One value "x','y" against two values x and y; one value spanning && against three comparisons.
    assert.notEqual(c(`k in {"x','y"}`), c("k in {'x','y'}"));
    assert.notEqual(c(`a == "x' && b == 'y" && c == 'z'`), c("a == 'x' && b == 'y' && c == 'z'"));
  });

  test('parses back to the same selector', () => {
    for (const s of [`owner == "bob's" || note != 'say "hi"'`, "!(a in {'x',\"it's\"}) && has(b)", "a not in {'1'} || all()", ''])
      assert.deepEqual(parseSelector(c(s)), parseSelector(s));
  });

  test('quote uses double quotes only for a value holding a single quote', () => {
    assert.equal(quote('db'), "'db'");
    assert.equal(quote('say "hi"'), `'say "hi"'`);
    assert.equal(quote("bob's"), `"bob's"`);
  });
});
