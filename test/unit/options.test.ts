/** CreateNetwork options (driver/options.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KNOWN_OPTIONS, MTU_OPTION, parseMtu, parseNetworkOptions } from '../../driver/options';
import { BadRequestError } from '../../lib/errors';

const GENERIC = 'com.docker.network.generic';
const bad = (re: RegExp) => (e: unknown) => e instanceof BadRequestError && re.test(e.message);

describe('parseNetworkOptions', () => {
  test('defaults: no options means IPv4 only, not internal, no MTU', () => {
    for (const o of [undefined, null, {}]) assert.deepEqual(parseNetworkOptions(o), { ipv6: false, internal: false, generic: {} });
  });

  test('parses the MTU option', () => {
    const o = parseNetworkOptions({ [GENERIC]: { [MTU_OPTION]: '1400' } });
    assert.equal(o.mtu, 1400);
    assert.deepEqual(o.generic, { [MTU_OPTION]: '1400' });
  });

  test('keeps a numeric MTU option as its string form', () => {
    const o = parseNetworkOptions({ [GENERIC]: { [MTU_OPTION]: 9000 } });
    assert.equal(o.mtu, 9000);
    assert.equal(o.generic[MTU_OPTION], '9000');
  });

  test('refuses a bad MTU option naming the option', () => {
    assert.throws(() => parseNetworkOptions({ [GENERIC]: { [MTU_OPTION]: 'big' } }), bad(/-o com\.docker\.network\.driver\.mtu=big is not a valid MTU/));
  });

  test('applies the IPv6 minimum to the MTU of an IPv6 network', () => {
    assert.equal(parseNetworkOptions({ [GENERIC]: { [MTU_OPTION]: '1279' } }).mtu, 1279);
    assert.throws(() => parseNetworkOptions({ 'com.docker.network.enable_ipv6': true, [GENERIC]: { [MTU_OPTION]: '1279' } }), bad(/IPv6 needs at least 1280/));
  });

  test('refuses one unknown option by name and lists the known ones', () => {
    assert.throws(
      () => parseNetworkOptions({ [GENERIC]: { 'com.docker.network.driver.mut': '1400' } }),
      bad(new RegExp(`the option com\\.docker\\.network\\.driver\\.mut; known options: ${MTU_OPTION.replace(/\./g, '\\.')}$`)),
    );
  });

  test('refuses several unknown options, naming them sorted', () => {
    assert.throws(
      () => parseNetworkOptions({ [GENERIC]: { zeta: '1', alpha: '2', [MTU_OPTION]: '1400', mid: 'x' } }),
      bad(/the options alpha, mid, zeta; known options: /),
    );
  });

  test('refuses 50,000 unknown options with a short message naming the first few', () => {
    const many = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`opt${String(i).padStart(5, '0')}`, 'x']));
    assert.throws(
      () => parseNetworkOptions({ [GENERIC]: many }),
      (e: unknown) => e instanceof BadRequestError && e.message.length < 300 && /options opt00000, opt00001, .* and 49995 more; known options/.test(e.message),
    );
  });

  test('refuses a nested value of a known option naming the option, without recursing into it', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    assert.throws(
      () => parseNetworkOptions({ [GENERIC]: { [MTU_OPTION]: deep } }),
      bad(/-o com\.docker\.network\.driver\.mtu: its value must be a string, not object/),
    );
  });

  test('KNOWN_OPTIONS holds the MTU option', () => {
    assert.deepEqual([...KNOWN_OPTIONS], [MTU_OPTION]);
  });

  test('accepts --internal networks and records them', () => {
    assert.equal(parseNetworkOptions({ 'com.docker.network.internal': true }).internal, true);
    assert.equal(parseNetworkOptions({ 'com.docker.network.internal': 'true' }).internal, true);
    assert.equal(parseNetworkOptions({ 'com.docker.network.internal': false }).internal, false);
  });

  test('reads enable_ipv6 as a bool or the string "true"', () => {
    assert.equal(parseNetworkOptions({ 'com.docker.network.enable_ipv6': true }).ipv6, true);
    assert.equal(parseNetworkOptions({ 'com.docker.network.enable_ipv6': 'true' }).ipv6, true);
    assert.equal(parseNetworkOptions({ 'com.docker.network.enable_ipv6': false }).ipv6, false);
    assert.equal(parseNetworkOptions({ 'com.docker.network.enable_ipv6': 'false' }).ipv6, false);
    assert.equal(parseNetworkOptions({}).ipv6, false);
  });

  test('refuses a generic field that is not an object', () => {
    for (const g of ['mtu=1400', ['a'], 5])
      assert.throws(() => parseNetworkOptions({ [GENERIC]: g }), bad(/field "Options\.com\.docker\.network\.generic" must be an object/));
  });

  test('ignores Docker top-level options other than the ones it reads', () => {
    assert.deepEqual(parseNetworkOptions({ 'com.docker.network.enable_ipv4': true, [GENERIC]: null }), { ipv6: false, internal: false, generic: {} });
  });
});

describe('parseMtu', () => {
  test('accepts the IPv4 limits 68 and 65535', () => {
    assert.equal(parseMtu('68', false), 68);
    assert.equal(parseMtu(65535, false), 65535);
    assert.equal(parseMtu(' 1500 ', false), 1500);
  });

  test('refuses values outside 68..65535', () => {
    for (const v of ['67', '65536', '0', 67, 65536]) assert.throws(() => parseMtu(v, false), bad(/from 68 to 65535/));
  });

  test('requires at least 1280 for IPv6', () => {
    assert.equal(parseMtu('1280', true), 1280);
    assert.throws(() => parseMtu('1279', true), bad(/from 1280 to 65535 \(IPv6 needs at least 1280\)/));
  });

  test('refuses non-integers and non-numbers', () => {
    for (const v of ['1500.5', '-1500', '1e3', '', 'abc', 1500.5, NaN, null, undefined, true])
      assert.throws(() => parseMtu(v, false), BadRequestError, String(v));
  });

  test('names the field in the message', () => {
    assert.throws(() => parseMtu('1', false, 'CALICO_MTU'), bad(/^CALICO_MTU=1 is not a valid MTU/));
  });
});
