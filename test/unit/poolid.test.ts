/** Opaque PoolIDs handed to Docker (ipam/poolid.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ANY_POOL, type PoolRef, allocationScope, decodePoolId, encodePoolId } from '../../ipam/poolid';
import { BadRequestError } from '../../lib/errors';
import { formatCidr, parseCidr } from '../../lib/ip';

describe('encodePoolId and decodePoolId', () => {
  const cases: Array<[string, PoolRef, string]> = [
    ['any IPv4 pool', { family: 4 }, 'CalicoPoolIPv4'],
    ['any IPv6 pool', { family: 6 }, 'CalicoPoolIPv6'],
    ['an IPv4 subnet', { family: 4, subnet: parseCidr('10.10.0.0/16') }, 'CalicoPoolIPv4|10.10.0.0/16'],
    [
      'a subnet with an ip-range',
      { family: 4, subnet: parseCidr('10.10.0.0/16'), range: parseCidr('10.10.5.0/24') },
      'CalicoPoolIPv4|10.10.0.0/16|10.10.5.0/24',
    ],
    ['an IPv6 subnet', { family: 6, subnet: parseCidr('fd00:1::/64') }, 'CalicoPoolIPv6|fd00:1::/64'],
    [
      'an IPv6 subnet with an ip-range',
      { family: 6, subnet: parseCidr('fd00:1::/64'), range: parseCidr('fd00:1::100/120') },
      'CalicoPoolIPv6|fd00:1::/64|fd00:1::100/120',
    ],
  ];
  for (const [what, ref, id] of cases) {
    test(`round-trips ${what}`, () => {
      assert.equal(encodePoolId(ref), id);
      assert.deepEqual(decodePoolId(id), ref);
      assert.equal(encodePoolId(decodePoolId(id)), id);
    });
  }

  test('encodes the subnet in canonical form so replays give the same ID', () => {
    assert.equal(encodePoolId({ family: 6, subnet: parseCidr('FD00:0001:0::/64') }), 'CalicoPoolIPv6|fd00:1::/64');
  });

  for (const foreign of [
    '',
    'default',
    'LocalDefault/172.17.0.0/16',
    'CalicoPoolIPv5|10.0.0.0/8',
    'calicopoolipv4',
    'CalicoPoolIPv4|10.0.0.0/8|10.0.0.0/24|extra',
  ]) {
    test(`refuses the foreign PoolID ${JSON.stringify(foreign)} with a BadRequestError`, () => {
      assert.throws(
        () => decodePoolId(foreign),
        (e: unknown) =>
          e instanceof BadRequestError &&
          e.message.includes(`PoolID "${foreign}" was not issued by calico-ipam`) &&
          /--ipam-driver calico-ipam/.test(e.message),
      );
    });
  }

  test('refuses a PoolID whose subnet is not a CIDR, naming the part', () => {
    assert.throws(
      () => decodePoolId('CalicoPoolIPv4|nonsense'),
      (e: unknown) => e instanceof BadRequestError && /PoolID subnet "nonsense"/.test(e.message),
    );
    assert.throws(
      () => decodePoolId('CalicoPoolIPv4|10.0.0.0/8|bad'),
      (e: unknown) => e instanceof BadRequestError && /PoolID ip-range "bad"/.test(e.message),
    );
  });
});

describe('decodePoolId refuses forged IDs', () => {
  for (const [id, why] of [
    ['CalicoPoolIPv4|fd00::/64', /its subnet is not IPv4/],
    ['CalicoPoolIPv4|10.0.0.0/8|10.0.0.0/7', /ip-range is not inside its subnet/],
    ['CalicoPoolIPv4|10.0.0.0/8|11.0.0.0/24', /ip-range is not inside its subnet/],
    ['CalicoPoolIPv4|10.0.0.0/33', /more than 32 bits/],
    ['CalicoPoolIPv4|10.0.0.1/8', /host bits set/],
  ] as const) {
    test(`refuses ${id}`, () => {
      assert.throws(
        () => decodePoolId(id),
        (e: unknown) => e instanceof BadRequestError && why.test(e.message),
      );
    });
  }
});

describe('allocationScope', () => {
  test('is the ip-range when given, else the subnet, else unrestricted', () => {
    const subnet = parseCidr('10.10.0.0/16');
    const range = parseCidr('10.10.5.0/24');
    assert.deepEqual(allocationScope({ family: 4, subnet, range }), [range]);
    assert.deepEqual(allocationScope({ family: 4, subnet }), [subnet]);
    assert.equal(allocationScope({ family: 4 }), undefined);
  });

  test('the any-pool placeholders are the whole address space of each family', () => {
    assert.equal(formatCidr(parseCidr(ANY_POOL[4])), '0.0.0.0/0');
    assert.equal(formatCidr(parseCidr(ANY_POOL[6])), '::/0');
  });
});
