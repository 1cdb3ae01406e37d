/**
 * The incremental policy calculator's per-event cost as the cluster grows, side by side with
 * computing the host's desired state from scratch (computeDesired, what a re-render per event
 * costs). Pure CPU, no kernel: `node dist/bench/policy-calc.js` (BENCH_SIZES=1000,10000 to
 * choose cluster sizes; default 1000, 10000, 50000). The local host keeps 200 endpoints at every
 * size, so only the rest of the cluster grows; ~100 policies over `app`/`role`/`tier` labels.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { EndpointRecord, NetworkRecord, PolicyRecord, RuleRecord } from '../lib/datastore/records';
import { PolicyCalculator, computeDesired } from '../policy/calc';

const HOST = 'local';
const LOCAL = 200;
const PER_HOST = 200;
const NETWORKS = ['frontend', 'backend', 'data', 'ops', 'misc'];
const since = '2024-01-01T00:00:00.000Z';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

const hostOf = (i: number) => (i < LOCAL ? HOST : `host${Math.floor((i - LOCAL) / PER_HOST)}`);
const netOf = (i: number) => `net${i % NETWORKS.length}`;

function endpoint(i: number, host = hostOf(i)): EndpointRecord {
  const id = `${i.toString(16).padStart(8, '0')}${'e'.repeat(56)}`;
  return {
    id,
    host,
    network: netOf(i),
    ifName: `cali${id.slice(0, 11)}`,
    mac: '02:00:00:00:00:01',
    ipv4: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`],
    ipv6: i % 4 === 0 ? [`fd00::${i.toString(16)}/128`] : [],
    labels: { app: `app${i % 10}`, role: `r${i % 50}`, ...(i % 3 === 0 ? { tier: `t${i % 9}` } : {}) },
    createdAt: since,
  };
}

function networks(hosts: string[]): NetworkRecord[] {
  return hosts.flatMap((host) =>
    NETWORKS.map((name, k) => ({ id: `net${k}`, host, name, ipv4Pools: [], ipv6Pools: [], ipv6: true, options: {}, createdAt: since })),
  );
}

/** Policy k: a selector over app/role/tier, 2-4 rules naming other selectors, nets and ports. */
function policy(k: number, variant = 0): PolicyRecord {
  const selectors = [`app == 'app${k % 10}'`, `role in {'r${k % 50}','r${(k + 7) % 50}'}`, `has(tier) && app == 'app${k % 10}'`, "role != 'r0'"];
  const rules: RuleRecord[] = [
    { action: 'allow', protocol: 'tcp', source: { selector: `role == 'r${(k * 3) % 50}'` }, destination: { ports: [8000 + (k % 100) + variant] } },
    { action: 'allow', protocol: 'tcp', source: { selector: `app == 'app${(k + 1) % 10}' && has(tier)` }, destination: { ports: ['9000:9100'] } },
    { action: 'deny', protocol: 'udp', source: { nets: [`172.${16 + (k % 16)}.0.0/16`, 'fd00:99::/64'] } },
  ];
  if (k % 5 === 0) rules.push({ action: 'allow', source: { network: NETWORKS[k % NETWORKS.length], notSelector: `role == 'r${k % 50}'` } });
  return {
    name: `policy-${k}`,
    order: k % 7,
    selector: selectors[k % selectors.length],
    types: k % 4 === 0 ? ['ingress', 'egress'] : ['ingress'],
    ingress: rules,
    egress: k % 4 === 0 ? rules : [],
  };
}

const us = (ns: bigint) => Number(ns) / 1000;

/** Mean, median and p99 of fn's cost in µs over n runs (after a few warm-up runs and a full GC); the median is the figure GC pauses do not move. */
function measure(n: number, fn: (i: number) => void): { mean: number; p50: number; p99: number } {
  for (let i = 0; i < 5; i++) fn(-1 - i);
  gc();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    fn(i);
    t.push(us(process.hrtime.bigint() - s));
  }
  t.sort((a, b) => a - b);
  return { mean: t.reduce((a, b) => a + b, 0) / n, p50: t[Math.floor(n / 2)], p99: t[Math.min(n - 1, Math.floor(n * 0.99))] };
}

function run(size: number): Record<string, string> {
  const eps = Array.from({ length: size }, (_, i) => endpoint(i));
  const hosts = [...new Set(eps.map((e) => e.host))];
  const nets = networks([...hosts, 'newhost']);
  const pols = Array.from({ length: 100 }, (_, k) => policy(k));

  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const calc = new PolicyCalculator({ host: HOST, endpointToHost: 'drop', onBad: (k, e) => console.error(k, e.message) });
  let s = process.hrtime.bigint();
  for (const n of nets) calc.upsertNetwork(`networks/${n.host}/${n.id}`, n);
  for (const p of pols) calc.upsertPolicy(`policies/${p.name}`, p);
  for (const e of eps) calc.upsertEndpoint(`endpoints/${e.host}/${e.id}`, e);
  calc.takeDelta();
  const load = us(process.hrtime.bigint() - s) / 1000;
  gc();
  const heap = (process.memoryUsage().heapUsed - heap0) / 2 ** 20;

  const key = (e: EndpointRecord) => `endpoints/${e.host}/${e.id}`;
  // New endpoints get indices past the cluster, so their labels follow the same distribution.
  const localAdd = measure(200, (i) => {
    const e = endpoint(size + 1000 + i + 10, HOST);
    calc.upsertEndpoint(key(e), e);
    calc.takeDelta();
  });
  const remoteAdd = measure(500, (i) => {
    const e = endpoint(size + 5000 + i + 10, 'newhost');
    calc.upsertEndpoint(key(e), e);
    calc.takeDelta();
  });
  const policyRules = measure(100, (i) => {
    const p = policy(Math.abs(i) % 100, 1 + (i & 1));
    calc.upsertPolicy(`policies/${p.name}`, p);
    calc.takeDelta();
  });
  const policySelector = measure(100, (i) => {
    const k = Math.abs(i) % 100;
    const p = { ...policy(k), selector: i & 1 ? `role == 'r${(k + 13) % 50}'` : policy(k).selector };
    calc.upsertPolicy(`policies/${p.name}`, p);
    calc.takeDelta();
  });
  const st = calc.stats();

  const refRuns = size >= 50_000 ? 1 : 3;
  s = process.hrtime.bigint();
  for (let r = 0; r < refRuns; r++) computeDesired({ host: HOST, endpointToHost: 'drop', endpoints: eps, networks: nets, policies: pols, profiles: [] });
  const scratch = us(process.hrtime.bigint() - s) / refRuns;

  const f = (x: { mean: number; p50: number; p99: number }) => `${x.mean.toFixed(0)} / ${x.p50.toFixed(0)} / ${x.p99.toFixed(0)}`;
  return {
    endpoints: String(size),
    'local ep add µs': f(localAdd),
    'remote ep add µs': f(remoteAdd),
    'policy rules µs': f(policyRules),
    'policy selector µs': f(policySelector),
    'from scratch µs': scratch.toFixed(0),
    'initial load ms': load.toFixed(0),
    'heap MB': heap.toFixed(1),
    sets: String(st.sets),
  };
}

const sizes = (process.env.BENCH_SIZES ?? '1000,10000,50000').split(',').map(Number);
const rows = sizes.map(run);
console.table(rows);
console.log(
  'Per event: the change + takeDelta, µs mean / p50 / p99. "from scratch" is computeDesired over the same records (the reference a re-render per event costs).',
  '"policy rules": ports of a rule changed; "policy selector": the policy now selects another label value.',
  `Local host: ${LOCAL} endpoints at every size; 100 policies.`,
);
