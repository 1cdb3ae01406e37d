/**
 * KV on etcd v3 (npm etcd3). Every call carries a deadline; the client's own hidden retries are
 * switched off because they re-send non-idempotent transactions (calico-datastore notes 5.5):
 * callers retry themselves, re-reading to resolve ambiguous results.
 */
import fs from 'node:fs';
import { Etcd3, GRPCGenericError, Namespace, type IOptions } from 'etcd3';
import { noop } from 'cockatiel';
import { UnavailableError, errorMessage } from '../errors';
import type { Compare, KV, KVEntry, Op } from './kv';

export const KEY_PREFIX = '/calico-libnetwork/v1/';
const NEVER_WRITTEN = 'meta/never-written';

export interface EtcdOptions {
  endpoints: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  password?: string;
  /** Deadline for each unary call, ms. */
  callTimeoutMs?: number;
}

export function etcdClientOptions(o: EtcdOptions): IOptions {
  const timeout = o.callTimeoutMs ?? 3000;
  const opts: IOptions = {
    hosts: o.endpoints,
    dialTimeout: timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: { global: noop, host: () => noop },
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 },
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

export class EtcdKV implements KV {
  readonly client: Etcd3;
  private ns: Namespace;
  private endpoints: string;

  constructor(o: EtcdOptions) {
    this.client = new Etcd3(etcdClientOptions(o));
    this.ns = this.client.namespace(KEY_PREFIX);
    this.endpoints = o.endpoints.join(',');
  }

  /** Namespaced client, for watchers and leases. */
  get namespace(): Namespace {
    return this.ns;
  }

  private wrap(err: unknown, what: string): Error {
    if (err instanceof GRPCGenericError || (err instanceof Error && /UNAVAILABLE|DEADLINE|ECONNREFUSED|timed out|No connection/i.test(err.message))) {
      return new UnavailableError(
        `etcd at ${this.endpoints} did not answer (${what}): ${errorMessage(err)}; check that etcd is running and reachable, and that ETCD_ENDPOINTS is right`,
        { cause: err },
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  async get(key: string): Promise<KVEntry | undefined> {
    try {
      const res = await this.ns.get(key).exec();
      const kv = res.kvs[0];
      return kv ? { key, value: kv.value.toString(), mod: kv.mod_revision } : undefined;
    } catch (err) {
      throw this.wrap(err, `get ${key}`);
    }
  }

  async list(prefix: string): Promise<KVEntry[]> {
    try {
      const res = await this.ns.getAll().prefix(prefix).sort('Key', 'Ascend').exec();
      return res.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), mod: kv.mod_revision }));
    } catch (err) {
      throw this.wrap(err, `list ${prefix}`);
    }
  }

  async txn(compares: Compare[], ops: Op[]): Promise<string | undefined> {
    try {
      // etcd's builder needs one compare to start from; a key we never write is always absent.
      const all: Compare[] = compares.length > 0 ? compares : [{ key: NEVER_WRITTEN, absent: true }];
      const [first, ...rest] = all;
      let t =
        'absent' in first
          ? this.ns.if(first.key, 'Version', '==', 0)
          : 'present' in first
            ? this.ns.if(first.key, 'Version', '>', 0)
            : this.ns.if(first.key, 'Mod', '==', first.mod);
      for (const c of rest) {
        t = 'absent' in c ? t.and(c.key, 'Version', '==', 0) : 'present' in c ? t.and(c.key, 'Version', '>', 0) : t.and(c.key, 'Mod', '==', c.mod);
      }
      const res = await t.then(...ops.map((op) => ('put' in op ? this.ns.put(op.put).value(op.value) : this.ns.delete().key(op.del)))).commit();
      return res.succeeded ? res.header.revision : undefined;
    } catch (err) {
      throw this.wrap(err, 'transaction');
    }
  }

  async put(key: string, value: string): Promise<void> {
    try {
      await this.ns.put(key).value(value).exec();
    } catch (err) {
      throw this.wrap(err, `put ${key}`);
    }
  }

  async del(key: string): Promise<void> {
    try {
      await this.ns.delete().key(key).exec();
    } catch (err) {
      throw this.wrap(err, `delete ${key}`);
    }
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}
