/**
 * The packet path's cost per firewall backend: TCP connection rate from one container to
 * another on the same host with the worst case programmed (1,001 ingress allow rules selecting
 * the server, each with its own source selector set and port, the one that allows the client
 * last), against the same host with no firewall. nftables and iptables side by side, each
 * measured on, off, on again (so drift on a shared machine shows). Traffic from bench/policy-tcp.
 *   node dist/bench/nft-path.js [SECONDS]      (default 4 per run)
 */
import path from 'node:path';
import type { Desired, EndpointSpec, RuleSpec, SetSpec } from '../firewall/desired';
import { BACKENDS, type BackendName, buildWorld } from '../test/harness/firewall';
import { netnsScope } from '../test/harness/netns';

const RULES = 1001;
const PORT = 7777;
const none = { sets: [], notSets: [] };

/** The worst case: rule k allows TCP to port 1000 + k from set k (one filler address); the last allows the client. */
export function worstCase(endpoints: EndpointSpec[], client: string, group: string): Desired {
  const sets: SetSpec[] = [];
  const rules: RuleSpec[] = [];
  for (let k = 0; k < RULES; k++) {
    const last = k === RULES - 1;
    const name = `cal4s-b${String(k).padStart(4, '0')}`;
    sets.push({ name, family: 4, kind: 'addr', members: new Set([last ? client : `10.66.${k >> 8}.${k & 255}`]) });
    rules.push({
      action: 'allow',
      protocol: 6,
      src: { ...none, sets: [name] },
      dst: { ...none, ports: [[last ? PORT : 1000 + k, last ? PORT : 1000 + k]] },
      logPrefix: 'calico b',
    });
  }
  const policies = Array.from({ length: Math.ceil(RULES / 10) }, (_, p) => ({
    name: `bench-${String(p).padStart(4, '0')}`,
    ingress: { 4: rules.slice(p * 10, p * 10 + 10), 6: [] },
    egress: { 4: [], 6: [] },
  }));
  const all = { 4: [{ action: 'allow' as const, src: none, dst: none, logPrefix: 'calico n' }], 6: [] };
  return {
    endpointToHost: 'drop',
    sets: new Map(sets.map((s) => [s.name, s])),
    policies: new Map(policies.map((p) => [p.name, p])),
    profiles: new Map([['net', { name: 'net', ingress: all, egress: all }]]),
    groups: new Map([[group, { id: group, dir: 'ingress', policies: policies.map((p) => p.name) }]]),
    endpoints: new Map(endpoints.map((e) => [e.ifName, e])),
  };
}

async function one(backend: BackendName, seconds: number) {
  const scope = netnsScope();
  try {
    const w = await buildWorld(backend, (p) => scope.create(p));
    const { a: client, b: server } = w.boxes;
    const group = 'i-00000000000bench';
    const eps: EndpointSpec[] = Object.entries(w.boxes)
      .filter(([k]) => k !== 'u')
      .map(([k, b]) => ({
        ifName: b.ifName,
        addrs: { 4: [b.v4], 6: b.v6 ? [b.v6] : [] },
        ingress: k === 'b' ? { group, profile: 'net' } : { profile: 'net' },
        egress: { profile: 'net' },
      }));
    const d = worstCase(eps, client.v4, group);
    const js = (n: string) => path.join(__dirname, `${n}.js`);
    const srv = server.ns.spawn(process.execPath, [js('policy-tcp'), 'server', String(PORT)]);
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.on('data', (b) => String(b).includes('listening') && resolve());
      srv.once('exit', (c) => reject(new Error(`tcp server exited (${c})`)));
    });
    await client.ns.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
    const tcp = async (width: number) =>
      JSON.parse(
        (
          await client.ns.exec(process.execPath, [js('policy-tcp'), 'client', server.v4, String(PORT), String(seconds), String(width)], { timeoutMs: 120_000 })
        ).stdout.trim(),
      ) as {
        perSec: number;
        p50Ms: number;
      };
    const traffic = async () => ({ sequential: await tcp(1), inFlight8: await tcp(8) });
    let t0 = performance.now();
    await w.apply(d);
    const fullApplyMs = Math.round(performance.now() - t0);
    const blocked = !(await w.tcp('c', server.v4, 80));
    // One member more in one selector set, the big table in place (timed around the runner: its JSON round trip and diff included).
    const more = new Map(d.sets);
    more.set('cal4s-b0000', { ...d.sets.get('cal4s-b0000')!, members: new Set(['10.66.0.0', '10.66.250.250']) });
    t0 = performance.now();
    await w.apply({ ...d, sets: more });
    const memberDeltaViaRunnerMs = Math.round((performance.now() - t0) * 10) / 10;
    const on = await traffic();
    await w.fw.remove();
    const off = await traffic();
    await w.fw.apply(d);
    const onAgain = await traffic();
    const ratio = (k: 'sequential' | 'inFlight8') => Math.round(((on[k].perSec + onAgain[k].perSec) / 2 / off[k].perSec) * 100) / 100;
    await w.destroy();
    return {
      fullApplyMs,
      memberDeltaViaRunnerMs,
      otherEndpointBlocked: blocked,
      on,
      off,
      onAgain,
      onOverOff: { sequential: ratio('sequential'), inFlight8: ratio('inFlight8') },
    };
  } finally {
    await scope.destroyAll();
  }
}

async function main() {
  const seconds = Number(process.argv[2] ?? 4);
  const out: Record<string, unknown> = {
    what: `TCP connect + RST-close between two containers on one host for ${seconds} s per run; firewall on: ${RULES} ingress allow rules on the server, each its own source set and port, the client's last; off: the backend removed`,
  };
  for (const b of BACKENDS) out[b] = await one(b, seconds);
  console.log(JSON.stringify(out, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
