/**
 * Metrics and health of a real `calico node` (CALICO_METRICS_ADDR on loopback inside its
 * namespace, real etcd, BIRD and firewall): the request counter and the IPAM gauges follow plugin
 * requests, /healthz and /readyz answer, /readyz names etcd when it is stopped, `calico node
 * health` exits accordingly, and an address that cannot be bound stops the node at start.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { CLI, startCalico, type CalicoProcess } from '../harness/calico';
import { giveUplink } from '../harness/sandbox';

const scope = netnsScope();
let host: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
const port = 20000 + Math.floor(Math.random() * 40000);
const base = `http://127.0.0.1:${port}`;

/** GETs a URL from inside the namespace (its loopback is not the test's). */
async function get(url: string): Promise<{ status: number; text: string }> {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, text: await r.text() })), (e) => { console.error(String(e)); process.exit(1); })`;
  return JSON.parse((await host.exec(process.execPath, ['-e', script], { timeoutMs: 30_000 })).stdout) as { status: number; text: string };
}

/** One sample's value from Prometheus text; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && line.split(' ')[0] !== name) continue;
    const [series, value] = line.split(' ');
    if (series.slice(0, series.indexOf('{') < 0 ? undefined : series.indexOf('{')) !== name) continue;
    if (want.every((w) => series.includes(w))) return Number(value);
  }
  return undefined;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not happen within ${ms} ms (${String(last)}):\n${node.logs().slice(-4000)}`);
}

const readyz = () => until('/readyz 200', async () => ((await get(`${base}/readyz`)).status === 200 ? true : undefined));

before(async () => {
  host = await scope.create('mh');
  const router = await scope.create('mr');
  await giveUplink(host, router);
  etcd = await startEtcd(host);
  node = await startCalico(host, { name: 'metrics-it', etcd: etcd.endpoint, env: { CALICO_METRICS_ADDR: `127.0.0.1:${port}` } });
  await node.ready();
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
});

test('/healthz is 200 and /readyz turns 200 once etcd, the firewall and BIRD are up; calico node health then exits 0', async () => {
  assert.equal((await get(`${base}/healthz`)).status, 200);
  await readyz();
  const health = await node.cli(['node', 'health'], { allowFail: true });
  assert.equal(health.code, 0, health.stderr);
  assert.equal(health.stdout.trim(), 'ready');
});

test('plugin requests move the request counter, and allocations and releases move the IPAM gauges', async () => {
  const before = (await get(`${base}/metrics`)).text;
  const okBefore = sample(before, 'calico_plugin_requests_total', { method: 'IpamDriver.RequestAddress', outcome: 'ok' }) ?? 0;
  const d = node.docker;
  const { pool } = await d.createIPv4Network();
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: pool, Address: '', Options: null })).Address as string;
  await d.ok('ipam', 'RequestAddress', { PoolID: pool, Address: '', Options: null });
  const bad = await d.ipam('RequestAddress', { PoolID: pool, Address: 'not-an-address', Options: null });
  assert.equal(bad.status, 400);

  const text = (await get(`${base}/metrics`)).text;
  assert.equal(sample(text, 'calico_plugin_requests_total', { method: 'IpamDriver.RequestAddress', outcome: 'ok' }), okBefore + 2);
  assert.equal(sample(text, 'calico_plugin_requests_total', { method: 'IpamDriver.RequestAddress', outcome: 'bad-request' }), 1);
  assert.ok((sample(text, 'calico_plugin_request_duration_seconds_count', { method: 'IpamDriver.RequestAddress' }) ?? 0) >= 3);
  assert.ok((sample(text, 'calico_etcd_requests_total', { op: 'txn' }) ?? 0) > 0, 'etcd transactions are counted');
  assert.ok((sample(text, 'calico_firewall_applies_total', { outcome: 'ok' }) ?? 0) > 0, 'firewall applies are counted');
  assert.ok(sample(text, 'process_cpu_user_seconds_total', {}) !== undefined, 'process metrics are there');
  // The summary is reused for a few seconds, so the first scrape may predate the allocations.
  await until('2 addresses in use', async () => {
    const t = (await get(`${base}/metrics`)).text;
    return sample(t, 'calico_ipam_addresses_in_use', { pool: '10.65.0.0/16', host: 'metrics-it' }) === 2 ? t : undefined;
  }).then((t) => {
    assert.equal(sample(t, 'calico_ipam_blocks', { pool: '10.65.0.0/16', host: 'metrics-it' }), 1);
    assert.equal(sample(t, 'calico_ipam_addresses_free', { pool: '10.65.0.0/16', host: 'metrics-it' }), 62);
    assert.equal(sample(t, 'calico_ipam_pool_addresses', { pool: '10.65.0.0/16' }), 65536);
    assert.equal(sample(t, 'calico_metrics_source_up', { source: 'bgp' }), 1);
  });
  await d.ok('ipam', 'ReleaseAddress', { PoolID: pool, Address: a.split('/')[0] });
  await until('1 address in use after the release', async () => {
    const t = (await get(`${base}/metrics`)).text;
    return sample(t, 'calico_ipam_addresses_in_use', { pool: '10.65.0.0/16', host: 'metrics-it' }) === 1 ? true : undefined;
  });
});

test('with etcd stopped /readyz is 503 naming etcd and calico node health exits 1 saying so; both recover when etcd is back', async () => {
  await etcd.stop();
  try {
    const r = await until('/readyz 503', async () => {
      const x = await get(`${base}/readyz`);
      return x.status === 503 ? x : undefined;
    });
    assert.match(r.text, /^not ready: .*etcd does not answer/);
    assert.equal((await get(`${base}/healthz`)).status, 200, 'alive while etcd is away');
    const health = await node.cli(['node', 'health'], { allowFail: true });
    assert.equal(health.code, 1);
    assert.match(health.stdout, /^not ready: .*etcd/);
    assert.equal(health.stdout.trim().split('\n').length, 1);
  } finally {
    await etcd.start();
  }
  await readyz();
});

test('calico node health exits 2 when no node runs for its data directory', async () => {
  const r = await host.exec('env', ['CALICO_DATA_DIR=/nonexistent-calico-dir', process.execPath, CLI, 'node', 'health']).then(
    () => ({ code: 0, stderr: '' }),
    (err: Error & { cause?: { code?: number; stderr?: string } }) => ({ code: err.cause?.code, stderr: err.cause?.stderr ?? err.message }),
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /calico node is not running/);
});

test('a metrics address in use or malformed stops calico node at start, naming CALICO_METRICS_ADDR', async () => {
  for (const addr of [`127.0.0.1:${port}`, 'not-an-address']) {
    await assert.rejects(startCalico(host, { name: 'metrics-bad', etcd: etcd.endpoint, env: { CALICO_METRICS_ADDR: addr } }), (err: Error) => {
      assert.match(err.message, /calico node exited \(1\)/);
      assert.match(err.message, /CALICO_METRICS_ADDR/);
      return true;
    });
  }
});
