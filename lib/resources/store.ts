/**
 * `calico apply|create|replace|delete|get` over the records `calico pool`, `calico bgp` and
 * `calico policy` already keep: a v3 kind is another spelling of them, not a parallel store.
 * Every write of a file is one etcd transaction guarded by the revisions it was checked against.
 */
import { Blocks } from '../../ipam/blocks';
import { BLOCK_LIMITS, DEFAULT_BLOCK_SIZE, Pools, poolRecord } from '../../ipam/pools';
import { settingsOf, withSettings } from '../../ipam/pool-settings';
import { getProfile, listProfiles } from '../../policy/profiles';
import { DEFAULT_ASN, getSettings, listPeers } from '../../routing/model';
import { codecs } from '../datastore/codec';
import type { Compare, KV, Op } from '../datastore/kv';
import { keyName, keys } from '../datastore/keys';
import type { PoolRecord } from '../datastore/records';
import { BadRequestError, ConflictError, NotFoundError } from '../errors';
import { containsCidr, overlaps, parseCidr } from '../ip';
import { type Resource, bgpConfigToV3, networkSetToV3, peerToV3, policyToV3, poolName, poolToV3 } from './v3';

export type WriteMode = 'apply' | 'create' | 'replace';

const label = (r: { kind: string; name: string }) => `${r.kind} ${r.name}`;

/** Writes every resource or none; `create` refuses what exists, `replace` what does not. */
export async function writeResources(kv: KV, items: Resource[], mode: WriteMode): Promise<void> {
  const pools = await new Pools(kv, 0).list();
  const compares: Compare[] = [];
  const ops: Op[] = [];
  const newPools: Array<{ name: string; cidr: string }> = [];
  for (const r of items) {
    const key =
      r.kind === 'IPPool'
        ? keys.pool(r.pool.cidr)
        : r.kind === 'BGPConfiguration'
          ? keys.bgpSettings()
          : r.kind === 'BGPPeer'
            ? keys.peer(r.name)
            : r.kind === 'GlobalNetworkSet'
              ? keys.networkSet(r.name)
              : keys.policy(r.name);
    let existing = r.kind === 'IPPool' ? pools.find((p) => p.cidr === r.pool.cidr) : await kv.get(key);
    if (r.kind === 'IPPool' && !existing) {
      const byName = pools.find((p) => (p.name ?? poolName(p.cidr)) === r.name);
      if (byName) throw new ConflictError(`${label(r)}: that name is pool ${byName.cidr}; a pool's cidr cannot change, so delete it and create a new one`);
    }
    if (mode === 'create' && existing) throw new ConflictError(`${label(r)} already exists; use "calico replace" or "calico apply" to change it`);
    if (mode === 'replace' && !existing) throw new NotFoundError(`${label(r)} does not exist; use "calico create" or "calico apply" to make it`);
    compares.push(existing ? { key, mod: existing.mod } : { key, absent: true });
    existing = existing ?? undefined;
    switch (r.kind) {
      case 'IPPool': {
        const old = pools.find((p) => p.cidr === r.pool.cidr);
        const net = parseCidr(r.pool.cidr, 'pool CIDR', true);
        const blockSize = r.pool.blockSize ?? old?.blockSize ?? Math.max(DEFAULT_BLOCK_SIZE[net.family], net.prefix);
        const [min, max] = BLOCK_LIMITS[net.family];
        if (blockSize < Math.max(min, net.prefix) || blockSize > max)
          throw new BadRequestError(
            `${label(r)}, field spec.blockSize: ${blockSize} is out of range for ${r.pool.cidr}: use ${Math.max(min, net.prefix)} to ${max}`,
          );
        if (old && old.blockSize !== blockSize)
          throw new BadRequestError(
            `${label(r)}, field spec.blockSize: pool ${old.cidr} has blocks of /${old.blockSize} and that cannot change; create a new pool instead`,
          );
        if (!old) {
          const clash = [...pools, ...newPools].find((p) => p.cidr !== r.pool.cidr && overlaps(parseCidr(p.cidr), net));
          if (clash) throw new ConflictError(`${label(r)}: ${r.pool.cidr} overlaps pool ${clash.cidr}; pools must not overlap`);
          newPools.push({ name: r.name, cidr: r.pool.cidr });
        }
        const rec: PoolRecord = withSettings(
          old
            ? { ...poolRecord(old), disabled: r.pool.disabled, name: r.name }
            : { cidr: r.pool.cidr, family: net.family, blockSize, disabled: r.pool.disabled, createdAt: new Date().toISOString(), name: r.name },
          settingsOf(r.pool),
        );
        ops.push({ put: key, value: codecs.pool.encode(rec) });
        break;
      }
      case 'BGPConfiguration':
        // Like Calico's, the resource is whole: a field left out goes back to its default.
        ops.push({ put: key, value: codecs.bgpSettings.encode({ asn: DEFAULT_ASN, nodeMesh: true, ...r.settings }) });
        break;
      case 'BGPPeer':
        ops.push({ put: key, value: codecs.peer.encode(r.peer) });
        break;
      case 'GlobalNetworkPolicy':
        ops.push({ put: key, value: codecs.policy.encode(r.policy) });
        break;
      case 'GlobalNetworkSet':
        ops.push({ put: key, value: codecs.networkSet.encode(r.set) });
        break;
    }
  }
  if (!(await kv.txn(compares, ops))) throw new ConflictError('a resource in the file changed while it was being written; nothing was written, try again');
}

/** Deletes every resource or none. A pool must have no address in use (as for `calico pool rm`). */
export async function deleteResources(kv: KV, items: Array<{ kind: Resource['kind']; name: string }>): Promise<void> {
  const pools = await new Pools(kv, 0).list();
  const compares: Compare[] = [];
  const ops: Op[] = [];
  for (const r of items) {
    if (r.kind === 'IPPool') {
      const pool = pools.find((p) => (p.name ?? poolName(p.cidr)) === r.name);
      if (!pool) throw new NotFoundError(`${label(r)} does not exist; see "calico get ippool"`);
      const blocks = (await new Blocks(kv).list()).filter((b) => containsCidr(pool.net, b.net));
      const used = blocks.reduce((n, b) => n + Object.keys(b.rec.allocations).length, 0);
      if (used) throw new ConflictError(`${label(r)}: pool ${pool.cidr} still has ${used} address(es) in use; remove those containers first`);
      const blockKeys = new Set(blocks.map((b) => keyName(keys.block(b.rec.cidr), keys.blocks())));
      const affinities = (await kv.list(keys.affinities(), { keysOnly: true })).filter((e) => blockKeys.has(e.key.slice(e.key.lastIndexOf('/') + 1)));
      compares.push({ key: keys.pool(pool.cidr), mod: pool.mod }, ...blocks.map((b) => ({ key: keys.block(b.rec.cidr), mod: b.mod })));
      ops.push({ del: keys.pool(pool.cidr) }, ...blocks.map((b) => ({ del: keys.block(b.rec.cidr) })), ...affinities.map((a) => ({ del: a.key })));
      continue;
    }
    if (r.kind === 'BGPConfiguration' && r.name !== 'default') throw new NotFoundError(`${label(r)} does not exist; the only one is "default"`);
    const key =
      r.kind === 'BGPConfiguration'
        ? keys.bgpSettings()
        : r.kind === 'BGPPeer'
          ? keys.peer(r.name)
          : r.kind === 'GlobalNetworkSet'
            ? keys.networkSet(r.name)
            : keys.policy(r.name);
    const e = await kv.get(key);
    if (!e) throw new NotFoundError(`${label(r)} does not exist`);
    compares.push({ key, mod: e.mod });
    ops.push({ del: key });
  }
  if (!(await kv.txn(compares, ops))) throw new ConflictError('a resource changed while being deleted; nothing was deleted, try again');
}

/** calicoctl's names for the kinds, any case, singular or plural, and its short forms. */
const KIND_NAMES: Record<string, GetKind> = {};
export type GetKind = Resource['kind'] | 'Profile';
for (const [kind, aliases] of [
  ['IPPool', ['ippool', 'ippools', 'ipp', 'pool', 'pools']],
  ['BGPConfiguration', ['bgpconfiguration', 'bgpconfigurations', 'bgpconfig', 'bgpconfigs']],
  ['BGPPeer', ['bgppeer', 'bgppeers', 'bgpp', 'peer', 'peers']],
  ['GlobalNetworkPolicy', ['globalnetworkpolicy', 'globalnetworkpolicies', 'gnp', 'policy', 'policies']],
  ['GlobalNetworkSet', ['globalnetworkset', 'globalnetworksets', 'gns', 'netset', 'netsets']],
  ['Profile', ['profile', 'profiles', 'pro']],
] as const)
  for (const a of aliases) KIND_NAMES[a] = kind;

export function kindOf(text: string): GetKind {
  const k = KIND_NAMES[text.toLowerCase()];
  if (!k) throw new BadRequestError(`unknown resource kind "${text}"; use ippool, bgpconfiguration, bgppeer, globalnetworkpolicy, globalnetworkset or profile`);
  return k;
}

/** The resources of a kind (one, with a name) in v3 form, ready to edit and apply again. */
export async function getResources(kv: KV, kind: GetKind, name?: string): Promise<Array<{ metadata: { name: string } } & Record<string, unknown>>> {
  let all: Array<{ metadata: { name: string } } & Record<string, unknown>>;
  switch (kind) {
    case 'IPPool':
      all = (await new Pools(kv, 0).list()).map(poolToV3);
      break;
    case 'BGPConfiguration':
      all = [bgpConfigToV3(await getSettings(kv))];
      break;
    case 'BGPPeer':
      all = (await listPeers(kv)).map(peerToV3);
      break;
    case 'GlobalNetworkPolicy':
      all = codecs.policy
        .decodeAll(await kv.list(keys.policies()))
        .sort((a, b) => a.order - b.order || a.name.localeCompare(b.name))
        .map(policyToV3);
      break;
    case 'GlobalNetworkSet':
      all = codecs.networkSet
        .decodeAll(await kv.list(keys.networkSets()))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map(networkSetToV3);
      break;
    case 'Profile': {
      const ps = name ? [await getProfile(kv, name)] : await listProfiles(kv);
      all = ps.map((p) => ({ ...policyToV3({ name: p.name, order: 0, selector: '', types: [], ingress: p.ingress, egress: p.egress }), kind: 'Profile' }));
      for (const p of all) p.spec = { ingress: (p.spec as { ingress?: unknown }).ingress ?? [], egress: (p.spec as { egress?: unknown }).egress ?? [] };
      break;
    }
  }
  if (name === undefined) return all;
  const hit = all.filter((r) => r.metadata.name === name);
  if (!hit.length) throw new NotFoundError(`${kind} ${name} does not exist; see "calico get ${kind.toLowerCase()}"`);
  return hit;
}
