/**
 * `calico node rm`: forget a host for good, the order Calico uses. Its endpoints and networks
 * go, every address it allocated is released, its blocks are deleted (or, if another host still
 * holds an address borrowed from one, left without affinity), then its affinities, host-specific
 * peers, liveness and host record. Peers drop it from their BGP configuration when its host key
 * disappears, and with it the routes to its blocks.
 */
import * as blk from '../ipam/block';
import { Blocks } from '../ipam/blocks';
import { codecs } from '../lib/datastore/codec';
import type { KV } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import { transact } from '../lib/datastore/transact';
import { ConflictError, NotFoundError } from '../lib/errors';
import { formatCidr } from '../lib/ip';

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
  for (const e of await kv.list(keys.endpoints(name), { keysOnly: true })) {
    await kv.del(e.key);
    report.endpoints++;
  }
  for (const e of await kv.list(keys.networks(name), { keysOnly: true })) {
    await kv.del(e.key);
    report.networks++;
  }
  // Every block: drop this host's allocations, then its own blocks, each block its own CAS.
  const blocks = new Blocks(kv);
  for (const net of await blocks.cidrs()) {
    const outcome = await transact(
      kv,
      async () => {
        const b = await blocks.get(formatCidr(net));
        if (!b) return { done: undefined };
        let next = b.rec;
        let dropped = 0;
        for (const a of blk.allocations(b.rec, b.net)) {
          if (a.owner.host !== name) continue;
          next = blk.release(next, b.net, a.ip)!;
          dropped++;
        }
        const mine = b.rec.affinity === name;
        if (!dropped && !mine) return { done: undefined };
        if (mine) next = { ...next, affinity: null };
        const empty = blk.isEmpty(next);
        const key = keys.block(b.rec.cidr);
        return {
          compares: [{ key, mod: b.mod }],
          ops: [empty && next.affinity === null ? { del: key } : { put: key, value: codecs.block.encode(next) }],
          result: { dropped, mine, empty },
        };
      },
      { what: `a block of host ${name}` },
    );
    if (!outcome) continue;
    report.released += outcome.dropped;
    if (outcome.mine) {
      if (outcome.empty) report.blocksDeleted++;
      else report.blocksOrphaned++;
    }
  }
  for (const e of await kv.list(keys.affinities(name), { keysOnly: true })) await kv.del(e.key);
  for (const p of codecs.peer.decodeAll(await kv.list(keys.peers()))) if (p.host === name) await kv.del(keys.peer(p.name));
  await kv.del(keys.alive(name));
  await kv.del(keys.host(name));
  return report;
}
