/**
 * The floor for the endpoint benchmark, run inside the benchmark's namespace: the same kernel
 * work a Join and a Leave do (veth pair, host-side sysctls, /32 route; delete), called directly,
 * plus one etcd transaction per endpoint. Prints JSON on stdout: latencies and CPU time per
 * endpoint (this process, and etcd's when its pid is given).
 */
import { randomBytes } from 'node:crypto';
import { createLinuxDataplane } from '../lib/dataplane/linux';
import { EtcdKV } from '../lib/datastore/etcd';
import { drive, ownCpuMs, processCpuMs } from './stats';

async function main() {
  const [endpoint, nText, widthText, etcdPidText] = process.argv.slice(2);
  const n = Number(nText);
  const width = Number(widthText);
  const etcdPid = etcdPidText ? Number(etcdPidText) : undefined;
  const dp = createLinuxDataplane();
  const kv = new EtcdKV({ endpoints: [endpoint] });
  const ids = Array.from({ length: n }, () => randomBytes(32).toString('hex'));
  await kv.put('bench/warmup', '1');
  // Untimed warm-up (JIT, the netlink socket, etcd's connection): each round is a new process.
  for (let i = 0; i < 2 * width; i++) {
    const id = `warm${i}${randomBytes(4).toString('hex')}`;
    await dp.wireEndpoint({
      hostIfName: `cali${id.slice(0, 11)}`,
      tempIfName: `tmp${id.slice(0, 11)}`,
      mtu: 1500,
      containerMac: '02:00:00:00:00:01',
      ipv4: [`10.78.0.${i}`],
      ipv6: [],
    });
    await kv.txn([{ key: `bench/${id}`, absent: true }], [{ put: `bench/${id}`, value: '{}' }]);
    await dp.unwireEndpoint(`cali${id.slice(0, 11)}`);
    await kv.del(`bench/${id}`);
  }
  const cpu0 = { own: ownCpuMs(), etcd: processCpuMs(etcdPid) };
  const setup = await drive(n, width, async (i) => {
    const id = ids[i];
    await dp.wireEndpoint({
      hostIfName: `cali${id.slice(0, 11)}`,
      tempIfName: `tmp${id.slice(0, 11)}`,
      mtu: 1500,
      containerMac: '02:00:00:00:00:01',
      ipv4: [`10.77.${i >> 8}.${i & 255}`],
      ipv6: [],
    });
    await kv.txn([{ key: `bench/${id}`, absent: true }], [{ put: `bench/${id}`, value: JSON.stringify({ id, ip: i }) }]);
  });
  const cpu = { own: ownCpuMs() - cpu0.own, etcd: processCpuMs(etcdPid) - cpu0.etcd };
  const teardown = await drive(n, width, async (i) => {
    await dp.unwireEndpoint(`cali${ids[i].slice(0, 11)}`);
    await kv.del(`bench/${ids[i]}`);
  });
  await kv.close();
  dp.close();
  process.stdout.write(JSON.stringify({ setup, teardown, setupCpuMs: cpu }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
