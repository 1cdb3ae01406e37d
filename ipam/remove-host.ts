/**
 * `calico node rm`: forget a host for good, the order Calico uses. Its endpoints and networks
 * go, every address it allocated is released, its blocks are deleted (or, if another host still
 * holds an address borrowed from one, left without affinity), then its affinities, host-specific
 * peers, liveness and host record. Peers drop it from their BGP configuration when its host key
 * disappears, and with it the routes to its blocks.
 */
import type { KV } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { BlockRecord } from '../lib/datastore/records';
import { type PeerRecord, bgpKeys } from '../routing/model';
import { ConflictError, NotFoundError } from '../lib/errors';
import { parseCidr } from '../lib/ip';
import * as blk from './block';

export interface RemovalReport {
  endpoints: number;
  networks: number;
  released: number;
  blocksDeleted: number;
  blocksOrphaned: number;
}

export async function removeHost(kv: KV, name: string, opts: { force?: boolean } = {}): Promise<RemovalReport> {
  if (!(await kv.get(keys.host(name)))) throw new NotFoundError(`no host ${name}; see "calico node ls"`);
  if (!opts.force && (await kv.get(keys.alive(name)))) {
    throw new ConflictError(`host ${name} is alive (its calico node holds its liveness key): stop it first, or use --force`);
  }
  const report: RemovalReport = { endpoints: 0, networks: 0, released: 0, blocksDeleted: 0, blocksOrphaned: 0 };
  for (const e of await kv.list(keys.endpoints(name))) {
    await kv.del(e.key);
    report.endpoints++;
  }
  for (const e of await kv.list(keys.networks(name))) {
    await kv.del(e.key);
    report.networks++;
  }
  // Every block: drop this host's allocations (compare-and-swap, retried), then its own blocks.
  for (let attempt = 0; attempt < 20; attempt++) {
    let conflicts = 0;
    for (const e of await kv.list(keys.blocks())) {
      const rec = JSON.parse(e.value) as BlockRecord;
      const net = parseCidr(rec.cidr);
      let next = rec;
      let dropped = 0;
      for (const a of blk.allocations(rec, net)) {
        if (a.owner.host !== name) continue;
        next = blk.release(next, net, a.ip)!;
        dropped++;
      }
      const mine = rec.affinity === name;
      if (!dropped && !mine) continue;
      if (mine) next = { ...next, affinity: null };
      const empty = blk.isEmpty(next);
      const ok = await kv.txn([{ key: e.key, mod: e.mod }], [empty && next.affinity === null ? { del: e.key } : { put: e.key, value: JSON.stringify(next) }]);
      if (!ok) {
        conflicts++;
        continue;
      }
      report.released += dropped;
      if (mine) {
        if (empty) report.blocksDeleted++;
        else report.blocksOrphaned++;
      }
    }
    if (!conflicts) break;
  }
  for (const e of await kv.list(keys.affinities(name))) await kv.del(e.key);
  for (const e of await kv.list(bgpKeys.peers())) if ((JSON.parse(e.value) as PeerRecord).host === name) await kv.del(e.key);
  await kv.del(keys.alive(name));
  await kv.del(keys.host(name));
  return report;
}
