/**
 * KV on etcd v3 (npm etcd3, used through its raw RPC clients so every request is ours to shape).
 *
 * Failover: ETCD_ENDPOINTS may name several members. Each call runs under one overall budget
 * and is retried, with jitter, on another member when an attempt fails in a way a retry can
 * fix (unavailable, deadline, leader changed, a member's circuit open). Retrying a transaction
 * whose reply was lost is safe because every write in this project is guarded by compares or
 * idempotent (see KV.txn), and the allocator recognises its own allocations by their handle.
 * A member that fails has its circuit opened for a second, so calls go to the others meanwhile.
 * etcd3's own retries stay off: they would re-send blindly, outside our budget.
 *
 * Listings are paged at one revision; watches are list-then-watch (list-watch.ts) over etcd's
 * watch stream, resumed from the last revision delivered, re-listed after a compaction.
 */
import fs from 'node:fs';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { CompareResult, CompareTarget, Etcd3, GRPCGenericError, SortOrder, SortTarget, isRecoverableError, type IOptions, type Watcher } from 'etcd3';
import { UnavailableError, errorMessage } from '../errors';
import type { Logger } from '../log';
import { silentLogger } from '../log';
import { jitteredDelay, sleep } from '../retry';
import type { Compare, KV, KVEntry, Lease, ListOptions, Op, Watch, WatchEvent, WatchListener } from './kv';
import { type WatchSource, listWatch } from './list-watch';

export const KEY_PREFIX = '/calico-libnetwork/v1/';
/** Keys per page of a listing: small enough that pages of full blocks stay far below 4 MB. */
const PAGE = 200;

export interface EtcdOptions {
  endpoints: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Overall budget of one call, retries included, ms. */
  callTimeoutMs?: number;
  log?: Logger;
}

export function etcdClientOptions(o: EtcdOptions): IOptions {
  const opts: IOptions = {
    hosts: o.endpoints,
    dialTimeout: Math.min(o.callTimeoutMs ?? 3000, 2000),
    faultHandling: {
      global: noop,
      // One failure opens a member's circuit for a second: the next attempt picks another.
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(1) }),
      // A dropped watch stream reconnects quickly; list-watch resumes the watches on it.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }).next(),
    },
    grpcOptions: {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // Pages keep responses small; this is only a safety margin for one huge value.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  };
  if (o.caFile) {
    opts.credentials = {
      rootCertificate: fs.readFileSync(o.caFile),
      ...(o.keyFile ? { privateKey: fs.readFileSync(o.keyFile) } : {}),
      ...(o.certFile ? { certChain: fs.readFileSync(o.certFile) } : {}),
    };
  }
  if (o.username) opts.auth = { username: o.username, password: o.password ?? '' };
  return opts;
}

const buf = (s: string) => Buffer.from(KEY_PREFIX + s);
/** The end of the range holding every key that starts with `p` (etcd's "prefix + 1"). */
function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
const unprefix = (k: Buffer) => k.toString().slice(KEY_PREFIX.length);

function transient(err: unknown): boolean {
  if (err instanceof UnavailableError) return true;
  if (typeof err !== 'object' || err === null) return false;
  if (isRecoverableError(err as Error)) return true;
  // Raised by the member when a request was in flight across an election.
  return /leader changed|no leader|request timed out|too many requests|BrokenCircuit|circuit/i.test(errorMessage(err));
}

export class EtcdKV implements KV {
  readonly client: Etcd3;
  private endpoints: string;
  private budgetMs: number;
  private log: Logger;

  constructor(o: EtcdOptions) {
    this.client = new Etcd3(etcdClientOptions(o));
    this.endpoints = o.endpoints.join(',');
    this.budgetMs = o.callTimeoutMs ?? 3000;
    this.log = o.log ?? silentLogger();
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof GRPCGenericError || transient(err) || (err instanceof Error && /ECONNREFUSED|timed out|No connection/i.test(err.message))) {
      return new UnavailableError(
        `etcd at ${this.endpoints} did not answer (${what}): ${errorMessage(err)}; check that etcd is running and reachable, and that ETCD_ENDPOINTS is right`,
        { cause: err },
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Runs one request, retried on other members within the call's budget. */
  private async call<T>(what: string, attempt: (deadline: Date) => Promise<T>): Promise<T> {
    const end = Date.now() + this.budgetMs;
    for (let n = 0; ; n++) {
      // Each attempt gets most of what is left, so a hung member leaves time for another.
      const left = end - Date.now();
      const deadline = new Date(Date.now() + Math.max(200, n === 0 ? Math.min(left, Math.max(1000, left * 0.6)) : left));
      try {
        return await attempt(deadline);
      } catch (err) {
        const pause = 20 + jitteredDelay(n, 50, 400);
        if (!transient(err) || Date.now() + pause + 200 > end) throw this.wrap(err, what);
        this.log.debug('etcd request failed; retrying on another member', { what, attempt: n + 1, error: errorMessage(err) });
        await sleep(pause);
      }
    }
  }

  async get(key: string): Promise<KVEntry | undefined> {
    const res = await this.call(`get ${key}`, (deadline) => this.client.kv.range({ key: buf(key) }, { deadline }));
    const kv = res.kvs[0];
    return kv ? { key, value: kv.value.toString(), mod: kv.mod_revision } : undefined;
  }

  /** One page of keys under `prefix` from `start` (inclusive), at `revision` (0: now). */
  private async page(prefix: string, start: Buffer, revision: string, keysOnly: boolean) {
    const res = await this.call(`list ${prefix}`, (deadline) =>
      this.client.kv.range(
        {
          key: start,
          range_end: prefixEnd(buf(prefix)),
          limit: PAGE,
          revision,
          keys_only: keysOnly,
          sort_order: SortOrder.Ascend,
          sort_target: SortTarget.Key,
        },
        { deadline },
      ),
    );
    return res;
  }

  /** Every entry under `prefix`, at `revision` (the first page's when not given). */
  private async listAt(prefix: string, revision: string | undefined, keysOnly: boolean): Promise<{ entries: KVEntry[]; revision: string }> {
    const entries: KVEntry[] = [];
    let start = buf(prefix);
    let rev = revision ?? '0';
    for (;;) {
      const res = await this.page(prefix, start, rev, keysOnly);
      if (rev === '0') rev = res.header.revision;
      for (const kv of res.kvs) entries.push({ key: unprefix(kv.key), value: keysOnly ? '' : kv.value.toString(), mod: kv.mod_revision });
      if (!res.more || res.kvs.length === 0) return { entries, revision: rev };
      start = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
    }
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<KVEntry[]> {
    return (await this.listAt(prefix, undefined, !!opts.keysOnly)).entries;
  }

  async txn(compares: Compare[], ops: Op[]): Promise<string | undefined> {
    const compare = compares.map((c) =>
      'absent' in c
        ? { key: buf(c.key), target: CompareTarget.Version, result: CompareResult.Equal, version: '0' }
        : 'present' in c
          ? { key: buf(c.key), target: CompareTarget.Version, result: CompareResult.Greater, version: '0' }
          : { key: buf(c.key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: c.mod },
    );
    const success = ops.map((op) =>
      'put' in op ? { request_put: { key: buf(op.put), value: Buffer.from(op.value) } } : { request_delete_range: { key: buf(op.del) } },
    );
    const res = await this.call('transaction', (deadline) => this.client.kv.txn({ compare, success, failure: [] }, { deadline }));
    return res.succeeded ? res.header.revision : undefined;
  }

  async put(key: string, value: string): Promise<void> {
    await this.txn([], [{ put: key, value }]);
  }

  async del(key: string): Promise<void> {
    await this.txn([], [{ del: key }]);
  }

  private source: WatchSource = {
    snapshot: async (prefixes) => {
      // The first prefix fixes the revision; the others are read at it, so all agree.
      const first = await this.listAt(prefixes[0], undefined, false);
      const rest = await Promise.all(prefixes.slice(1).map((p) => this.listAt(p, first.revision, false)));
      return { entries: [...first.entries, ...rest.flatMap((r) => r.entries)], revision: first.revision };
    },
    watchFrom: async (prefixes, from, onEvents, onLost) => {
      const watchers: Watcher[] = [];
      let over = false;
      const lost = (reason: 'compacted' | 'disconnected', err?: unknown) => {
        if (over) return;
        over = true;
        onLost(reason, err);
      };
      const cancel = async () => {
        over = true;
        await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
      };
      try {
        for (const p of prefixes) {
          const w = await this.client
            .watch()
            .prefix(KEY_PREFIX + p)
            .startRevision(from.toString())
            .create();
          watchers.push(w);
          w.on('data', (res: { events: Array<{ type: string; kv: { key: Buffer; value: Buffer; mod_revision: string } }> }) => {
            if (over) return;
            const events: WatchEvent[] = res.events.map((ev) =>
              ev.type === 'Delete'
                ? { type: 'delete', key: unprefix(ev.kv.key), mod: ev.kv.mod_revision }
                : { type: 'put', entry: { key: unprefix(ev.kv.key), value: ev.kv.value.toString(), mod: ev.kv.mod_revision } },
            );
            if (events.length) onEvents(events);
          });
          // etcd cancels a watch whose start revision was compacted; any cancel is treated so.
          w.on('error', (err) => lost('compacted', err));
          w.on('disconnected', (err) => lost('disconnected', err));
        }
      } catch (err) {
        await cancel();
        throw Object.assign(this.wrap(err, 'watch'), { compacted: /compact|canceled/i.test(errorMessage(err)) });
      }
      return cancel;
    },
  };

  watch(prefixes: string[], listener: WatchListener): Watch {
    return listWatch(this.source, prefixes, listener, this.log);
  }

  async lease(ttlSeconds: number): Promise<Lease> {
    const l = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    // A lease whose grant failed is reported through 'lost' as well; handled by the caller.
    l.on('lost', () => undefined);
    try {
      await l.grant();
    } catch (err) {
      throw this.wrap(err, 'lease grant');
    }
    return {
      put: async (key, value) => {
        try {
          await l
            .put(KEY_PREFIX + key)
            .value(value)
            .exec();
        } catch (err) {
          throw this.wrap(err, `put ${key} on a lease`);
        }
      },
      revoke: () => l.revoke().catch(() => undefined),
      onLost: (fn) => void l.once('lost', (err: Error) => fn(err)),
    };
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}
