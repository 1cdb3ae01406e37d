/** Pure pieces of the Docker 28/29 protocol support: interface names and named address owners. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as blk from '../../ipam/block';
import { endpointName } from '../../ipam/handlers';
import { codecs } from '../../lib/datastore/codec';
import { parseCidr } from '../../lib/ip';
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
        String(bad),
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
