/**
 * `npm run bench:churn [cycles] [live] [inFlight]`: does etcd's database stay bounded under
 * address churn? Runs the embedded etcd exactly as `calico node` does (agent/embedded-etcd.ts:
 * its flags and its compaction/defragmentation loop) in a temp dir, and drives the IPAM
 * Allocator in this process against it (the plugin socket would add HTTP, not etcd writes):
 * `live` addresses stay allocated, and each cycle allocates one more and releases a random one,
 * `inFlight` cycles at a time. Every allocation and release is a real block transaction, so
 * every cycle adds revisions of a block document. Prints the database size over time (one line
 * per interval) and a JSON summary; needs etcd on PATH (Debian: etcd-server).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createEtcd3 } from '../lib/datastore/etcd-client';
import { EmbeddedEtcd } from '../agent/embedded-etcd';
import { readCredentials } from '../agent/embedded-tls';
import { Allocator } from '../ipam/allocator';
import { Pools } from '../ipam/pools';
import { EtcdKV } from '../lib/datastore/etcd';
import type { IP } from '../lib/ip';
import { formatIP } from '../lib/ip';
import { createLogger } from '../lib/log';

const MB = 1024 * 1024;

async function main() {
  const [cyclesText, liveText, widthText] = process.argv.slice(2);
  const cycles = Number(cyclesText ?? 300_000);
  const live = Number(liveText ?? 2_000);
  const width = Number(widthText ?? 8);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-churn-'));
  const log = createLogger('warn');
  const etcd = new EmbeddedEtcd(dir, 'etcd', log);
  const endpoint = await etcd.start();
  const tls = etcd.tls!;
  const kv = new EtcdKV({ endpoints: [endpoint], caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile });
  const status = createEtcd3({ hosts: [endpoint], credentials: readCredentials(tls) });
  try {
    const pools = new Pools(kv);
    await pools.ensureDefault(4, '10.90.0.0/16');
    const alloc = new Allocator(kv, pools, 'churn-host', log);
    const held: IP[] = [];
    const take = async () => held.push(await alloc.autoAssign(4, alloc.newOwner('CalicoPoolIPv4')));
    for (let i = 0; i < live; i += width) await Promise.all(Array.from({ length: Math.min(width, live - i) }, take));

    const samples: Array<{ s: number; cycles: number; rev: string; dbMB: number; inUseMB: number }> = [];
    const t0 = Date.now();
    let done = 0;
    const sample = async () => {
      const st = await status.maintenance.status();
      const s = {
        s: Math.round((Date.now() - t0) / 1000),
        cycles: done,
        rev: st.header.revision,
        dbMB: Number(st.dbSize) / MB,
        inUseMB: Number(st.dbSizeInUse) / MB,
      };
      samples.push(s);
      const rate = s.s > 0 ? Math.round(done / s.s) : 0;
      process.stdout.write(`t=${s.s}s cycles=${done} (${rate}/s) revision=${s.rev} db=${s.dbMB.toFixed(1)} MB in-use=${s.inUseMB.toFixed(1)} MB\n`);
    };
    await sample();
    const timer = setInterval(() => void sample().catch(() => undefined), 15_000);
    let next = 0;
    await Promise.all(
      Array.from({ length: width }, async () => {
        while (next < cycles) {
          next++;
          await take();
          const victim = held.splice(Math.floor(Math.random() * held.length), 1)[0];
          const r = await alloc.release(victim);
          if (r !== 'released') throw new Error(`releasing ${formatIP(victim)} gave ${r}`);
          done++;
        }
      }),
    );
    clearInterval(timer);
    const wallS = (Date.now() - t0) / 1000;
    await sample();
    const db = samples.map((x) => x.dbMB);
    // The second half's peak against the first half's: bounded means it does not keep growing.
    const half = samples.slice(Math.floor(samples.length / 2));
    process.stdout.write(
      JSON.stringify({
        cycles: done,
        live,
        inFlight: width,
        seconds: Math.round(wallS),
        cyclesPerSecond: Math.round(done / wallS),
        finalRevision: samples[samples.length - 1].rev,
        dbMB: {
          first: +db[0].toFixed(1),
          max: +Math.max(...db).toFixed(1),
          lastHalfMax: +Math.max(...half.map((x) => x.dbMB)).toFixed(1),
          final: +db[db.length - 1].toFixed(1),
        },
      }) + '\n',
    );
  } finally {
    status.close();
    await kv.close();
    await etcd.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
