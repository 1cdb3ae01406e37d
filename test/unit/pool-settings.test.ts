/** Pool settings: natOutgoing, vxlanMode, ipipMode (ipam/pool-settings.ts, ipam/pools.ts, lib/config.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pools } from '../../ipam/pools';
import { encapsulationOf, parseBool, parseEncapMode, settingsOf } from '../../ipam/pool-settings';
import { loadConfig } from '../../lib/config';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { BadRequestError, ConflictError } from '../../lib/errors';

describe('pool settings', () => {
  test('a record written before the settings existed reads as no NAT and no encapsulation', async () => {
    const kv = new MemoryKV();
    await kv.put(keys.pool('10.5.0.0/16'), JSON.stringify({ cidr: '10.5.0.0/16', family: 4, blockSize: 26, disabled: false, createdAt: 'then' }));
    const [p] = await new Pools(kv, 0).list();
    assert.deepEqual(settingsOf(p), { natOutgoing: false, vxlanMode: 'Never', ipipMode: 'Never' });
    assert.deepEqual(encapsulationOf(p), { kind: 'none', mode: 'Never' });
  });

  test('add stores the settings given, and only those differing from the defaults', async () => {
    const kv = new MemoryKV();
    const rec = await new Pools(kv, 0).add('10.6.0.0/16', { natOutgoing: true, vxlanMode: 'CrossSubnet' });
    assert.deepEqual(encapsulationOf(rec), { kind: 'vxlan', mode: 'CrossSubnet' });
    const stored = JSON.parse((await kv.get(keys.pool('10.6.0.0/16')))!.value);
    assert.equal(stored.natOutgoing, true);
    assert.equal(stored.vxlanMode, 'CrossSubnet');
    assert.ok(!('ipipMode' in stored));
  });

  test('adding the same pool again with other settings is a conflict that points at calico pool set', async () => {
    const pools = new Pools(new MemoryKV(), 0);
    await pools.add('10.7.0.0/16');
    await pools.add('10.7.0.0/16'); // identical: idempotent
    await assert.rejects(pools.add('10.7.0.0/16', { natOutgoing: true }), (e: unknown) => e instanceof ConflictError && /calico pool set/.test(e.message));
  });

  test('update changes only the fields given and keeps blocks, name and state', async () => {
    const kv = new MemoryKV();
    const pools = new Pools(kv, 0);
    await pools.add('10.8.0.0/16', { blockSize: 28, natOutgoing: true, disabled: true });
    const next = await pools.update('10.8.0.0/16', { ipipMode: 'Always' });
    assert.deepEqual([next.blockSize, next.disabled, next.natOutgoing, next.ipipMode], [28, true, true, 'Always']);
    const off = await pools.update('10.8.0.0/16', { ipipMode: 'Never', natOutgoing: false });
    assert.deepEqual(settingsOf(off), { natOutgoing: false, vxlanMode: 'Never', ipipMode: 'Never' });
    assert.ok(!('ipipMode' in codecs.pool.decode((await kv.get(keys.pool('10.8.0.0/16')))!)));
  });

  test('two encapsulations at once are refused naming both, and nothing is written', async () => {
    const kv = new MemoryKV();
    const pools = new Pools(kv, 0);
    await pools.add('10.9.0.0/16', { vxlanMode: 'Always' });
    const before = (await kv.get(keys.pool('10.9.0.0/16')))!.value;
    await assert.rejects(
      pools.update('10.9.0.0/16', { ipipMode: 'CrossSubnet' }, { vxlanMode: '--vxlan-mode', ipipMode: '--ipip-mode' }),
      (e: unknown) => e instanceof BadRequestError && /--vxlan-mode Always and --ipip-mode CrossSubnet are both set/.test(e.message),
    );
    assert.equal((await kv.get(keys.pool('10.9.0.0/16')))!.value, before);
    await assert.rejects(pools.add('10.10.0.0/16', { vxlanMode: 'Always', ipipMode: 'Always' }), BadRequestError);
    assert.equal(await kv.get(keys.pool('10.10.0.0/16')), undefined);
  });

  test('IP-in-IP on an IPv6 pool is refused; VXLAN on one is accepted', async () => {
    const pools = new Pools(new MemoryKV(), 0);
    await assert.rejects(pools.add('fd00:9::/64', { ipipMode: 'Always' }), /IPv4 only/);
    assert.equal((await pools.add('fd00:9::/64', { vxlanMode: 'Always' })).vxlanMode, 'Always');
  });

  test('modes are read in any case; anything else names the field and the allowed values', () => {
    assert.equal(parseEncapMode('--vxlan-mode', 'crosssubnet'), 'CrossSubnet');
    assert.throws(() => parseEncapMode('--vxlan-mode', 'Sometimes'), /--vxlan-mode "Sometimes" is not a mode: use Always, CrossSubnet, Never/);
    assert.equal(parseBool('--nat-outgoing', 'FALSE'), false);
    assert.throws(() => parseBool('--nat-outgoing', 'maybe'), /--nat-outgoing "maybe" is not a boolean: use true or false/);
  });
});

describe('default pool settings from the environment', () => {
  test('as Calico: the IPv4 default pool NATs outgoing traffic, IPv6 does not, neither encapsulates', () => {
    const cfg = loadConfig({});
    assert.deepEqual(cfg.ipv4PoolSettings, { natOutgoing: true, vxlanMode: 'Never', ipipMode: 'Never' });
    assert.deepEqual(cfg.ipv6PoolSettings, { natOutgoing: false, vxlanMode: 'Never', ipipMode: 'Never' });
  });

  test('CALICO_IPV4POOL_* and CALICO_IPV6POOL_* set them', () => {
    const cfg = loadConfig({ CALICO_IPV4POOL_NAT_OUTGOING: 'false', CALICO_IPV4POOL_VXLAN: 'CrossSubnet', CALICO_IPV6POOL_VXLAN: 'Always' });
    assert.deepEqual(cfg.ipv4PoolSettings, { natOutgoing: false, vxlanMode: 'CrossSubnet', ipipMode: 'Never' });
    assert.equal(cfg.ipv6PoolSettings.vxlanMode, 'Always');
  });

  test('bad values name the variable; both encapsulations name both variables', () => {
    assert.throws(
      () => loadConfig({ CALICO_IPV4POOL_IPIP: 'often' }),
      /^BadRequestError: CALICO_IPV4POOL_IPIP="often" is not valid: use Always, CrossSubnet, Never/,
    );
    assert.throws(() => loadConfig({ CALICO_IPV4POOL_NAT_OUTGOING: 'maybe' }), /CALICO_IPV4POOL_NAT_OUTGOING="maybe" is not valid: use true or false/);
    assert.throws(
      () => loadConfig({ CALICO_IPV4POOL_IPIP: 'Always', CALICO_IPV4POOL_VXLAN: 'Always' }),
      /CALICO_IPV4POOL_VXLAN Always and CALICO_IPV4POOL_IPIP Always/,
    );
    assert.throws(() => loadConfig({ CALICO_IPV6POOL_IPIP: 'Always' }), /IPv4 only/);
  });
});
