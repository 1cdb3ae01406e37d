/**
 * Keeps the per-network-name profiles in etcd in step with the networks, incrementally: the
 * policy agent tells it about every network record (all hosts) and every stored profile as its
 * watch sees them, and it writes only the profile whose name an event touched. A name gets the
 * default profile, internal if a network of that name is internal on any host; a name no host
 * has any more loses its profile. Writes are guarded by the stored revision, so agents on several
 * hosts doing the same at once cannot undo each other: the loser sees the winner's write through
 * its watch and, if something is still wrong, fixes it then.
 */
import { codecs } from '../lib/datastore/codec';
import type { KV, KVEntry } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { NetworkRecord } from '../lib/datastore/records';
import { errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';
import { jitteredDelay } from '../lib/retry';
import { defaultProfile } from './profiles';

export class ProfileKeeper {
  /** Network (host/id) → its name and internal flag, for networks whose name is learned. */
  private networks = new Map<string, { name: string; internal: boolean }>();
  /** Name → the networks holding it. */
  private byName = new Map<string, Set<string>>();
  private stored = new Map<string, KVEntry>();
  private pending = new Set<string>();
  private flushing = false;
  private stopped = false;
  private failures = 0;
  private retry?: NodeJS.Timeout;
  private retrying = new Set<string>();

  constructor(
    private kv: KV,
    private log: Logger,
  ) {}

  /** Replaces everything known (a watch's reset) and re-checks every name. */
  reset(networks: NetworkRecord[], profiles: KVEntry[]): void {
    const names = new Set([...this.byName.keys(), ...this.stored.keys()]);
    this.networks.clear();
    this.byName.clear();
    this.stored = new Map(profiles.map((e) => [e.key.slice(keys.profiles().length), e]));
    for (const n of networks) this.note(n);
    for (const n of [...names, ...this.byName.keys(), ...this.stored.keys()]) this.pending.add(n);
    this.flush();
  }

  network(key: string, rec: NetworkRecord | undefined): void {
    const old = this.networks.get(key);
    if (old) {
      this.networks.delete(key);
      this.byName.get(old.name)?.delete(key);
      if (!this.byName.get(old.name)?.size) this.byName.delete(old.name);
      this.pending.add(old.name);
    }
    if (rec) this.note(rec);
    if (rec?.name) this.pending.add(rec.name);
    this.flush();
  }

  profile(name: string, e: KVEntry | undefined): void {
    if (e) this.stored.set(name, e);
    else this.stored.delete(name);
    this.pending.add(name);
    this.flush();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
  }

  /** Bounded, jittered backoff: etcd may be away for a while, and the profile must still come. */
  private retryLater(name: string): void {
    this.failures++;
    this.retrying.add(name);
    if (this.retry) return;
    this.retry = setTimeout(
      () => {
        this.retry = undefined;
        for (const n of this.retrying) this.pending.add(n);
        this.retrying.clear();
        this.flush();
      },
      250 + jitteredDelay(this.failures, 500, 30_000),
    );
  }

  private note(n: NetworkRecord): void {
    if (!n.name) return;
    const key = `${n.host}/${n.id}`;
    this.networks.set(key, { name: n.name, internal: !!n.internal });
    const s = this.byName.get(n.name) ?? new Set<string>();
    s.add(key);
    this.byName.set(n.name, s);
  }

  /** The stored profile's internal flag, or undefined when it is missing or unreadable. */
  private storedInternal(name: string): boolean | undefined {
    const e = this.stored.get(name);
    if (!e) return undefined;
    try {
      return codecs.profile.decode(e).internal;
    } catch {
      return undefined;
    }
  }

  private flush(): void {
    if (this.flushing || this.stopped) return;
    this.flushing = true;
    void (async () => {
      while (this.pending.size && !this.stopped) {
        const name = this.pending.values().next().value as string;
        this.pending.delete(name);
        await this.sync(name).then(
          () => (this.failures = 0),
          (err) => {
            this.log.warn('could not update a network profile; retrying', { profile: name, error: errorMessage(err) });
            this.retryLater(name);
          },
        );
      }
      this.flushing = false;
    })();
  }

  private async sync(name: string): Promise<void> {
    const holders = this.byName.get(name);
    const e = this.stored.get(name);
    const key = keys.profile(name);
    if (!holders?.size) {
      if (e && (await this.kv.txn([{ key, mod: e.mod }], [{ del: key }]))) this.log.info('profile removed: no network of that name is left', { profile: name });
      return;
    }
    const internal = [...holders].some((k) => this.networks.get(k)?.internal);
    if (this.storedInternal(name) === internal) return;
    const guard = e ? { key, mod: e.mod } : { key, absent: true as const };
    if (await this.kv.txn([guard], [{ put: key, value: codecs.profile.encode(defaultProfile(name, internal)) }])) {
      this.log.info('profile written', { profile: name, internal });
    }
  }
}
