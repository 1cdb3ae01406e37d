/**
 * Group commit for veth deletions. Deleting a link costs the kernel 20-40 ms, nearly all of it
 * waiting for RCU grace periods inside unregister_netdevice_many(), and it pays them once per
 * request whatever the request deletes. So while one deletion runs, the ones asked for meanwhile
 * queue; the next request deletes all of them together: each is put in a fresh device group
 * (IFLA_GROUP, a cheap RTM_SETLINK) and one RTM_DELLINK deletes the group. A lone deletion goes
 * straight out by index, so an idle host pays nothing extra.
 *
 * Links are queued by name at once and looked up in the batch: a lookup made before queueing
 * would still be waiting for its reply when the running deletion ends, and each link would
 * then go out alone again. After each request the deleter also lets the thread's event loop
 * turn once, so requests that arrived while sendmsg() blocked it join the next batch.
 *
 * Safe to replay and to fail half-way: a link already gone is success; if the group deletion
 * fails, each tagged link is deleted again by index and reports its own outcome; a link left in
 * one of our groups after a crash is deleted by index like any other by the next unwire.
 */
import { randomInt } from 'node:crypto';

export interface GroupDeleteOps {
  getLink(name: string): Promise<{ index: number; kind?: string } | undefined>;
  deleteLink(index: number): Promise<'deleted' | 'missing'>;
  setLinkGroup(index: number, group: number): Promise<'ok' | 'no-link'>;
  deleteGroup(group: number): Promise<'deleted' | 'missing'>;
}

/** Most links in one request: bounds how long one sendmsg() blocks the thread. */
export const MAX_BATCH = 64;

/** Throws when the link found under the name must not be deleted (not a workload's veth). */
export type LinkCheck = (link: { index: number; kind?: string }) => void;

interface Item {
  name: string;
  check: LinkCheck;
  index?: number;
  resolve(): void;
  reject(err: unknown): void;
}

export class LinkDeleter {
  private queue: Item[] = [];
  private pending = new Map<string, Promise<void>>();
  private busy = false;
  /** Groups of our own, far from the 0 every link starts in and from small admin-chosen ones. */
  private nextGroup = 0x4000_0000 + randomInt(0x1000_0000);

  constructor(private ops: GroupDeleteOps) {}

  /** Deletes the link called `name` if there is one and `check` accepts it. */
  delete(name: string, check: LinkCheck): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({ name, check, resolve, reject });
      if (!this.busy) void this.drain();
    });
    const settled = done.then(
      () => undefined,
      () => undefined,
    );
    this.pending.set(name, settled);
    void settled.then(() => {
      if (this.pending.get(name) === settled) this.pending.delete(name);
    });
    return done;
  }

  /**
   * Settles once no deletion of `name` asked for so far is pending. Anything else done to that
   * name waits for it: the lookup happens late, and must not find a pair made after the ask.
   */
  idle(name: string): Promise<void> | undefined {
    return this.pending.get(name);
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length) {
        await this.run(this.queue.splice(0, MAX_BATCH));
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.busy = false;
    }
  }

  /** Looks the link up; false when it is gone (resolved) or refused (rejected). */
  private async found(item: Item): Promise<boolean> {
    try {
      const link = await this.ops.getLink(item.name);
      if (!link) {
        item.resolve();
        return false;
      }
      item.check(link);
      item.index = link.index;
      return true;
    } catch (err) {
      item.reject(err);
      return false;
    }
  }

  private async one(item: Item): Promise<void> {
    try {
      await this.ops.deleteLink(item.index!);
      item.resolve();
    } catch (err) {
      item.reject(err);
    }
  }

  private async run(queued: Item[]): Promise<void> {
    const batch = (await Promise.all(queued.map(async (item) => ((await this.found(item)) ? item : undefined)))).filter((i) => i !== undefined);
    if (batch.length === 0) return;
    if (batch.length === 1) return this.one(batch[0]);
    const group = this.nextGroup++;
    if (this.nextGroup >= 0x7fff_ffff) this.nextGroup = 0x4000_0000;
    const tagged: Item[] = [];
    await Promise.all(
      batch.map(async (item) => {
        try {
          if ((await this.ops.setLinkGroup(item.index!, group)) === 'no-link') item.resolve();
          else tagged.push(item);
        } catch {
          // Not tagged: deleted on its own instead.
          await this.one(item);
        }
      }),
    );
    if (!tagged.length) return;
    try {
      await this.ops.deleteGroup(group);
      for (const item of tagged) item.resolve();
    } catch {
      for (const item of tagged) await this.one(item);
    }
  }
}
