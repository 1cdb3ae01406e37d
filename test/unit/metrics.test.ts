/** The metrics registry (lib/metrics.ts), the IPAM summary behind its gauges (ipam/summary.ts) and BGP states. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { summariseIpam, throttled } from '../../ipam/summary';
import { ConflictError } from '../../lib/errors';
import { parseCidr } from '../../lib/ip';
import { silentLogger } from '../../lib/log';
import { Metrics } from '../../lib/metrics';
import { createPluginApp } from '../../lib/server';
import { sessionState } from '../../routing/bird';
import type { BlockRecord, Owner } from '../../lib/datastore/records';

/** The value of one sample in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '')
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter(Boolean)
      .sort();
    if (want.every((w) => got.includes(w)) && got.length === want.length) return Number(m[3]);
  }
  return undefined;
}

const owner = (host: string, handle: string): Owner => ({ kind: 'pending', host, pool: 'p', handle, since: '2026-01-01T00:00:00Z' });
function block(cidr: string, affinity: string | null, held: Array<[number, string]>): { rec: BlockRecord; net: ReturnType<typeof parseCidr> } {
  const net = parseCidr(cidr);
  const size = 2 ** (32 - net.prefix);
  const allocations: BlockRecord['allocations'] = {};
  for (const [o, host] of held) allocations[o] = owner(host, `h${o}`);
  return { net, rec: { cidr, affinity, allocations, unallocated: [...Array(size).keys()].filter((o) => !(o in allocations)) } };
}

describe('plugin request metrics', () => {
  test('count requests by method and outcome, the outcome being the error class', async () => {
    const m = new Metrics({ processMetrics: false });
    const app = createPluginApp(
      {
        '/IpamDriver.RequestAddress': { hasBody: false, handler: () => ({ Address: '10.0.0.1/32' }) },
        '/IpamDriver.ReleaseAddress': { hasBody: false, handler: () => Promise.reject(new ConflictError('held by someone else')) },
      },
      silentLogger(),
      m,
    );
    await request(app).post('/IpamDriver.RequestAddress');
    await request(app).post('/IpamDriver.RequestAddress');
    await request(app).post('/IpamDriver.ReleaseAddress');
    await request(app).post('/NoSuch.Method');
    const text = await m.text();
    assert.equal(sample(text, 'calico_plugin_requests_total', { method: 'IpamDriver.RequestAddress', outcome: 'ok' }), 2);
    assert.equal(sample(text, 'calico_plugin_requests_total', { method: 'IpamDriver.ReleaseAddress', outcome: 'conflict' }), 1);
    assert.equal(sample(text, 'calico_plugin_requests_total', { method: 'unknown', outcome: 'not-found' }), 1);
    assert.equal(sample(text, 'calico_plugin_request_duration_seconds_count', { method: 'IpamDriver.RequestAddress' }), 2);
  });

  test('a server without metrics still answers (metrics off costs nothing)', async () => {
    const app = createPluginApp({ '/Plugin.Activate': { hasBody: false, handler: () => ({ Implements: [] }) } }, silentLogger());
    assert.equal((await request(app).post('/Plugin.Activate')).status, 200);
  });
});

describe('scrape-time gauges', () => {
  test('IPAM, BGP and firewall gauges come from their sources at scrape time', async () => {
    const m = new Metrics({ processMetrics: false });
    m.sources.ipam = async () => ({
      rows: [{ pool: '10.0.0.0/16', host: 'h1', inUse: 3, borrowed: 1, free: 61, blocks: 1 }],
      poolSizes: [{ pool: '10.0.0.0/16', size: 65536 }],
    });
    m.sources.bgpSessions = async () => [{ state: 'Established' }, { state: 'Established' }, { state: 'Active' }];
    m.sources.firewall = () => ({ backend: 'nftables', rules: 7, sets: 2, setMembers: 5, policies: 1, localEndpoints: 3 });
    const text = await m.text();
    assert.equal(sample(text, 'calico_ipam_addresses_in_use', { pool: '10.0.0.0/16', host: 'h1' }), 3);
    assert.equal(sample(text, 'calico_ipam_addresses_borrowed', { pool: '10.0.0.0/16', host: 'h1' }), 1);
    assert.equal(sample(text, 'calico_ipam_addresses_free', { pool: '10.0.0.0/16', host: 'h1' }), 61);
    assert.equal(sample(text, 'calico_ipam_blocks', { pool: '10.0.0.0/16', host: 'h1' }), 1);
    assert.equal(sample(text, 'calico_ipam_pool_addresses', { pool: '10.0.0.0/16' }), 65536);
    assert.equal(sample(text, 'calico_bgp_sessions', { state: 'Established' }), 2);
    assert.equal(sample(text, 'calico_bgp_sessions', { state: 'Active' }), 1);
    assert.equal(sample(text, 'calico_firewall_rules', { backend: 'nftables' }), 7);
    assert.equal(sample(text, 'calico_metrics_source_up', { source: 'ipam' }), 1);
  });

  test('a source that fails is reported down and its gauges are empty, the rest still scraped', async () => {
    const m = new Metrics({ processMetrics: false });
    m.sources.ipam = () => Promise.reject(new Error('etcd is down'));
    m.sources.bgpSessions = async () => [{ state: 'Established' }];
    const text = await m.text();
    assert.equal(sample(text, 'calico_metrics_source_up', { source: 'ipam' }), 0);
    assert.equal(sample(text, 'calico_ipam_blocks', { pool: '10.0.0.0/16', host: 'h1' }), undefined);
    assert.equal(sample(text, 'calico_bgp_sessions', { state: 'Established' }), 1);
  });

  test('one scrape reads the IPAM source once for all its gauges', async () => {
    const m = new Metrics({ processMetrics: false });
    let reads = 0;
    m.sources.ipam = async () => (reads++, { rows: [], poolSizes: [] });
    await m.text();
    assert.equal(reads, 1);
  });
});

describe('summariseIpam', () => {
  const pools = [{ cidr: '10.0.0.0/16', net: parseCidr('10.0.0.0/16') }];

  test('counts in-use, borrowed and free addresses and blocks per pool and host', () => {
    const s = summariseIpam(
      [
        block('10.0.0.0/30', 'h1', [
          [0, 'h1'],
          [1, 'h2'],
        ]),
        block('10.0.0.4/30', 'h2', [[0, 'h2']]),
        block('10.0.0.8/30', null, [[3, 'h1']]),
        block('10.9.0.0/30', 'h1', []),
      ],
      pools,
    );
    assert.deepEqual(s.rows, [
      { pool: '10.0.0.0/16', host: '', inUse: 0, borrowed: 0, free: 3, blocks: 1 },
      { pool: '10.0.0.0/16', host: 'h1', inUse: 1, borrowed: 1, free: 2, blocks: 1 },
      { pool: '10.0.0.0/16', host: 'h2', inUse: 1, borrowed: 1, free: 3, blocks: 1 },
      { pool: 'none', host: 'h1', inUse: 0, borrowed: 0, free: 4, blocks: 1 },
    ]);
    assert.deepEqual(s.poolSizes, [{ pool: '10.0.0.0/16', size: 65536 }]);
  });

  test('throttled reuses a summary read within the interval instead of listing again', async () => {
    let reads = 0;
    const read = throttled(async () => (reads++, { rows: [], poolSizes: [] }), 60_000);
    await Promise.all([read(), read()]);
    await read();
    assert.equal(reads, 1);
    const always = throttled(async () => (reads++, { rows: [], poolSizes: [] }), 0);
    await always();
    await always();
    assert.equal(reads, 3);
  });
});

describe('sessionState', () => {
  test('names the BGP state of a BIRD protocol row', () => {
    assert.equal(sessionState({ state: 'up', info: 'Established' }), 'Established');
    assert.equal(sessionState({ state: 'start', info: 'Active        Socket: Connection refused' }), 'Active');
    assert.equal(sessionState({ state: 'start', info: 'Connect' }), 'Connect');
    assert.equal(sessionState({ state: 'start', info: '' }), 'Idle');
    assert.equal(sessionState({ state: 'down', info: '' }), 'Down');
  });
});
