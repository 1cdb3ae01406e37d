/** Pure pieces of the Docker 28/29 protocol support: interface names and named address owners. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as blk from '../../ipam/block';
import { endpointName } from '../../ipam/handlers';
import { codecs } from '../../lib/datastore/codec';
import { formatCidr, parseCidr } from '../../lib/ip';
import { isPrefixRequest, pickSubnet } from '../../ipam/subnets';
import { decodePoolId, encodePoolId } from '../../ipam/poolid';
import { containerIfName } from '../../driver/names';
import { BadRequestError } from '../../lib/errors';
import { makeOwner } from '../harness/owners';

describe('container interface names (com.docker.network.endpoint.ifname)', () => {
  test('names the kernel takes are kept as given, and no name means Docker picks ethN', () => {
    for (const ok of ['eth1', 'data0', 'x', 'a'.repeat(15), 'br-front.10', 'ü'.repeat(7)]) assert.equal(containerIfName(ok), ok);
    assert.equal(containerIfName(undefined), undefined);
    assert.equal(containerIfName(''), undefined);
  });

  test('names the kernel refuses are refused naming the option', () => {
    for (const bad of ['.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'a\nb', 'a'.repeat(16), 'ü'.repeat(8), 7, {}]) {
      assert.throws(
        () => containerIfName(bad),
        (err: unknown) => err instanceof BadRequestError && /endpoint\.ifname/.test((err as Error).message),
        JSON.stringify(bad),
      );
    }
  });
});

describe('endpoint names on address owners', () => {
  test('a named owner round-trips through the compact block form, and unnamed owners keep their eight fields', () => {
    const net = parseCidr('10.0.0.0/30');
    let rec = blk.newBlock(net, 'host-a');
    rec = blk.allocate(rec, net, { ...makeOwner('pending', { handle: 'a' }), name: 'shop-web-1' })!.rec;
    rec = blk.allocate(rec, net, makeOwner('endpoint', { handle: 'b' }))!.rec;
    rec = blk.allocate(rec, net, { ...makeOwner('aux', { handle: 'c' }), name: 'gw' })!.rec;
    const wire = codecs.block.encode(rec);
    assert.deepEqual(codecs.block.decodeValue('k', wire), rec);
    const lengths = (JSON.parse(wire) as { a: unknown[][] }).a.map((o) => o.length);
    assert.deepEqual(lengths, [9, 8, 9]);
  });

  test('RequestAddress keeps a printable endpoint name and refuses control characters or a huge one', () => {
    assert.equal(endpointName('project_web_1'), 'project_web_1');
    assert.equal(endpointName(undefined), undefined);
    assert.equal(endpointName(''), undefined);
    assert.throws(() => endpointName('a\u0000b'), BadRequestError);
    assert.throws(() => endpointName('n'.repeat(257)), BadRequestError);
  });
});

describe('prefix-size subnets (--subnet 0.0.0.0/24)', () => {
  const c = (s: string) => parseCidr(s);
  const shownAll = (x: ReturnType<typeof pickSubnet>) => (x ? formatCidr(x) : undefined);

  test('only an all-zero network with a length is a size', () => {
    assert.equal(isPrefixRequest(c('0.0.0.0/24')), true);
    assert.equal(isPrefixRequest(c('::/120')), true);
    assert.equal(isPrefixRequest(c('0.0.0.0/0')), false);
    assert.equal(isPrefixRequest(c('10.65.0.0/24')), false);
  });

  test('the lowest free subnet of the size is picked, past claims of any size, in pool order', () => {
    const pools = [c('10.65.0.0/22'), c('10.70.0.0/24')];
    assert.equal(shownAll(pickSubnet(pools, 24, [])), '10.65.0.0/24');
    assert.equal(shownAll(pickSubnet(pools, 24, [c('10.65.0.0/24')])), '10.65.1.0/24');
    assert.equal(shownAll(pickSubnet(pools, 24, [c('10.65.0.0/23')])), '10.65.2.0/24');
    assert.equal(shownAll(pickSubnet(pools, 24, [c('10.65.0.128/25'), c('10.65.1.0/24')])), '10.65.2.0/24');
    assert.equal(shownAll(pickSubnet(pools, 24, [c('10.65.0.0/22')])), '10.70.0.0/24');
    assert.equal(pickSubnet(pools, 24, [c('10.65.0.0/22'), c('10.70.0.0/24')]), undefined);
    // A size larger than a pool cannot come from it.
    assert.equal(shownAll(pickSubnet(pools, 21, [])), undefined);
  });

  test('a huge IPv6 pool is walked one step per claim, not per candidate', () => {
    const claims = Array.from({ length: 50 }, (_, i) => c(`fd65::${(i * 256).toString(16)}/120`));
    claims.push(c('fd65::4000/114'));
    const picked = pickSubnet([c('fd65::/64')], 120, claims);
    assert.equal(shownAll(picked), 'fd65::3200/120');
    assert.equal(shownAll(pickSubnet([c('fd65::/64')], 120, [c('fd65::/65')])), 'fd65::8000:0:0:0/120');
  });

  test('a claimed subnet survives its PoolID round trip, and older PoolIDs decode as before', () => {
    const ref = { family: 4 as const, subnet: c('10.65.3.0/24'), claimed: true };
    assert.equal(encodePoolId(ref), 'CalicoPoolIPv4|10.65.3.0/24|claimed');
    assert.deepEqual(decodePoolId(encodePoolId(ref)), ref);
    assert.deepEqual(decodePoolId('CalicoPoolIPv4|10.65.3.0/24|10.65.3.0/25'), { family: 4, subnet: c('10.65.3.0/24'), range: c('10.65.3.0/25') });
    assert.throws(() => decodePoolId('CalicoPoolIPv4|10.65.3.0/24|claimed|x'), BadRequestError);
  });
});
