/**
 * `npm run bench:policy`: what the policy agent costs, for each firewall backend (nftables, the
 * default, first; iptables beside it). Prints one JSON object:
 *  - programming: calculator + backend apply (what the agent runs on every change) for
 *    10/100/1,000 local endpoints (100 rules) and 10/100/1,000 rules (100 endpoints): a full
 *    first program of an empty namespace, then steady-state changes on top of it (one rule
 *    edited; one endpoint added), each applied as a delta. Each configuration runs in its own
 *    throw-away namespace through bench/policy-apply-runner.ts, so the machine's own firewall is
 *    never touched.
 *  - packetPath and applyLatency: a real calico node and etcd (bench/policy-path.ts).
 * BENCH_POLICY_SECONDS sets each packet-path run's length (default 4), BENCH_POLICY_REPS the
 * number of incremental changes timed per configuration (default 5).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createNetns, runNodeInNetns } from '../test/harness/netns';
import { benchNetwork, changeOneRule, makePolicies, syntheticEndpoint } from './policy-gen';
import { measurePath } from './policy-path';
import { percentile } from './stats';

const REPS = Number(process.env.BENCH_POLICY_REPS ?? 5);
const SECONDS = Number(process.env.BENCH_POLICY_SECONDS ?? 4);
const HOST = 'bench-host';

interface StepResult {
  label: string;
  calcMs: number;
  applyMs: number;
  totalMs: number;
  objectsWritten: number;
  sets: number;
}

function summariseSteps(steps: StepResult[]) {
  const med = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    );
  return {
    count: steps.length,
    p50TotalMs: med(steps.map((s) => s.totalMs)),
    maxTotalMs: Math.max(...steps.map((s) => s.totalMs)),
    p50CalcMs: med(steps.map((s) => s.calcMs)),
    p50ApplyMs: med(steps.map((s) => s.applyMs)),
    p50ObjectsWritten: med(steps.map((s) => s.objectsWritten)),
  };
}

/** One configuration: full program, then REPS rule edits, then REPS endpoint additions. */
async function programOnce(backend: string, endpoints: number, rules: number, tmp: string) {
  const net = benchNetwork(HOST);
  let eps = Array.from({ length: endpoints }, (_, i) => syntheticEndpoint(HOST, net.id, i));
  let pols = makePolicies(rules, { egress: true });
  const step = (label: string) => ({ label, endpoints: eps, networks: [net], policies: pols });
  const steps = [step('full')];
  const mid = Math.floor(pols.length / 2);
  for (let i = 0; i < REPS; i++) {
    pols = changeOneRule(pols, mid, 40000 + i);
    steps.push(step('rule'));
  }
  for (let i = 0; i < REPS; i++) {
    eps = [...eps, syntheticEndpoint(HOST, net.id, endpoints + i)];
    steps.push(step('endpoint'));
  }
  const file = path.join(tmp, `steps-${endpoints}-${rules}.json`);
  fs.writeFileSync(file, JSON.stringify({ steps }));
  const ns = await createNetns('bpol');
  try {
    const res = await runNodeInNetns(ns, path.join(__dirname, 'policy-apply-runner.js'), [file, backend], { timeoutMs: 600_000 });
    const out = res.json<StepResult[]>();
    const full = out[0];
    return {
      endpoints,
      rules,
      policies: makePolicies(rules).length,
      full: { calcMs: full.calcMs, applyMs: full.applyMs, totalMs: full.totalMs, objectsWritten: full.objectsWritten, sets: full.sets },
      ruleChanged: summariseSteps(out.filter((s) => s.label === 'rule')),
      endpointAdded: summariseSteps(out.filter((s) => s.label === 'endpoint')),
    };
  } finally {
    await ns.destroy();
    fs.rmSync(file, { force: true });
  }
}

function machine() {
  const cpus = os.cpus();
  let iptables = 'unknown';
  try {
    iptables = execFileSync('iptables', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // reported as unknown
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    kernel: os.release(),
    iptables,
    node: process.version,
    loadavg1m: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

async function main() {
  const t0 = Date.now();
  const host = machine();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-policy-'));
  try {
    const programming: Record<string, unknown> = {};
    for (const backend of ['nftables', 'iptables']) {
      const byEndpoints: Record<string, unknown> = {};
      const byRules: Record<string, unknown> = {};
      for (const e of [10, 100, 1000]) byEndpoints[e] = await programOnce(backend, e, 100, tmp);
      byRules[100] = byEndpoints[100];
      for (const r of [10, 1000]) byRules[r] = await programOnce(backend, 100, r, tmp);
      programming[backend] = { byEndpointsWith100Rules: byEndpoints, byRulesWith100Endpoints: byRules };
    }
    const path_ = await measurePath({ seconds: SECONDS, reps: REPS, tmp });
    const report = {
      machine: { ...host, loadavg1mAtEnd: machine().loadavg1m },
      programming: {
        what: 'calculator + backend apply in a fresh namespace: full = first program of an empty namespace; ruleChanged / endpointAdded = one change on top, applied as the agent does (the delta only)',
        shape:
          '10 rules per policy; policy k selects app == app(k mod 10) (every fifth is egress); rules: selector+port, nets+port, udp deny, compound selector+port range',
        ...programming,
      },
      ...path_,
      wallSeconds: Math.round((Date.now() - t0) / 1000),
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
