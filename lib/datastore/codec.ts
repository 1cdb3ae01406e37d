/**
 * The one place stored values become typed records and back. Every kind has a codec; decoding
 * validates against the record's schema (records.ts), so a value that is not what this version
 * wrote is refused naming its key and field instead of being cast and trusted.
 *
 * Blocks have a compact wire form: a full /26 block with every owner written out in JSON was
 * about 10 KB, rewritten on every allocation, so etcd's history grew by that per container start
 * and listings of all blocks hit gRPC's 4 MB message limit at 413 blocks. Owners become arrays
 * with host, pool and network names interned once per block, and times epoch milliseconds.
 * The older object form is still read, so existing clusters upgrade in place.
 */
import type { z } from 'zod';
import { InternalError } from '../errors';
import type { KVEntry } from './kv';
import * as R from './records';

/** Raised for a stored value that does not decode: a bug, corruption, or another writer. */
export class CorruptRecordError extends InternalError {}

interface Wire<T> {
  encode(rec: T): unknown;
  /** Turns the stored JSON into the record's shape, before the schema checks it. */
  decode(raw: unknown): unknown;
}

export class Codec<T> {
  constructor(
    readonly kind: string,
    private schema: z.ZodType<T>,
    private wire?: Wire<T>,
  ) {}

  decodeValue(key: string, value: string): T {
    let raw: unknown;
    try {
      raw = JSON.parse(value);
    } catch (err) {
      throw new CorruptRecordError(`the ${this.kind} record at ${key} is not JSON (${(err as Error).message}); delete or rewrite it`);
    }
    const r = this.schema.safeParse(this.wire ? this.wire.decode(raw) : raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      const field = issue.path.length ? issue.path.join('.') : '(value)';
      throw new CorruptRecordError(`the ${this.kind} record at ${key} is malformed: field "${field}": ${issue.message}; delete or rewrite it`);
    }
    return r.data;
  }

  decode(e: KVEntry): T {
    return this.decodeValue(e.key, e.value);
  }

  /** Decodes what can be decoded; each value that cannot is reported and left out. */
  decodeAll(entries: readonly KVEntry[], onBad?: (key: string, err: CorruptRecordError) => void): T[] {
    const out: T[] = [];
    for (const e of entries) {
      try {
        out.push(this.decode(e));
      } catch (err) {
        if (!(err instanceof CorruptRecordError) || !onBad) throw err;
        onBad(e.key, err);
      }
    }
    return out;
  }

  encode(rec: T): string {
    return JSON.stringify(this.wire ? this.wire.encode(rec) : rec);
  }
}

const KIND_CODE = { pending: 0, endpoint: 1, aux: 2 } as const;
const KIND_NAME = ['pending', 'endpoint', 'aux'] as const;

/** [ordinal, kind, host, pool, network (-1: none), endpoint ('' : none), handle, since (epoch ms, or the text when it is no ISO time), name?] */
type WireOwner =
  [number, number, number, number, number, string, string, number | string] | [number, number, number, number, number, string, string, number | string, string];

/** An ISO timestamp as epoch milliseconds when that round-trips exactly, else the text itself. */
function packTime(iso: string): number | string {
  const t = Date.parse(iso);
  return Number.isFinite(t) && new Date(t).toISOString() === iso ? t : iso;
}

interface WireBlock {
  v: 2;
  cidr: string;
  affinity: string | null;
  /** Interned host, pool and network names. */
  s: string[];
  a: WireOwner[];
  free: number[];
}

const blockWire: Wire<R.BlockRecord> = {
  encode(rec) {
    const strings: string[] = [];
    const index = new Map<string, number>();
    const ref = (s: string) => {
      let i = index.get(s);
      if (i === undefined) index.set(s, (i = strings.push(s) - 1));
      return i;
    };
    const a: WireOwner[] = Object.entries(rec.allocations).map(([ord, o]) => {
      const w: WireOwner = [
        Number(ord),
        KIND_CODE[o.kind],
        ref(o.host),
        ref(o.pool),
        o.kind === 'pending' ? -1 : ref(o.network),
        o.kind === 'endpoint' ? o.endpoint : '',
        o.handle,
        packTime(o.since),
      ];
      // Only named owners carry the ninth field, so blocks written without names keep their size.
      return o.name !== undefined ? [...w, o.name] : w;
    });
    const out: WireBlock = { v: 2, cidr: rec.cidr, affinity: rec.affinity, s: strings, a, free: rec.unallocated };
    return out;
  },
  decode(raw) {
    const w = raw as Partial<WireBlock> | null;
    if (!w || w.v !== 2 || !Array.isArray(w.a) || !Array.isArray(w.s)) return raw; // the older object form
    const s = w.s;
    const name = (i: unknown) => (typeof i === 'number' ? s[i] : undefined);
    const allocations: Record<string, unknown> = {};
    for (const o of w.a) {
      if (!Array.isArray(o)) return { ...w, allocations: null }; // let the schema name the field
      const [ord, kind, host, pool, network, endpoint, handle, since, ownerName] = o;
      const owner: Record<string, unknown> = {
        kind: KIND_NAME[kind],
        host: name(host),
        pool: name(pool),
        handle,
        since: typeof since === 'number' && Number.isFinite(since) ? new Date(since).toISOString() : since,
      };
      if (kind !== KIND_CODE.pending) owner.network = name(network);
      if (kind === KIND_CODE.endpoint) owner.endpoint = endpoint;
      if (ownerName !== undefined) owner.name = ownerName;
      allocations[String(ord)] = owner;
    }
    return { cidr: w.cidr, affinity: w.affinity, allocations, unallocated: w.free };
  },
};

export const codecs = {
  pool: new Codec('pool', R.PoolRecord),
  block: new Codec('block', R.BlockRecord, blockWire),
  affinity: new Codec('affinity', R.AffinityRecord),
  host: new Codec('host', R.HostRecord),
  alive: new Codec('liveness', R.AliveRecord),
  network: new Codec('network', R.NetworkRecord),
  endpoint: new Codec('endpoint', R.EndpointRecord),
  bgpSettings: new Codec('BGP settings', R.BgpSettings.partial()),
  peer: new Codec('BGP peer', R.PeerRecord),
  policy: new Codec('policy', R.PolicyRecord),
  profile: new Codec('profile', R.ProfileRecord),
  networkSet: new Codec('network set', R.NetworkSetRecord),
};
