/**
 * bench:policy's writes to etcd, run inside the host namespace (where etcd listens):
 *   label ETCD FILE   sets labels on endpoints, as the Docker watcher does from container labels
 *                     (FILE: [{ host, id, labels }]); there is no Docker in the benchmark
 *   apply ETCD FILE   writes the policies in FILE with applyPolicies (one transaction per 120,
 *                     etcd's default limit being 128 operations); prints {t0, t1}: wall-clock ms
 *                     just before the first write and after the last was acknowledged
 */
import fs from 'node:fs';
import { EtcdKV } from '../lib/datastore/etcd';
import { keys } from '../lib/datastore/keys';
import type { EndpointRecord } from '../lib/datastore/records';
import { applyPolicies, type PolicyRecord } from '../policy/model';

async function main() {
  const [mode, endpoint, file] = process.argv.slice(2);
  const kv = new EtcdKV({ endpoints: [endpoint], callTimeoutMs: 10_000 });
  try {
    const input = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (mode === 'label') {
      for (const { host, id, labels } of input as Array<{ host: string; id: string; labels: Record<string, string> }>) {
        const key = keys.endpoint(host, id);
        const e = await kv.get(key);
        if (!e) throw new Error(`no endpoint ${key}`);
        const rec = { ...(JSON.parse(e.value) as EndpointRecord), labels };
        if (!(await kv.txn([{ key, mod: e.mod }], [{ put: key, value: JSON.stringify(rec) }]))) throw new Error(`endpoint ${key} changed under us`);
      }
      process.stdout.write(JSON.stringify({ labelled: input.length }) + '\n');
    } else if (mode === 'apply') {
      const policies = input as PolicyRecord[];
      await kv.get('meta/warmup'); // connect before the clock starts
      const t0 = Date.now();
      for (let i = 0; i < policies.length; i += 120) await applyPolicies(kv, policies.slice(i, i + 120));
      process.stdout.write(JSON.stringify({ t0, t1: Date.now() }) + '\n');
    } else throw new Error(`unknown mode ${mode}`);
  } finally {
    await kv.close();
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
