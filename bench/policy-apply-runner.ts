/**
 * Run by bench:policy inside a throw-away namespace (never the root one): reads
 * `{ steps: [{ label, endpoints, networks, policies }] }` from the JSON file given and, with the
 * backend named (nftables or iptables), programs each step exactly as the policy agent does: the
 * records that changed go into the incremental calculator, then the first step is one full apply
 * and every later one applies the calculator's delta. Prints one JSON line: timings per step.
 */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { FirewallBackend } from '../firewall/desired';
import { IptablesBackend } from '../firewall/iptables/backend';
import { NftablesBackend } from '../firewall/nftables/backend';
import type { EndpointRecord, NetworkRecord, PolicyRecord } from '../lib/datastore/records';
import { PolicyCalculator } from '../policy/calc';

interface Step {
  label: string;
  endpoints: EndpointRecord[];
  networks: NetworkRecord[];
  policies: PolicyRecord[];
}

async function main() {
  const [file, which] = process.argv.slice(2);
  if (!file) throw new Error('usage: policy-apply-runner.js STEPS.json nftables|iptables');
  // Refuse to run anywhere but a benchmark namespace (never the machine's own firewall).
  const here = execFileSync('ip', ['netns', 'identify'], { encoding: 'utf8' }).trim();
  if (!/^bpol-\d+-[0-9a-f]+$/.test(here)) throw new Error(`refusing to program network namespace "${here}": run through bench:policy`);
  const { steps } = JSON.parse(fs.readFileSync(file, 'utf8')) as { steps: Step[] };
  const backend: FirewallBackend = which === 'iptables' ? new IptablesBackend() : new NftablesBackend();
  const calc = new PolicyCalculator({ host: steps[0].endpoints[0]?.host ?? 'bench-host', endpointToHost: 'drop' });
  const seen = new Map<string, string>();
  const out = [];
  for (const [i, s] of steps.entries()) {
    // What changed since the previous step, found outside the timing (the watch hands the agent exactly this).
    const changed: Array<() => void> = [];
    const note = (key: string, rec: unknown, up: () => void) => {
      const text = JSON.stringify(rec);
      if (seen.get(key) !== text) changed.push(up);
      seen.set(key, text);
    };
    for (const n of s.networks) note(`n/${n.host}/${n.id}`, n, () => calc.upsertNetwork(`n/${n.host}/${n.id}`, n));
    for (const p of s.policies) note(`p/${p.name}`, p, () => calc.upsertPolicy(`p/${p.name}`, p));
    for (const e of s.endpoints) note(`e/${e.host}/${e.id}`, e, () => calc.upsertEndpoint(`e/${e.host}/${e.id}`, e));
    const t0 = performance.now();
    for (const up of changed) up();
    const desired = calc.desired();
    const delta = calc.takeDelta();
    const t1 = performance.now();
    const stats = i === 0 ? await backend.apply(desired) : await backend.apply(desired, delta);
    const t2 = performance.now();
    const r = (x: number) => Math.round(x * 10) / 10;
    out.push({ label: s.label, calcMs: r(t1 - t0), applyMs: r(t2 - t1), totalMs: r(t2 - t0), objectsWritten: stats.objects, sets: desired.sets.size });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String((err as Error)?.stack ?? err) + '\n');
  process.exit(1);
});
