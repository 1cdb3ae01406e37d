/**
 * The request/response half of `npm run bench:throughput`, run inside a container's network
 * namespace (nsenter): `serve PORT` echoes every byte; `drive HOST PORT SECONDS` sends one byte,
 * waits for it back, and repeats, printing the round trips per second (netperf's TCP_RR, which
 * Debian does not ship). `connect HOST PORT SECONDS` opens and closes connections, printing
 * connections per second (for published ports).
 */
import net from 'node:net';

function serve(port: number) {
  net.createServer((s) => s.on('data', (d) => s.write(d)).on('error', () => undefined)).listen(port, '::');
}

function drive(host: string, port: number, seconds: number) {
  const s = net.connect({ host, port, noDelay: true });
  let n = 0;
  const end = Date.now() + seconds * 1000;
  s.on('connect', () => s.write('x'));
  s.on('data', () => {
    n++;
    if (Date.now() < end) s.write('x');
    else {
      process.stdout.write(`${Math.round(n / seconds)}\n`);
      s.destroy();
    }
  });
  s.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}

async function connect(host: string, port: number, seconds: number) {
  const end = Date.now() + seconds * 1000;
  let n = 0;
  // Eight in flight, as a load generator would: one at a time measures the client's loop.
  const one = async (): Promise<void> => {
    while (Date.now() < end) {
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ host, port }, () => {
          n++;
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      });
    }
  };
  await Promise.all(Array.from({ length: 8 }, one));
  process.stdout.write(`${Math.round(n / seconds)}\n`);
}

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'serve') serve(Number(a));
else if (mode === 'drive') drive(a, Number(b), Number(c));
else if (mode === 'connect')
  connect(a, Number(b), Number(c)).catch((err) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  });
else {
  process.stderr.write('usage: rr-peer serve PORT | drive HOST PORT SECONDS | connect HOST PORT SECONDS\n');
  process.exit(2);
}
