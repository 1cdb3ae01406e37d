/**
 * Run by bench:policy inside a throw-away namespace (never the root one): reads
 * `{ steps: [{ label, view }] }` from the JSON file given, and for each step in order renders the
 * PolicyView and applies it to the kernel exactly as the policy agent does (renderPolicy then
 * applyFirewall), timing both. The first step is a full program of an empty namespace; later
 * steps are changes on top of it. Prints one JSON line: the timings per step.
 */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Firewall } from '../policy/iptables';
import { type PolicyView, renderPolicy } from '../policy/render';

async function main() {
  const file = process.argv[2];
  if (!file) throw new Error('usage: policy-apply-runner.js STEPS.json');
  // Refuse to run anywhere but a benchmark namespace (never the machine's own firewall).
  const here = execFileSync('ip', ['netns', 'identify'], { encoding: 'utf8' }).trim();
  if (!/^bpol-\d+-[0-9a-f]+$/.test(here)) throw new Error(`refusing to program network namespace "${here}": run through bench:policy`);
  const { steps } = JSON.parse(fs.readFileSync(file, 'utf8')) as { steps: Array<{ label: string; view: PolicyView }> };
  const out = [];
  const fw = new Firewall();
  for (const s of steps) {
    const t0 = performance.now();
    const rendered = renderPolicy(s.view);
    const t1 = performance.now();
    const written = await fw.apply(rendered);
    const t2 = performance.now();
    const rules = (rendered.tables[4].match(/^-A /gm)?.length ?? 0) + (rendered.tables[6].match(/^-A /gm)?.length ?? 0);
    const r = (x: number) => Math.round(x * 10) / 10;
    out.push({
      label: s.label,
      renderMs: r(t1 - t0),
      applyMs: r(t2 - t1),
      totalMs: r(t2 - t0),
      iptablesRules: rules,
      chains: rendered.chains[4].length + rendered.chains[6].length,
      ipsets: rendered.ipsets.length,
      chainsWritten: written.chains,
      setsWritten: written.sets,
    });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
