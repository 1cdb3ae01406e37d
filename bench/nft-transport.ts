/**
 * How long one small firewall change (one element added, one deleted, one transaction) takes
 * through each way of talking to nftables: the libnftables addon in this process, a long-lived
 * `nft -i` fed line by line, and a `nft -f -` spawned per change. Runs in a throw-away namespace.
 *   node dist/bench/nft-transport.js [COUNT]        (default 300 changes per transport)
 */
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { nft } from '../firewall/nftables/addon';
import { createNetns } from '../test/harness/netns';
import { percentile } from './stats';

const SETUP = [
  'add table inet calico-bench',
  'add set inet calico-bench s { type ipv4_addr; }',
  'add chain inet calico-bench c',
  'add rule inet calico-bench c ip saddr @s accept',
];
const change = (i: number) =>
  `add element inet calico-bench s { 10.${(i >> 8) & 255}.${i & 255}.1 }; delete element inet calico-bench s { 10.${((i - 1) >> 8) & 255}.${(i - 1) & 255}.1 }`;
const first = 'add element inet calico-bench s { 10.0.0.1 }';

async function time(n: number, one: (i: number) => Promise<void>) {
  const ms: number[] = [];
  for (let i = 1; i <= n; i++) {
    const t0 = performance.now();
    await one(i);
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { count: n, p50Ms: r(percentile(ms, 50)), p99Ms: r(percentile(ms, 99)) };
}

function spawnOnce(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (b) => (err += String(b)));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(err))));
    c.stdin.end(text + '\n');
  });
}

/** `nft -i -e`: one line is one transaction, and -e reports each commit as "# new generation …". */
function interactive() {
  const c = spawn('nft', ['-i', '-e'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = readline.createInterface({ input: c.stdout });
  let waiting: (() => void) | undefined;
  lines.on('line', (l) => {
    if (l.startsWith('# new generation')) waiting?.();
  });
  c.stderr.on('data', (b) => process.stderr.write(b));
  return {
    run: (line: string) =>
      new Promise<void>((resolve) => {
        waiting = resolve;
        c.stdin.write(line + '\n');
      }),
    close: () => c.stdin.end(),
  };
}

async function inner(n: number) {
  const reset = async () => {
    await nft(`add table inet calico-bench\ndelete table inet calico-bench\n${SETUP.join('\n')}\n${first}\n`);
  };
  await reset();
  const addon = await time(n, (i) => nft(change(i) + '\n').then(() => undefined));
  await reset();
  const i = interactive();
  const nftInteractive = await time(n, (k) => i.run(change(k)));
  i.close();
  await reset();
  const nftSpawn = await time(n, (k) => spawnOnce(change(k)));
  await nft('delete table inet calico-bench\n');
  process.stdout.write(
    JSON.stringify({ what: 'one small change (an element added and one deleted) as one nft transaction', addon, nftInteractive, nftSpawn }) + '\n',
  );
}

async function main() {
  const n = Number(process.argv[3] ?? process.argv[2] ?? 300);
  if (process.argv[2] === 'inner') return inner(n);
  const ns = await createNetns('bnft');
  try {
    const out = await ns.exec(process.execPath, [__filename, 'inner', String(n)], { timeoutMs: 300_000 });
    const r = JSON.parse(out.stdout.trim()) as Record<string, { p50Ms: number; p99Ms: number }>;
    console.log(out.stdout.trim());
    console.log(`p50 per change: addon ${r.addon.p50Ms} ms, nft -i ${r.nftInteractive.p50Ms} ms, nft -f - spawned ${r.nftSpawn.p50Ms} ms`);
  } finally {
    await ns.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
