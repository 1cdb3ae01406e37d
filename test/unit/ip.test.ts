/** Address math in lib/ip.ts: parsing, canonical forms, containment and key encoding. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '../../lib/errors';
import {
  canonicalCidr,
  cidrFromKey,
  cidrKey,
  cidrLast,
  cidrSize,
  containsCidr,
  containsIP,
  enclosing,
  formatCidr,
  formatIP,
  hostCidr,
  isIP,
  overlaps,
  parseAddressWithPrefix,
  parseCidr,
  parseIP,
  sameCidr,
} from '../../lib/ip';

const net = (s: string) => parseCidr(s);
const ip = (s: string) => parseIP(s);

/** Asserts a BadRequestError whose message names `field` and the bad input. */
function refuses(fn: () => unknown, field: string, input: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.match(err.message, new RegExp(field));
    assert.ok(err.message.includes(`"${input}"`), err.message);
    return true;
  });
}

describe('parseIP', () => {
  test('parses an IPv4 address into a 32-bit value', () => {
    assert.deepEqual(parseIP('10.1.2.3'), { family: 4, value: 0x0a010203n });
    assert.deepEqual(parseIP('255.255.255.255'), { family: 4, value: 0xffffffffn });
  });

  test('parses an IPv6 address into a 128-bit value', () => {
    assert.deepEqual(parseIP('fd00::3'), { family: 6, value: (0xfd00n << 112n) | 3n });
    assert.deepEqual(parseIP('::'), { family: 6, value: 0n });
  });

  test('refuses an IPv4-mapped IPv6 address instead of turning it into IPv4, naming the IPv4 form', () => {
    assert.throws(
      () => parseIP('::ffff:10.1.2.3', 'Address'),
      /^BadRequestError: Address "::ffff:10\.1\.2\.3" is an IPv4-mapped IPv6 address; give the IPv4 address 10\.1\.2\.3/,
    );
    assert.throws(() => parseCidr('::ffff:1.2.3.4/120', 'Pool'), /Pool "::ffff:1\.2\.3\.4" is an IPv4-mapped/);
  });

  test('refuses an IPv6 zone instead of dropping it', () => {
    assert.throws(() => parseIP('fe80::1%eth0', 'Address'), /^BadRequestError: Address "fe80::1%eth0" has an IPv6 zone/);
    assert.throws(() => parseCidr('fd00::%eth0/64', 'Pool'), /has an IPv6 zone/);
    assert.throws(() => parseAddressWithPrefix('fd65::1%eth0/128', 'Interface.AddressIPv6'), /Interface\.AddressIPv6 .* has an IPv6 zone/);
  });

  test('cuts a huge value short in its error message', () => {
    const huge = '1'.repeat(100_000);
    assert.throws(
      () => parseIP(huge, 'Address'),
      (err: Error) => err.message.length < 300 && /100000 characters/.test(err.message),
    );
  });

  for (const bad of ['', '10.1', '256.1.1.1', '010.1.2.3', '0x0a.1.2.3', ' 10.1.2.3', 'fd00:::1', 'host.example', '10.0.0.0/8']) {
    test(`refuses ${JSON.stringify(bad)} with a BadRequestError naming the field`, () => {
      refuses(() => parseIP(bad, 'Gateway'), 'Gateway', bad);
    });
  }

  test('names "address" when no field name is given', () => {
    assert.throws(() => parseIP('nope'), /^BadRequestError: address "nope"/);
  });

  test('isIP accepts both families and rejects the rest', () => {
    assert.equal(isIP('1.2.3.4'), true);
    assert.equal(isIP('fd00::1'), true);
    assert.equal(isIP('1.2.3'), false);
    assert.equal(isIP(undefined as unknown as string), false);
  });
});

describe('formatIP', () => {
  test('round-trips both families in canonical (compressed, lower-case) form', () => {
    assert.equal(formatIP(ip('10.0.0.1')), '10.0.0.1');
    assert.equal(formatIP(ip('0.0.0.0')), '0.0.0.0');
    assert.equal(formatIP(ip('FD00:0:0:0:0:0:0:1')), 'fd00::1');
    assert.equal(formatIP(ip('fd80:24e2:f998:72d6::')), 'fd80:24e2:f998:72d6::');
  });

  test('hostCidr gives /32 for IPv4 and /128 for IPv6', () => {
    assert.equal(hostCidr(ip('10.0.0.5')), '10.0.0.5/32');
    assert.equal(hostCidr(ip('fd00::5')), 'fd00::5/128');
  });
});

describe('parseCidr and formatCidr', () => {
  test('drops host bits when not strict', () => {
    assert.equal(formatCidr(parseCidr('10.1.2.3/24')), '10.1.2.0/24');
    assert.equal(formatCidr(parseCidr('fd00::1/64')), 'fd00::/64');
  });

  test('canonicalCidr normalises spelling and host bits', () => {
    assert.equal(canonicalCidr('10.1.2.3/16'), '10.1.0.0/16');
    assert.equal(canonicalCidr('FD00:0000::/08'), 'fd00::/8');
    assert.equal(canonicalCidr('0.0.0.0/0'), '0.0.0.0/0');
    assert.equal(canonicalCidr('::/0'), '::/0');
  });

  test('strict mode refuses host bits and suggests the canonical network', () => {
    assert.throws(
      () => parseCidr('10.1.2.3/24', 'pool CIDR', true),
      (err: unknown) => err instanceof BadRequestError && /pool CIDR "10\.1\.2\.3\/24" has host bits set; did you mean 10\.1\.2\.0\/24\?/.test(err.message),
    );
    assert.throws(() => parseCidr('fd00::1/64', 'subnet', true), /did you mean fd00::\/64/);
  });

  test('strict mode accepts a network without host bits', () => {
    assert.deepEqual(parseCidr('10.1.2.0/24', 'x', true), { family: 4, base: 0x0a010200n, prefix: 24 });
    assert.deepEqual(parseCidr('10.1.2.3/32', 'x', true), { family: 4, base: 0x0a010203n, prefix: 32 });
  });

  for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/8/8', 'x/8', '10.0.0/8', '10.0.0.0/-1', '/24']) {
    test(`refuses ${JSON.stringify(bad)} as not a CIDR, naming the field`, () => {
      refuses(() => parseCidr(bad, 'IPAMData.Pool'), 'IPAMData\\.Pool', bad);
    });
  }

  test('refuses a prefix longer than the family allows', () => {
    assert.throws(
      () => parseCidr('10.0.0.0/33', 'subnet'),
      (e: unknown) => e instanceof BadRequestError && /prefix length 33, more than 32 bits/.test(e.message),
    );
    assert.throws(() => parseCidr('fd00::/129', 'subnet'), /more than 128 bits/);
    assert.doesNotThrow(() => parseCidr('fd00::/128'));
  });

  test('cidrSize and cidrLast describe the range', () => {
    const c = net('10.0.0.0/26');
    assert.equal(cidrSize(c), 64n);
    assert.equal(formatIP({ family: 4, value: cidrLast(c) }), '10.0.0.63');
    assert.equal(cidrSize(net('fd00::/122')), 64n);
    assert.equal(cidrSize(net('::/0')), 1n << 128n);
  });

  test('parseAddressWithPrefix keeps the address as written', () => {
    const r = parseAddressWithPrefix('10.0.0.5/24');
    assert.equal(formatIP(r.ip), '10.0.0.5');
    assert.equal(r.prefix, 24);
    assert.throws(
      () => parseAddressWithPrefix('10.0.0.5', 'Address'),
      (e: unknown) => e instanceof BadRequestError && /Address "10\.0\.0\.5"/.test(e.message),
    );
    assert.throws(() => parseAddressWithPrefix('10.0.0.5/40'), BadRequestError);
  });
});

describe('containment', () => {
  test('containsIP includes both ends and excludes neighbours', () => {
    const c = net('10.0.0.0/24');
    assert.equal(containsIP(c, ip('10.0.0.0')), true);
    assert.equal(containsIP(c, ip('10.0.0.255')), true);
    assert.equal(containsIP(c, ip('10.0.1.0')), false);
    assert.equal(containsIP(c, ip('9.255.255.255')), false);
  });

  test('containsIP never matches across families', () => {
    assert.equal(containsIP(net('::/0'), ip('10.0.0.1')), false);
    assert.equal(containsIP(net('0.0.0.0/0'), ip('::1')), false);
  });

  test('containsCidr is true for equal and inner networks only', () => {
    const outer = net('10.0.0.0/16');
    assert.equal(containsCidr(outer, net('10.0.0.0/16')), true);
    assert.equal(containsCidr(outer, net('10.0.255.0/24')), true);
    assert.equal(containsCidr(outer, net('10.0.0.0/8')), false);
    assert.equal(containsCidr(outer, net('10.1.0.0/24')), false);
    assert.equal(containsCidr(net('::/0'), net('10.0.0.0/8')), false);
  });

  test('overlaps is symmetric and detects nesting and adjacency correctly', () => {
    const a = net('10.0.0.0/24');
    assert.equal(overlaps(a, net('10.0.0.128/25')), true);
    assert.equal(overlaps(net('10.0.0.128/25'), a), true);
    assert.equal(overlaps(a, net('10.0.0.0/8')), true);
    assert.equal(overlaps(a, net('10.0.1.0/24')), false);
    assert.equal(overlaps(a, net('9.255.255.0/24')), false);
    assert.equal(overlaps(net('fd00::/64'), net('fd00::/122')), true);
    assert.equal(overlaps(net('::/0'), net('0.0.0.0/0')), false);
  });

  test('sameCidr compares family, base and prefix', () => {
    assert.equal(sameCidr(net('10.0.0.0/24'), net('10.0.0.7/24')), true);
    assert.equal(sameCidr(net('10.0.0.0/24'), net('10.0.0.0/25')), false);
  });

  test('enclosing gives the block of a prefix that holds an address', () => {
    assert.equal(formatCidr(enclosing(ip('10.0.0.77'), 26)), '10.0.0.64/26');
    assert.equal(formatCidr(enclosing(ip('10.0.0.77'), 32)), '10.0.0.77/32');
    assert.equal(formatCidr(enclosing(ip('fd00::1:ff'), 122)), 'fd00::1:c0/122');
    assert.equal(formatCidr(enclosing(ip('fd00::1:ff'), 0)), '::/0');
  });
});

describe('cidrKey', () => {
  test('replaces the slash with a dash', () => {
    assert.equal(cidrKey('10.0.0.0/26'), '10.0.0.0-26');
    assert.equal(cidrKey(net('fd00::/122')), 'fd00::-122');
  });

  for (const c of ['10.0.0.0/26', '0.0.0.0/0', 'fd00::/122', 'fd80:24e2:f998:72d6::/64', '::/0', '::1/128']) {
    test(`round-trips ${c} through cidrFromKey`, () => {
      assert.equal(cidrFromKey(cidrKey(c)), c);
      assert.equal(cidrFromKey(cidrKey(net(c))), c);
    });
  }
});
