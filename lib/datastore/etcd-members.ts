/**
 * The members of an etcd cluster as this process sees them (what clientv3's balancer does for
 * Go). Every request goes to one pinned member, the last one that answered, so a dead or
 * partitioned member costs one failed attempt per request in flight, not a third of all
 * requests as random choice did: the attempt fails, the member is marked down (for longer each
 * time it fails again), the pin moves to a member not marked down, and the request is retried
 * there at once. A down member is never probed while others work; it is used again only when
 * everything else is down too (the one marked down least recently first).
 *
 * Each member has its own etcd3 clients (one for requests, one for watch streams, so a channel
 * reset after a failed request never cuts the watches), none with etcd3's own retries or
 * circuit breakers. Every call carries etcd's "hasleader" metadata, so a member cut off from the
 * cluster's leader answers "no leader" at once instead of holding the request until it times out.
 */
import type { Etcd3, IOptions } from 'etcd3';
import { createEtcd3 } from './etcd-client';
import { noop } from 'cockatiel';
import { errorMessage } from '../errors';
import { isMisconfiguration } from './etcd-misconfig';
import type { Logger } from '../log';

/** How a failed attempt is handled: try another member, pause and try again, or give up. */
export type Fault = 'member' | 'leaderless' | 'cluster' | 'config' | 'final';

/**
 * `member`: this member cannot be reached (connection refused or reset, a deadline).
 * `leaderless`: it answered, but has no leader (an election, or it is cut off from the others):
 * another member may have one.
 * `cluster`: the cluster is changing under the request (a leader election); any member, soon.
 * `config`: this host's etcd settings are wrong (its CA, certificate or password; etcd-misconfig.ts):
 * another member may be set up differently, but waiting cannot help.
 * `final`: the request itself failed (compacted, invalid, denied); retrying cannot help.
 */
export function classifyFault(err: unknown): Fault {
  const msg = errorMessage(err);
  // Before UNAVAILABLE: grpc reports a failed TLS handshake as a connection that could not be made.
  if (isMisconfiguration(err)) return 'config';
  if (/leader changed|request timed out|too many requests|timed out waiting for read index|not capable|raft proposal dropped/i.test(msg)) return 'cluster';
  if (/no leader/i.test(msg)) return 'leaderless';
  if (/UNAVAILABLE|DEADLINE_EXCEEDED|Deadline exceeded|No connection|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|socket|CANCELLED|closed|stopped/i.test(msg))
    return 'member';
  const name = (err as { constructor?: { name?: string } })?.constructor?.name ?? '';
  if (/Unavailable|DeadlineExceeded|Cancelled/.test(name)) return 'member';
  return 'final';
}

/** How long a member that said "no leader" is passed over. */
const LEADERLESS_MS = 300;

export interface Member {
  url: string;
  /** Unary requests. */
  client: Etcd3;
  /** Watch streams only. */
  streams: Etcd3;
  downUntil: number;
  failures: number;
  lastOk: number;
}

/** Makes every call of `client` carry hasleader=true (etcd's WithRequireLeader). */
export function requireLeader(client: Etcd3): Etcd3 {
  type Md = { clone(): Md; set(k: string, v: string): void };
  const pool = (client as unknown as { pool: { authenticator: { getMetadata(): Promise<Md> } } }).pool;
  const auth = pool.authenticator;
  const original = auth.getMetadata.bind(auth);
  auth.getMetadata = async () => {
    const md = (await original()).clone();
    md.set('hasleader', 'true');
    return md;
  };
  return client;
}

export class MemberSet {
  readonly members: Member[];
  private pinned: Member;
  private switchListeners = new Set<(from: Member) => void>();

  constructor(
    urls: string[],
    options: (hosts: string[]) => IOptions,
    private log: Logger,
  ) {
    const single = (url: string) => {
      const o = options([url]);
      return requireLeader(createEtcd3({ ...o, faultHandling: { global: noop, host: () => noop, watchBackoff: o.faultHandling?.watchBackoff } }));
    };
    this.members = urls.map((url) => ({ url, client: single(url), streams: single(url), downUntil: 0, failures: 0, lastOk: 0 }));
    // Hosts start pinned to different members, so a cluster's load spreads over its members.
    this.pinned = this.members[Math.floor(Math.random() * this.members.length)];
  }

  current(): Member {
    return this.pinned;
  }

  /** The member for the next attempt of a request that already tried `tried`. */
  pick(tried: Set<Member>): Member {
    const now = Date.now();
    if (!tried.has(this.pinned) && this.pinned.downUntil <= now) return this.pinned;
    const fresh = this.members.filter((m) => !tried.has(m));
    const pool = fresh.length ? fresh : this.members;
    const up = pool.filter((m) => m.downUntil <= now);
    return (up.length ? up : pool).reduce((a, b) => (b.downUntil < a.downUntil ? b : a));
  }

  ok(m: Member): void {
    m.lastOk = Date.now();
    if (m.failures) this.log.info('etcd member answering again', { member: m.url });
    m.failures = 0;
    m.downUntil = 0;
    if (this.pinned.downUntil > Date.now()) this.pinned = m;
  }

  /**
   * A member could not serve: mark it down and move the pin off it. An unreachable member is
   * marked down for longer each time; one that answers "no leader" only briefly, since during an
   * election every member says so many times a second, and escalating those marks made the
   * unreachable member (which fails only once per deadline) look the best choice.
   */
  failed(m: Member, err: unknown): void {
    if (classifyFault(err) === 'leaderless') m.downUntil = Math.max(m.downUntil, Date.now() + LEADERLESS_MS);
    else {
      m.failures++;
      m.downUntil = Date.now() + Math.min(10_000, 1000 * 2 ** Math.min(m.failures - 1, 4));
    }
    if (m.failures === 1 && classifyFault(err) !== 'leaderless')
      this.log.warn('etcd member not answering; using the others', { member: m.url, error: errorMessage(err) });
    if (this.pinned !== m) return;
    const next = this.pick(new Set([m]));
    if (next === m) return;
    this.pinned = next;
    this.log.debug('etcd requests moved to another member', { from: m.url, to: next.url });
    for (const fn of this.switchListeners) fn(m);
  }

  /** Called when the pin moves off a member (watches on it should move too). */
  onSwitch(fn: (from: Member) => void): () => void {
    this.switchListeners.add(fn);
    return () => this.switchListeners.delete(fn);
  }

  close(): void {
    for (const m of this.members) {
      m.client.close();
      m.streams.close();
    }
  }
}
