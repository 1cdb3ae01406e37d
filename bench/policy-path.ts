/**
 * bench:policy's figures that need a real calico node: how long from a policy write to etcd until
 * the agent has it in the kernel, and what the rules cost on the packet path (TCP connection
 * setup between two containers on one host, policy on versus off).
 *
 * One host namespace runs etcd and `calico node` (BIRD off; a Docker socket that does not exist,
 * so nothing learns labels from a real Docker: bench/policy-etcd.ts sets them as the Docker
 * watcher would). 100 filler endpoints are created through the plugin sockets (not plugged
 * anywhere), then a client and a server endpoint whose IDs start with ff, so their interfaces
 * sort last in the dispatch chains; those two are moved into sandbox namespaces. Addresses come
 * from 10.66.0.0/16; the host's default route leads to a router namespace made here and no further.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../test/harness/netns';
import { startEtcd, type TestEtcd } from '../test/harness/etcd';
import { startCalico, type CalicoProcess } from '../test/harness/calico';
import { giveUplink, plugIntoSandbox } from '../test/harness/sandbox';
import type { PolicyRecord } from '../policy/model';
import { BLOCKED_PORT, MEASURED_PORT, changeOneRule, fillerLabels, makePolicies } from './policy-gen';
import { drive, percentile } from './stats';

const FILLERS = 100;
const RULES = 1000;
const hex = () => randomBytes(32).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const js = (name: string) => path.join(__dirname, `${name}.js`);

interface TcpRun {
  connections: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Takes every `cal-` rule, chain and ipset out of the namespace, the jumps from FORWARD and INPUT first. */
async function clearFirewall(ns: Netns, tmp: string): Promise<void> {
  for (const t of ['iptables', 'ip6tables']) {
    for (const [from, to] of [
      ['FORWARD', 'cal-FORWARD'],
      ['INPUT', 'cal-INPUT'],
    ])
      await ns.exec(t, ['-w', '-D', from, '-j', to]).catch(() => undefined);
    const chains = (await ns.exec(`${t}-save`, ['-t', 'filter'])).stdout
      .split('\n')
      .filter((l) => l.startsWith(':cal-'))
      .map((l) => l.slice(1).split(' ')[0]);
    const file = path.join(tmp, `${ns.name}-${t}.rules`);
    // Declaring a chain with --noflush flushes it, so the deletes cannot trip over references.
    fs.writeFileSync(file, ['*filter', ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n'));
    await ns.exec(`${t}-restore`, ['-w', '--noflush', file]);
  }
  const sets = (await ns.exec('ipset', ['list', '-n'])).stdout.split('\n').filter((s) => /^cal[46][sn]-/.test(s.trim()));
  const file = path.join(tmp, `${ns.name}.ipset`);
  fs.writeFileSync(file, sets.map((s) => `destroy ${s.trim()}`).join('\n') + '\n');
  if (sets.length) await ns.exec('ipset', ['restore', '-file', file]);
}

export async function measurePath(o: { seconds: number; reps: number; tmp: string }) {
  const scope = netnsScope();
  let etcd: TestEtcd | undefined;
  let node: CalicoProcess | undefined;
  try {
    const host = await scope.create('bpolh');
    // Proxy ARP answers containers for 169.254.1.1 only if the host has a route to it: give the
    // host a default route to a router namespace of ours, which routes nowhere further.
    await giveUplink(host, await scope.create('bpolr'));
    etcd = await startEtcd(host);
    node = await startCalico(host, {
      name: 'bench-host',
      etcd: etcd.endpoint,
      env: {
        CALICO_LOG_LEVEL: 'info',
        CALICO_IPV4POOL_CIDR: '10.66.0.0/16',
        CALICO_IPV6POOL_CIDR: '',
        CALICO_MTU: '1500',
        CALICO_BIRD: 'off',
        DOCKER_HOST: `unix://${o.tmp}/no-docker.sock`,
      },
    });
    await node.ready();
    const n = node;
    const d = n.docker;
    const { pool, nid } = await d.createIPv4Network();
    const endpoint = async (eid: string) => {
      const a = (await d.ok('ipam', 'RequestAddress', { PoolID: pool, Address: '', Options: null })).Address as string;
      await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a, AddressIPv6: '', MacAddress: '' }, Options: {} });
      return { addr: a, join: await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} }) };
    };
    const labels: Array<{ host: string; id: string; labels: Record<string, string> }> = [];
    await drive(FILLERS, 8, async (i) => {
      const eid = `0${hex().slice(1)}`;
      await endpoint(eid);
      labels.push({ host: n.name, id: eid, labels: fillerLabels(i) });
    });
    const boxes: Record<string, { ns: Netns; ip: string }> = {};
    for (const role of ['client', 'server']) {
      const ns = await scope.create(`bpol${role[0]}`);
      const eid = `ff${hex().slice(2)}`;
      const { addr, join } = await endpoint(eid);
      await plugIntoSandbox(host, ns, join, { v4: addr });
      boxes[role] = { ns, ip: addr.split('/')[0] };
      labels.push({ host: n.name, id: eid, labels: { app: 'bench', role } });
    }
    const { client, server } = boxes;
    const labelFile = path.join(o.tmp, 'labels.json');
    fs.writeFileSync(labelFile, JSON.stringify(labels));
    await host.exec(process.execPath, [js('policy-etcd'), 'label', etcd.endpoint, labelFile], { timeoutMs: 60_000 });

    // Write policies, then wait for the agent's "firewall applied" log line covering them; the
    // latency is from just before the write (wall clock) to that line's timestamp.
    const writeAndWait = async (policies: PolicyRecord[], expect: number) => {
      const mark = n.logs().length;
      const file = path.join(o.tmp, 'policies.json');
      fs.writeFileSync(file, JSON.stringify(policies));
      const w = JSON.parse((await host.exec(process.execPath, [js('policy-etcd'), 'apply', etcd!.endpoint, file], { timeoutMs: 60_000 })).stdout.trim()) as {
        t0: number;
        t1: number;
      };
      const deadline = Date.now() + 120_000;
      for (;;) {
        for (const line of n.logs().slice(mark).split('\n')) {
          if (!line.includes('"firewall applied"')) continue;
          const l = JSON.parse(line) as { policies: number; ms: number; timestamp: string };
          if (l.policies === expect && Date.parse(l.timestamp) >= w.t0)
            return { latencyMs: Date.parse(l.timestamp) - w.t0, agentApplyMs: l.ms, etcdWriteMs: w.t1 - w.t0 };
        }
        if (Date.now() > deadline) throw new Error(`the agent did not apply ${expect} policies within 120 s:\n${n.logs().slice(mark)}`);
        await sleep(5);
      }
    };
    const latencies = async (base: PolicyRecord[]) => {
      const first = await writeAndWait(base, base.length);
      const changes: Array<{ latencyMs: number; agentApplyMs: number; etcdWriteMs: number }> = [];
      for (let i = 0; i < o.reps; i++) changes.push(await writeAndWait([changeOneRule(base, 0, 41000 + i)[0]], base.length));
      const med = (k: 'latencyMs' | 'agentApplyMs') =>
        percentile(
          changes.map((c) => c[k]).sort((a, b) => a - b),
          50,
        );
      return {
        policies: base.length,
        rules: base.reduce((s, p) => s + p.ingress.length + p.egress.length, 0),
        firstWrite: first,
        oneRuleChanged: {
          count: changes.length,
          p50LatencyMs: med('latencyMs'),
          maxLatencyMs: Math.max(...changes.map((c) => c.latencyMs)),
          p50AgentApplyMs: med('agentApplyMs'),
        },
      };
    };
    const small = await latencies(makePolicies(10, { selectAll: true, allowAtEnd: true }));
    const bigSet = makePolicies(RULES, { selectAll: true, allowAtEnd: true });
    const big = await latencies(bigSet);
    // Put the big set back as written (the changes above edited its first policy).
    await writeAndWait(bigSet, bigSet.length);

    const srv = server.ns.spawn(process.execPath, [js('policy-tcp'), 'server', String(MEASURED_PORT), String(BLOCKED_PORT)]);
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.on('data', (b) => String(b).includes('listening') && resolve());
      srv.once('exit', (c) => reject(new Error(`tcp server exited (${c})`)));
    });
    await client.ns.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
    const tcp = async (...args: string[]) =>
      JSON.parse((await client.ns.exec(process.execPath, [js('policy-tcp'), ...args], { timeoutMs: 120_000 })).stdout.trim());
    const probes = async () => ({
      allowedPortConnects: (await tcp('probe', server.ip, String(MEASURED_PORT), '2000')).connected,
      blockedPortConnects: (await tcp('probe', server.ip, String(BLOCKED_PORT), '1000')).connected,
    });
    const rulesInKernel = async () => (await host.exec('iptables-save', ['-t', 'filter'])).stdout.split('\n').filter((l) => l.startsWith('-A cal-')).length;
    const traffic = async () => ({
      sequential: (await tcp('client', server.ip, String(MEASURED_PORT), String(o.seconds), '1')) as TcpRun,
      inFlight8: (await tcp('client', server.ip, String(MEASURED_PORT), String(o.seconds), '8')) as TcpRun,
    });
    const restart = async (policy: 'on' | 'off') => {
      await n.stop();
      n.env.CALICO_POLICY = policy;
      await n.restart();
      await n.ready(120_000);
    };

    // A-B-A: policy on, off, on again, so drift on a shared machine shows.
    const onState = { ipv4RulesInKernel: await rulesInKernel(), ...(await probes()) };
    const on = await traffic();
    // Off, honestly: a node started with CALICO_POLICY=off programs nothing, but rules stay in
    // the kernel across restarts by design, so the benchmark takes ours out (jumps, chains,
    // ipsets) to get the firewall such a host has. Conntrack stays loaded either way.
    await restart('off');
    await clearFirewall(host, o.tmp);
    const offState = { ipv4RulesInKernel: await rulesInKernel(), ...(await probes()) };
    const off = await traffic();
    await restart('on');
    const onAgainState = { ipv4RulesInKernel: await rulesInKernel(), ...(await probes()) };
    const onAgain = await traffic();
    const ratio = (k: 'sequential' | 'inFlight8') => Math.round(((on[k].perSec + onAgain[k].perSec) / 2 / off[k].perSec) * 100) / 100;
    return {
      applyLatency: {
        what: "wall clock from just before the etcd write to the agent's 'firewall applied' log line (rules in the kernel); 102 local endpoints",
        smallSet: small,
        largeSet: big,
      },
      packetPath: {
        what: `TCP connect + RST-close from one container to another on the same host for ${o.seconds} s; policy on: ${bigSet.length} policies, ${RULES + 1} ingress rules all selecting the server, the allowing one last; ${FILLERS + 2} local endpoints with the measured two last in dispatch`,
        policyOn: { ...onState, ...on },
        policyOff: { ...offState, ...off },
        policyOnAgain: { ...onAgainState, ...onAgain },
        onOverOffConnectionRate: { sequential: ratio('sequential'), inFlight8: ratio('inFlight8') },
      },
    };
  } finally {
    await node?.destroy();
    await etcd?.destroy();
    await scope.destroyAll();
  }
}
