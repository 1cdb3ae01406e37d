/**
 * The traffic for bench:policy's packet-path figures, run inside the sandbox namespaces:
 *   server PORT...                      listens on every port given; prints "listening"
 *   client IP PORT SECONDS WIDTH        opens and closes connections for SECONDS with WIDTH in
 *                                       flight; prints {connections, perSec, p50Ms, p99Ms, errors}
 *   probe IP PORT TIMEOUT_MS            one connection attempt; prints {connected}
 * The client closes with RST (no TIME_WAIT), so a run never runs out of ephemeral ports and
 * every connection is a new conntrack entry: its SYN walks the whole firewall.
 */
import net from 'node:net';
import { percentile } from './stats';

function server(ports: number[]) {
  let up = 0;
  for (const port of ports) {
    const s = net.createServer((c) => {
      c.on('error', () => undefined);
      c.resume();
    });
    s.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => {
      if (++up === ports.length) process.stdout.write('listening\n');
    });
  }
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    s.once('connect', () => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      s.resetAndDestroy();
      resolve(ms);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function client(host: string, port: number, seconds: number, width: number) {
  const lat: number[] = [];
  let errors = 0;
  // Warm up (ARP, route cache, JIT) before the clock starts.
  for (let i = 0; i < 50; i++) await connectOnce(host, port, 2000);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (performance.now() < end) {
        try {
          lat.push(await connectOnce(host, port, 2000));
        } catch {
          errors++;
        }
      }
    }),
  );
  const wall = performance.now() - t0;
  const s = lat.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  process.stdout.write(
    JSON.stringify({ connections: s.length, perSec: Math.round((s.length / wall) * 1000), p50Ms: r(percentile(s, 50)), p99Ms: r(percentile(s, 99)), errors }) +
      '\n',
  );
}

async function probe(host: string, port: number, timeoutMs: number) {
  const connected = await connectOnce(host, port, timeoutMs).then(
    () => true,
    () => false,
  );
  process.stdout.write(JSON.stringify({ connected }) + '\n');
}

const [mode, ...a] = process.argv.slice(2);
const done =
  mode === 'server'
    ? Promise.resolve(server(a.map(Number)))
    : mode === 'client'
      ? client(a[0], Number(a[1]), Number(a[2]), Number(a[3]))
      : mode === 'probe'
        ? probe(a[0], Number(a[1]), Number(a[2]))
        : Promise.reject(new Error(`unknown mode ${mode}`));
done.catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
