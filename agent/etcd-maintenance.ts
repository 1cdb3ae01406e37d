/**
 * Housekeeping for the embedded etcd, which no operator looks after. Every IPAM write rewrites
 * a block document and etcd keeps every old revision until it is compacted; under churn its
 * database would grow until the quota turns it read-only. So, every interval: compact history
 * older than RETAIN revisions (watchers that fall further behind list again, list-watch.ts), and
 * defragment when most of the file is free pages (bbolt reuses free pages, so compaction alone
 * bounds the size; defragmenting gives the space back). A NOSPACE alarm, should the quota
 * still be reached, is cleared once space was recovered, so writes resume without an operator.
 */
import { AlarmAction, AlarmType, type Etcd3, type IOptions } from 'etcd3';
import { createEtcd3 } from '../lib/datastore/etcd-client';
import { errorMessage } from '../lib/errors';
import type { Logger } from '../lib/log';

export interface MaintenanceOptions {
  intervalMs: number;
  /** Revisions of history kept behind the newest. */
  retainRevisions: number;
  /** Defragment when at least this much of the file is free (and it is over half the file). */
  defragFreeBytes: number;
}

export const MAINTENANCE_DEFAULTS: MaintenanceOptions = { intervalMs: 30_000, retainRevisions: 10_000, defragFreeBytes: 64 * 1024 * 1024 };

export interface MaintenanceReport {
  revision: bigint;
  compactedTo?: bigint;
  dbSize: number;
  dbSizeInUse: number;
  defragmented: boolean;
  alarmCleared: boolean;
}

export class EtcdMaintenance {
  private client: Etcd3;
  private timer?: NodeJS.Timeout;
  private compacted = 0n;
  private running = false;

  constructor(
    endpoint: string,
    private log: Logger,
    private opts: MaintenanceOptions = MAINTENANCE_DEFAULTS,
    credentials?: IOptions['credentials'],
  ) {
    this.client = createEtcd3({ hosts: [endpoint], ...(credentials ? { credentials } : {}) });
  }

  start(): void {
    this.timer = setInterval(
      () => void this.runOnce().catch((err) => this.log.warn('etcd maintenance failed', { error: errorMessage(err) })),
      this.opts.intervalMs,
    );
    this.timer.unref();
  }

  /** One pass; returns what it found and did. */
  async runOnce(): Promise<MaintenanceReport | undefined> {
    if (this.running) return undefined;
    this.running = true;
    try {
      const deadline = () => ({ deadline: new Date(Date.now() + 10_000) });
      const status = await this.client.maintenance.status(deadline());
      const revision = BigInt(status.header.revision);
      const report: MaintenanceReport = {
        revision,
        dbSize: Number(status.dbSize),
        dbSizeInUse: Number(status.dbSizeInUse),
        defragmented: false,
        alarmCleared: false,
      };
      const target = revision - BigInt(this.opts.retainRevisions);
      if (target > this.compacted) {
        try {
          await this.client.kv.compact({ revision: target.toString(), physical: true }, deadline());
        } catch (err) {
          // Already compacted further (by etcd's own auto-compaction, or a previous run): fine.
          if (!/compacted/i.test(errorMessage(err))) throw err;
        }
        this.compacted = target;
        report.compactedTo = target;
      }
      const after = await this.client.maintenance.status(deadline());
      const free = Number(after.dbSize) - Number(after.dbSizeInUse);
      const alarms = (await this.client.maintenance.alarm({ action: AlarmAction.Get, memberID: '0', alarm: AlarmType.None }, deadline())).alarms;
      const nospace = alarms.filter((a) => a.alarm === 'Nospace');
      if (nospace.length || (free >= this.opts.defragFreeBytes && free * 2 > Number(after.dbSize))) {
        await this.client.maintenance.defragment({ deadline: new Date(Date.now() + 60_000) });
        report.defragmented = true;
        this.log.info('embedded etcd defragmented', { before: Number(after.dbSize), freed: free });
      }
      if (nospace.length) {
        for (const a of nospace)
          await this.client.maintenance.alarm({ action: AlarmAction.Deactivate, memberID: a.memberID, alarm: AlarmType.Nospace }, deadline());
        report.alarmCleared = true;
        this.log.warn('embedded etcd had reached its quota; history compacted and the NOSPACE alarm cleared');
      }
      const now = await this.client.maintenance.status(deadline());
      report.dbSize = Number(now.dbSize);
      report.dbSizeInUse = Number(now.dbSizeInUse);
      return report;
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.client.close();
  }
}
