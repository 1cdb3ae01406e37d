/**
 * `npm run bench:scale` (root): container starts on a host as the cluster grows, in the product's
 * default configuration (firewall on, BIRD on) on two hosts of the testbed fabric, with a third
 * host running CALICO_POLICY=off beside them as the reference measured in the same run.
 *
 * Live endpoints are made on host B through its plugin sockets exactly as Docker drives them
 * (RequestAddress, CreateEndpoint, Join: a veth and a route each), in steps up to each level of
 * BENCH_LEVELS (default 0,2000,10000). At each level host A (and the reference host C) set up
 * BENCH_SETUPS endpoints (default 400) with 8 in flight and tear them down again; reported:
 * setups/s, p50/p99, `calico node` CPU per setup, RSS of A's `calico node`, and how long a
 * policy change takes from its write to etcd until A's kernel holds it. 20 label
 * policies (100 rules) select the endpoints throughout. Prints JSON.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../test/harness/netns';
import { startFabric } from '../test/harness/fabric';
import { startCalico, type CalicoProcess } from '../test/harness/calico';
import { drive, percentile, processCpuMs, rssMB, summarise } from './stats';

const LEVELS = (process.env.BENCH_LEVELS ?? '0,2000,10000').split(',').map(Number);
const SETUPS = Number(process.env.BENCH_SETUPS ?? 400);
const hex = () => randomBytes(32).toString('hex');
const r2 = (x: number) => Math.round(x * 100) / 100;

interface Host {
  name: string;
  ns: Netns;
  node: CalicoProcess;
  ids: { pool: string; nid: string };
}

async function setup(h: Host): Promise<{ eid: string; ip: string }> {
  const d = h.node.docker;
  const eid = hex();
  const a = await d.ok('ipam', 'RequestAddress', { PoolID: h.ids.pool, Address: '', Options: null });
  await d.ok('net', 'CreateEndpoint', {
    NetworkID: h.ids.nid,
    EndpointID: eid,
    Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' },
    Options: {},
  });
  await d.ok('net', 'Join', { NetworkID: h.ids.nid, EndpointID: eid, SandboxKey: '', Options: {} });
  return { eid, ip: a.Address.split('/')[0] };
}

async function teardown(h: Host, ep: { eid: string; ip: string }): Promise<void> {
  const d = h.node.docker;
  await d.ok('net', 'Leave', { NetworkID: h.ids.nid, EndpointID: ep.eid });
  await d.ok('net', 'DeleteEndpoint', { NetworkID: h.ids.nid, EndpointID: ep.eid });
  await d.ok('ipam', 'ReleaseAddress', { PoolID: h.ids.pool, Address: ep.ip });
}

/** SETUPS setups with 8 in flight, then their teardown (not timed): the live count stays put. */
async function measureStarts(h: Host) {
  const eps: Array<{ eid: string; ip: string }> = [];
  const cpu0 = processCpuMs(h.node.pid());
  const run = await drive(SETUPS, 8, async () => void eps.push(await setup(h)));
  const cpuMs = processCpuMs(h.node.pid()) - cpu0;
  await drive(eps.length, 8, async (i) => teardown(h, eps[i]));
  const s = summarise(run.lat, run.wallMs);
  return { setupsPerSec: s.opsPerSec, p50Ms: s.p50Ms, p99Ms: s.p99Ms, cpuMsPerSetup: r2(cpuMs / SETUPS) };
}

/**
 * From the policy's write to etcd (bench/policy-etcd.ts, in A's namespace, as `calico policy
 * apply` writes it) until A's agent logs "firewall applied" for it: it logs that line once the
 * backend's transaction returned, so the rules are in the kernel then.
 */
async function policyLatency(a: Host, etcd: string, tmp: string, samples = 10): Promise<{ p50Ms: number; p99Ms: number; agentApplyP50Ms: number }> {
  const lat: number[] = [];
  const apply: number[] = [];
  const file = path.join(tmp, 'latency.json');
  for (let i = 0; i < samples; i++) {
    const port = 40000 + i;
    const rec = {
      name: 'bench-latency',
      order: 1,
      selector: 'all()',
      types: ['ingress'],
      ingress: [{ action: 'allow', protocol: 'tcp', destination: { ports: [port] } }],
      egress: [],
    };
    fs.writeFileSync(file, JSON.stringify([rec]));
    const mark = a.node.logs().length;
    const w = JSON.parse(
      (await a.ns.exec(process.execPath, [path.join(__dirname, 'policy-etcd.js'), 'apply', etcd, file], { timeoutMs: 60_000 })).stdout.trim(),
    ) as {
      t0: number;
    };
    const deadline = Date.now() + 10_000;
    for (;;) {
      const line = a.node
        .logs()
        .slice(mark)
        .split('\n')
        .find((l) => l.includes('"firewall applied"') && l.includes('"how":"delta"'));
      if (line) {
        const l = JSON.parse(line) as { timestamp: string; ms: number };
        lat.push(Date.parse(l.timestamp) - w.t0);
        apply.push(l.ms);
        break;
      }
      if (Date.now() > deadline) throw new Error('a policy change was not enforced within 10 s');
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
  return { p50Ms: r2(percentile(sorted(lat), 50)), p99Ms: r2(percentile(sorted(lat), 99)), agentApplyP50Ms: r2(percentile(sorted(apply), 50)) };
}

function labelPolicies(): string {
  const docs: string[] = [];
  for (let p = 0; p < 20; p++) {
    const rules = Array.from(
      { length: 5 },
      (_, k) => `  - action: allow\n    protocol: tcp\n    source:\n      selector: has(app) || all()\n    destination:\n      ports: [${2000 + p * 10 + k}]`,
    );
    docs.push(`kind: Policy\nname: bench-${p}\norder: ${p}\nselector: all()\ningress:\n${rules.join('\n')}\n  - action: pass\n`);
  }
  return docs.join('---\n');
}

async function main() {
  const scope = netnsScope();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-bench-scale-'));
  const fabric = await startFabric(scope);
  const hosts: Host[] = [];
  try {
    for (const [i, name, policy] of [
      [1, 'fsa', 'on'],
      [2, 'fsb', 'on'],
      [3, 'fsc', 'off'],
    ] as const) {
      const { ns, ip } = await fabric.addHost(name, i);
      const node = await startCalico(ns, {
        name,
        etcd: fabric.etcd.endpoint,
        // A logs at info: the policy latency is read from its "firewall applied" line.
        env: {
          CALICO_IP: ip,
          CALICO_LOG_LEVEL: name === 'fsa' ? 'info' : 'warn',
          CALICO_IPV4POOL_CIDR: '10.64.0.0/12',
          CALICO_MTU: '1500',
          CALICO_POLICY: policy,
        },
      });
      await node.ready();
      hosts.push({ name, ns, node, ids: await node.docker.createIPv4Network() });
    }
    const [a, b, c] = hosts;
    fs.writeFileSync(path.join(tmp, 'policies.yaml'), labelPolicies());
    await a.node.cli(['policy', 'apply', '-f', path.join(tmp, 'policies.yaml')]);
    // A container that stays on A throughout: a policy is programmed only where it selects one.
    await setup(a);
    const levels = [];
    let live = 0;
    for (const level of LEVELS) {
      const grow = await drive(Math.max(0, level - live), 8, async () => void (await setup(b)));
      live = Math.max(live, level);
      const on = await measureStarts(a);
      const off = await measureStarts(c);
      levels.push({
        liveEndpoints: live,
        firewallOn: on,
        firewallOff: off,
        policyApplyToEnforced: await policyLatency(a, fabric.etcd.endpoint, tmp),
        calicoNodeRssMb: rssMB(a.node.pid()),
        growSetupsPerSec: grow.lat.length ? r2((grow.lat.length / grow.wallMs) * 1000) : undefined,
      });
      process.stderr.write(`level ${live}: ${JSON.stringify(levels[levels.length - 1])}\n`);
    }
    const base = levels[0].firewallOn.setupsPerSec;
    const report = {
      setupsPerLevel: SETUPS,
      levels,
      targets: {
        setupsPerSecAtZero: { target: '>= 150', measured: base, met: base >= 150 },
        ...Object.fromEntries(
          levels
            .slice(1)
            .map((l) => [
              `at${l.liveEndpoints}VsZero`,
              { target: '>= 0.8', measured: r2(l.firewallOn.setupsPerSec / base), met: l.firewallOn.setupsPerSec / base >= 0.8 },
            ]),
        ),
        p99Ms: { target: '< 100', measured: Math.max(...levels.map((l) => l.firewallOn.p99Ms)), met: levels.every((l) => l.firewallOn.p99Ms < 100) },
        policyApplyToEnforcedP99Ms: {
          target: '< 50',
          measured: levels[levels.length - 1].policyApplyToEnforced.p99Ms,
          met: levels[levels.length - 1].policyApplyToEnforced.p99Ms < 50,
        },
        rssMbAtLast: { target: '< 150', measured: levels[levels.length - 1].calicoNodeRssMb, met: levels[levels.length - 1].calicoNodeRssMb < 150 },
      },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const h of hosts) await h.node.destroy();
    await fabric.etcd.destroy();
    await scope.destroyAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(String((err as Error)?.stack ?? err) + '\n');
  process.exit(1);
});
