/**
 * KV on etcd v3 (npm etcd3, used through its raw RPC clients so every request is ours to shape).
 *
 * Failover: ETCD_ENDPOINTS may name several members. Requests go to one pinned member and move
 * to another when it fails (etcd-members.ts). Each call runs under one overall budget; an
 * attempt has a short deadline of its own, so a member that hangs (partitioned: packets dropped)
 * costs one attempt, and is retried at once on another member; an election in progress ("leader
 * changed") is waited out with short jittered pauses. Retrying a transaction whose reply was
 * lost is safe because every write in this project is guarded by compares or idempotent (see
 * KV.txn), and the allocator recognises its own allocations by their handle. etcd3's own
 * retries stay off: they would re-send blindly, outside our budget.
 *
 * Listings are paged at one revision; watches are list-then-watch (list-watch.ts) over etcd's
 * watch stream on the pinned member, resumed from the last revision delivered on whichever
 * member is pinned next, re-listed after a compaction. While a watch is open the pinned member
 * is probed when it has been quiet, so a watch on a member that was cut off moves within seconds.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { CompareResult, CompareTarget, type Etcd3, SortOrder, SortTarget, isRecoverableError, type IOptions, type Watcher } from 'etcd3';
import { ConfigError, UnavailableError, errorMessage } from '../errors';
import { misconfiguration } from './etcd-misconfig';
import { createEtcd3 } from './etcd-client';
import { type Member, MemberSet, classifyFault, requireLeader } from './etcd-members';
import type { Logger } from '../log';
import { silentLogger } from '../log';
import type { EtcdOp, EtcdRecorder } from '../metrics';
import { jitteredDelay, sleep } from '../retry';
import type { Compare, KV, KVEntry, Lease, ListOptions, Op, Watch, WatchEvent, WatchListener } from './kv';
import { type WatchSource, listWatch } from './list-watch';

export const KEY_PREFIX = '/calico-libnetwork/v1/';
/** Keys per page of a listing: small enough that pages of full blocks stay far below 4 MB. */
const PAGE = 200;
/**
 * One attempt's deadline: longer than etcd's fsync stalls (~250 ms) and most of an election,
 * short enough that a hung member leaves time in the budget for another.
 */
const ATTEMPT_MS = 1000;
/**
 * One call's budget, retries included: an etcd election (1-2 s with default timing, longer on a
 * split vote) fits, with time left under the 5 s a plugin request may take at most.
 */
const CALL_BUDGET_MS = 4000;
/** While a watch is open, a pinned member quiet this long is probed. */
const PROBE_MS = 2000;

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
  /** Counts calls, failures and latency (metrics on). */
  metrics?: EtcdRecorder;
}

export function etcdClientOptions(o: EtcdOptions): IOptions {
  const opts: IOptions = {
    hosts: o.endpoints,
    dialTimeout: Math.min(o.callTimeoutMs ?? CALL_BUDGET_MS, 2000),
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
      // A restarted member is found again within a second or two, not grpc's default minutes.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
      // Subchannels owned by their channel, so close() also ends a connect hanging on a cut-off
      // member (from the shared pool it kept the process alive for minutes).
      'grpc.use_local_subchannel_pool': 1,
      // Pages keep responses small; this is only a safety margin for one huge value.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  };
  if (o.caFile || o.certFile || o.keyFile) {
    opts.credentials = {
      // A client certificate without ETCD_CA_CERT_FILE: etcd's is checked against the system's CAs.
      rootCertificate: o.caFile ? readSetting('ETCD_CA_CERT_FILE', o.caFile) : Buffer.from(tls.rootCertificates.join('\n')),
      ...(o.keyFile ? { privateKey: readSetting('ETCD_KEY_FILE', o.keyFile) } : {}),
      ...(o.certFile ? { certChain: readSetting('ETCD_CERT_FILE', o.certFile) } : {}),
    };
  }
  if (o.username) opts.auth = { username: o.username, password: o.password ?? '' };
  return opts;
}

/** A file a setting names, read now: unreadable, it is that setting that must change. */
function readSetting(variable: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new ConfigError(`${variable}=${file} cannot be read (${errorMessage(err)}): point ${variable} at a readable file`, { cause: err });
  }
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

export class EtcdKV implements KV {
  /** Leases only (a lease's keep-alive stream picks a live member by itself); requests go through `members`. */
  readonly client: Etcd3;
  private members: MemberSet;
  private endpoints: string;
  private settings: EtcdOptions;
  private budgetMs: number;
  private log: Logger;
  private openWatches = 0;
  private probe?: NodeJS.Timeout;
  private metrics?: EtcdRecorder;

  constructor(o: EtcdOptions) {
    this.metrics = o.metrics;
    this.client = requireLeader(createEtcd3(etcdClientOptions(o)));
    this.log = o.log ?? silentLogger();
    this.members = new MemberSet(o.endpoints, (hosts) => etcdClientOptions({ ...o, endpoints: hosts }), this.log);
    this.endpoints = o.endpoints.join(',');
    this.settings = o;
    this.budgetMs = o.callTimeoutMs ?? CALL_BUDGET_MS;
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof UnavailableError || err instanceof ConfigError) return err;
    const fault = classifyFault(err);
    if (fault === 'config') return misconfiguration(err, this.settings) ?? new ConfigError(errorMessage(err), { cause: err });
    if (fault !== 'final') {
      return new UnavailableError(
        `etcd at ${this.endpoints} did not answer ${what} within ${this.budgetMs} ms: ${errorMessage(err)}; try again (check that most etcd members are running and reachable, and that ETCD_ENDPOINTS is right)`,
        { cause: err },
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Every request goes through here, so this is where it is counted and timed. */
  private async call<T>(op: EtcdOp, what: string, attempt: (client: Etcd3, deadline: Date) => Promise<T>): Promise<T> {
    if (!this.metrics) return this.attempts(what, attempt);
    const t0 = performance.now();
    try {
      const res = await this.attempts(what, attempt);
      this.metrics.etcdRequest(op, (performance.now() - t0) / 1000, false);
      return res;
    } catch (err) {
      this.metrics.etcdRequest(op, (performance.now() - t0) / 1000, true);
      throw err;
    }
  }

  /** Runs one request on the pinned member, retried on others (or after an election) within the call's budget. */
  private async attempts<T>(what: string, attempt: (client: Etcd3, deadline: Date) => Promise<T>): Promise<T> {
    const end = Date.now() + this.budgetMs;
    const tried = new Set<Member>();
    for (let n = 0; ; n++) {
      const m = this.members.pick(tried);
      const left = end - Date.now();
      try {
        const res = await attempt(m.client, new Date(Date.now() + Math.max(200, Math.min(left, ATTEMPT_MS))));
        this.members.ok(m);
        return res;
      } catch (err) {
        const fault = classifyFault(err);
        if (fault === 'final') throw this.wrap(err, what);
        // A setting etcd refuses fails at once, unless another member is still untried.
        if (fault === 'config') {
          tried.add(m);
          if (this.members.members.every((x) => tried.has(x))) throw this.wrap(err, what);
          this.members.failed(m, err);
          continue;
        }
        const moveOn = fault === 'member' || fault === 'leaderless';
        if (moveOn) {
          this.members.failed(m, err);
          tried.add(m);
        }
        // Another member right away; the same ones again (or an election) after a short pause.
        const others = moveOn && this.members.members.some((x) => !tried.has(x));
        const pause = others ? Math.random() * 20 : 50 + jitteredDelay(n, 50, 400);
        if (Date.now() + pause + 100 > end) throw this.wrap(err, what);
        if (!others && tried.size === this.members.members.length) tried.clear();
        this.log.debug('etcd request failed; retrying', { what, member: m.url, attempt: n + 1, error: errorMessage(err) });
        await sleep(pause);
      }
    }
  }

  /** While watches are open: a quiet pinned member is asked something cheap, so a silent failure moves the watches. */
  private watching(delta: number): void {
    this.openWatches += delta;
    if (this.openWatches > 0 && !this.probe) {
      this.probe = setInterval(() => {
        const m = this.members.current();
        if (Date.now() - m.lastOk < PROBE_MS) return;
        m.client.kv
          .range({ key: buf('health'), count_only: true }, { deadline: new Date(Date.now() + ATTEMPT_MS) })
          .then(() => this.members.ok(m))
          .catch((err) => classifyFault(err) !== 'final' && classifyFault(err) !== 'cluster' && this.members.failed(m, err));
      }, PROBE_MS);
      this.probe.unref();
    } else if (this.openWatches <= 0 && this.probe) {
      clearInterval(this.probe);
      this.probe = undefined;
    }
  }

  async get(key: string): Promise<KVEntry | undefined> {
    const res = await this.call('get', `get ${key}`, (c, deadline) => c.kv.range({ key: buf(key) }, { deadline }));
    const kv = res.kvs[0];
    return kv ? { key, value: kv.value.toString(), mod: kv.mod_revision } : undefined;
  }

  /** One page of keys under `prefix` from `start` (inclusive), at `revision` (0: now). */
  private async page(prefix: string, start: Buffer, revision: string, keysOnly: boolean) {
    const res = await this.call('list', `list ${prefix}`, (c, deadline) =>
      c.kv.range(
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
    const res = await this.call('txn', 'transaction', (c, deadline) => c.kv.txn({ compare, success, failure: [] }, { deadline }));
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
      // On the pinned member; when requests move off it (it failed them), the watch moves too.
      const member = this.members.current();
      const watchers: Watcher[] = [];
      let over = false;
      let unsubscribe = () => undefined as unknown;
      const finish = () => {
        if (!over) this.watching(-1);
        over = true;
        unsubscribe();
      };
      const lost = (reason: 'compacted' | 'disconnected', err?: unknown) => {
        if (over) return;
        finish();
        if (reason === 'disconnected' && err !== undefined) this.members.failed(member, err);
        onLost(reason, err);
      };
      const cancel = async () => {
        finish();
        // A cancel waits for etcd's answer, which never comes from a member that was cut off.
        await Promise.race([Promise.all(watchers.map((w) => w.cancel().catch(() => undefined))), sleep(ATTEMPT_MS)]);
      };
      this.watching(1);
      unsubscribe = this.members.onSwitch((from) => from === member && lost('disconnected'));
      try {
        for (const p of prefixes) {
          const w = member.streams
            .watch()
            .prefix(KEY_PREFIX + p)
            .startRevision(from.toString())
            .watcher();
          watchers.push(w);
          const connected = new Promise<void>((resolve, reject) => {
            w.once('connected', () => resolve());
            w.once('error', reject);
            w.once('disconnected', reject);
            setTimeout(() => reject(new Error(`no watch stream from ${member.url} within ${2 * ATTEMPT_MS} ms (DEADLINE_EXCEEDED)`)), 2 * ATTEMPT_MS).unref();
          });
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
          await connected;
        }
      } catch (err) {
        const compacted = /compact|canceled/i.test(errorMessage(err));
        if (!over && !compacted && classifyFault(err) !== 'final') this.members.failed(member, err);
        await cancel();
        throw Object.assign(this.wrap(err, 'watch'), { compacted });
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
      // Through the member set like any write, so a member failing costs a retry, not the put.
      put: async (key, value) => {
        const lease = await l.grant();
        await this.call('lease-put', `put ${key} on a lease`, (c, deadline) => c.kv.put({ key: buf(key), value: Buffer.from(value), lease }, { deadline }));
      },
      revoke: () => l.revoke().catch(() => undefined),
      onLost: (fn) => void l.once('lost', (err: Error) => fn(err)),
    };
  }

  close(): Promise<void> {
    if (this.probe) clearInterval(this.probe);
    this.members.close();
    this.client.close();
    return Promise.resolve();
  }
}
