/**
 * List-then-watch, shared by both stores (libcalico-go's watchersyncer pattern): list every
 * prefix at one revision, hand that to the owner as a reset, then watch from the next revision.
 * A watch that drops is resumed from the revision after the last event delivered, so nothing in
 * between is missed; one that cannot resume (the store compacted that history away, or resuming
 * keeps failing) lists again and resets. Events at or below the revision already delivered are
 * dropped, so a resumed or duplicated stream never replays into the owner. Bounded, jittered
 * backoff between attempts; logged once per change between working and failing.
 */
import { errorMessage } from '../errors';
import type { Logger } from '../log';
import { jitteredDelay, sleep } from '../retry';
import type { KVEntry, Watch, WatchEvent, WatchListener } from './kv';

export type LostReason = 'compacted' | 'disconnected' | 'failed';

/** What a store provides for list-watch. */
export interface WatchSource {
  /** Every entry under each prefix, all at one revision. */
  snapshot(prefixes: string[]): Promise<{ entries: KVEntry[]; revision: string }>;
  /**
   * Watches from `fromRevision` (inclusive). `onEvents` gets events in revision order; `onLost`
   * is called at most once, when the watch ended without being cancelled. Rejects if the watch
   * cannot be made (with `compacted: true` on the error when the revision is gone).
   */
  watchFrom(
    prefixes: string[],
    fromRevision: bigint,
    onEvents: (events: WatchEvent[]) => void,
    onLost: (reason: LostReason, err?: unknown) => void,
  ): Promise<() => Promise<void>>;
}

export function isCompacted(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { compacted?: boolean }).compacted === true;
}

const eventRevision = (e: WatchEvent) => BigInt(e.type === 'put' ? e.entry.mod : e.mod);

export function listWatch(
  source: WatchSource,
  prefixes: string[],
  listener: WatchListener,
  log: Logger,
  opts: { retryMs?: number; maxRetryMs?: number } = {},
): Watch {
  const retryMs = opts.retryMs ?? 100;
  const maxRetryMs = opts.maxRetryMs ?? 5000;
  let cancelled = false;
  let cancelWatch: (() => Promise<void>) | undefined;
  let wake: (() => void) | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  let failing = false;

  const fail = (what: string, err: unknown) => {
    log.log(failing ? 'debug' : 'warn', `etcd watch ${what}; retrying`, { prefixes, error: errorMessage(err) });
    failing = true;
  };

  const run = async () => {
    // The last revision the owner has seen, per prefix: each prefix is its own etcd watch stream,
    // and streams are not ordered with one another (a host update at revision 50 can arrive
    // before an affinity put at 48), so one high-water mark for all would drop events.
    let delivered: bigint[] | undefined;
    // Overlapping prefixes deliver an event twice; the longest prefix owns the key, so the copy is dropped.
    const owner = (key: string) => {
      let best = -1;
      prefixes.forEach((p, i) => {
        if (key.startsWith(p) && (best < 0 || p.length > prefixes[best].length)) best = i;
      });
      return best;
    };
    let attempt = 0;
    while (!cancelled) {
      try {
        if (delivered === undefined) {
          const snap = await source.snapshot(prefixes);
          if (cancelled) return;
          listener.reset(snap.entries, snap.revision);
          delivered = prefixes.map(() => BigInt(snap.revision));
          markReady();
        }
        let lost: { reason: LostReason; err?: unknown } | undefined;
        const ended = new Promise<void>((r) => (wake = r));
        const from = delivered.reduce((m, r) => (r < m ? r : m)) + 1n;
        cancelWatch = await source.watchFrom(
          prefixes,
          from,
          (events) => {
            if (cancelled || !delivered) return;
            const seen = delivered;
            // Against the marks before this batch: one transaction's events share a revision.
            const before = [...seen];
            const fresh = events.filter((e) => {
              const i = owner(e.type === 'put' ? e.entry.key : e.key);
              if (i < 0 || eventRevision(e) <= before[i]) return false;
              if (eventRevision(e) > seen[i]) seen[i] = eventRevision(e);
              return true;
            });
            if (fresh.length) listener.changes(fresh);
          },
          (reason, err) => {
            lost = { reason, err };
            wake?.();
          },
        );
        if (failing) log.info('etcd watch working again', { prefixes });
        failing = false;
        attempt = 0;
        await ended;
        if (cancelled) return;
        await cancelWatch().catch(() => undefined);
        const l = lost;
        if (l?.reason === 'compacted') delivered = undefined;
        fail(l?.reason === 'compacted' ? 'lost its history (compacted); listing again' : 'was lost', l?.err ?? l?.reason);
      } catch (err) {
        if (cancelled) return;
        // A resume that cannot find its revision, or keeps failing, starts over from a listing.
        if (isCompacted(err) || attempt >= 3) delivered = undefined;
        fail('could not be made', err);
      }
      await sleep(retryMs + jitteredDelay(attempt++, retryMs, maxRetryMs));
    }
  };
  void run();
  return {
    ready,
    cancel: async () => {
      cancelled = true;
      wake?.();
      await cancelWatch?.().catch(() => undefined);
    },
  };
}
