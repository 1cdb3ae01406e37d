/**
 * `npm run bench:policy-latency` (root): how soon a policy takes effect for real containers.
 * One host with dockerd and `calico node`; a `db` container serving TCP 80 and a `client`
 * container. A probe runs inside the client's network namespace (entered through its PID) and
 * starts a connection to db:80 every 5 ms, reporting each outcome with its start time. Each
 * sample applies a policy with the `calico` CLI and measures from the CLI returning until the
 * start of the first attempt with the new outcome:
 *   deny:  a policy selecting db that does not allow the client (was: the profile allows it);
 *   allow: the same policy changed to allow the client too.
 * Then the policy is removed and the next sample starts. Prints JSON.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsScope } from '../test/harness/netns';
import { startDockerHost } from '../test/harness/docker';
import { percentile } from './stats';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 15);

// Starts an attempt every 5 ms without waiting for the previous ones (a dropped SYN would
// otherwise hold the probe for its whole timeout) and reports every outcome with its start time.
const PROBE = `
const net = require('node:net');
const [ip, port] = process.argv.slice(1);
setInterval(() => {
  const t = Date.now();
  const s = net.connect({ host: ip, port: Number(port) });
  let done = false;
  const end = (ok) => {
    if (done) return;
    done = true;
    s.destroy();
    process.stdout.write(JSON.stringify({ ok, t }) + '\\n');
  };
  s.setTimeout(300, () => end(false));
  s.on('connect', () => end(true));
  s.on('error', () => end(false));
}, 5);
`;

const policy = (allowed: string[]) => `kind: Policy
name: bench-latency
selector: role == 'db'
ingress:
  - action: allow
    protocol: tcp
    source:
      selector: role in {${allowed.map((a) => `'${a}'`).join(', ')}}
    destination:
      ports: [80]
`;

async function main() {
  const scope = netnsScope();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-bench-latency-'));
  const h = await startDockerHost(scope, { name: 'bl1', env: { CALICO_LOG_LEVEL: 'warn' } });
  let probe: ChildProcess | undefined;
  try {
    await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'bench']);
    await h.dockerOk([
      'run',
      '-d',
      '--name',
      'db',
      '--network',
      'bench',
      '-l',
      'org.projectcalico.label.role=db',
      'busybox',
      'nc',
      '-ll',
      '-p',
      '80',
      '-e',
      'true',
    ]);
    await h.dockerOk(['run', '-d', '--name', 'client', '--network', 'bench', '-l', 'org.projectcalico.label.role=client', 'busybox', 'sleep', '3600']);
    const dbIp = await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.bench.IPAddress}}', 'db']);
    const pid = await h.dockerOk(['inspect', '-f', '{{.State.Pid}}', 'client']);
    // Labels reach the endpoints asynchronously from Docker's events.
    for (const t0 = Date.now(); ;) {
      const eps = JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as Array<{ labels: Record<string, string> }>;
      if (eps.filter((e) => e.labels.role).length === 2) break;
      if (Date.now() - t0 > 30_000) throw new Error('labels not learned');
      await new Promise((r) => setTimeout(r, 100));
    }
    probe = spawn('nsenter', [`--net=/proc/${pid}/ns/net`, process.execPath, '-e', PROBE, dbIp, '80'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const changes: Array<{ ok: boolean; t: number }> = [];
    let buf = '';
    probe.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        changes.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    });
    const nextChange = async (ok: boolean, after: number): Promise<number> => {
      for (const t0 = Date.now(); Date.now() - t0 < 10_000; await new Promise((r) => setTimeout(r, 20))) {
        // Outcomes arrive out of order; wait until every attempt started before a match is in.
        const first = changes.filter((x) => x.ok === ok && x.t >= after).reduce((m, x) => Math.min(m, x.t), Infinity);
        if (first !== Infinity && Date.now() - first > 400) {
          changes.splice(0, changes.length, ...changes.filter((x) => x.t > first));
          return first - after;
        }
      }
      const state = [
        (await h.ns.exec('iptables-save', ['-c', '-t', 'filter'])).stdout,
        (await h.calico(['endpoint', 'ls', '--json'])).stdout,
        (await h.calico(['policy', 'ls'])).stdout,
        JSON.stringify(changes),
      ];
      throw new Error(`the probe never saw ${ok ? 'a connection' : 'a refusal'}${process.env.BENCH_DEBUG ? `\n${state.join('\n')}` : ''}`);
    };
    const apply = async (text: string): Promise<number> => {
      const f = path.join(tmp, 'p.yaml');
      fs.writeFileSync(f, text);
      const r = await h.calico(['policy', 'apply', '-f', f]);
      if (r.code !== 0) throw new Error(r.stderr);
      return Date.now();
    };
    await nextChange(true, 0);
    const deny: number[] = [];
    const allow: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      deny.push(await nextChange(false, await apply(policy(['frontend']))));
      allow.push(await nextChange(true, await apply(policy(['frontend', 'client']))));
      if ((await h.calico(['policy', 'rm', 'bench-latency'])).code !== 0) throw new Error('rm failed');
      await new Promise((r) => setTimeout(r, 300));
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { samples: s.length, medianMs: percentile(s, 50), p90Ms: percentile(s, 90), maxMs: s[s.length - 1] };
    };
    const out = {
      what: 'ms from `calico policy apply` returning until the first connection attempt with the new outcome (probe every 5 ms)',
      deniedConnectionFails: stat(deny),
      allowedConnectionSucceeds: stat(allow),
      targetMs: 1000,
      machine: { cpus: os.cpus().length, kernel: os.release() },
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } finally {
    probe?.kill('SIGKILL');
    await h.destroy();
    await scope.destroyAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench:policy-latency failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
