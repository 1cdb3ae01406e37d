/**
 * Run with node inside a namespace. `serve NAME PORT...`: on each port a TCP server answering
 * like HTTP/1.0 (so curl can ask) and a UDP server, both replying "NAME REMOTE-ADDRESS", so a reply
 * proves which container answered and which source address it saw. `udp HOST PORT`: sends one
 * datagram and prints the reply (exit 1 without one within a second).
 */
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const plain = (a: string | undefined) => (a ?? '').replace(/^::ffff:/, '');

if (mode === 'serve') {
  const [name, ...ports] = args;
  const ready: Array<Promise<unknown>> = [];
  for (const p of ports.map(Number)) {
    const t = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end(`HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n${name} ${plain(s.remoteAddress)}\n`));
    });
    ready.push(new Promise((r) => t.listen(p, '::', () => r(undefined))));
    const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (_m, r) => u.send(`${name} ${plain(r.address)}\n`, r.port, r.address));
    ready.push(new Promise((r) => u.bind(p, '::', () => r(undefined))));
  }
  // Only once every socket is bound: a test may probe the ports next.
  void Promise.all(ready).then(() => console.log('listening'));
} else if (mode === 'udp') {
  const [host, port] = args;
  const u = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const t = setTimeout(() => process.exit(1), 1000);
  u.on('message', (m) => {
    clearTimeout(t);
    process.stdout.write(m.toString());
    process.exit(0);
  });
  u.send('hello', Number(port), host);
} else {
  console.error('usage: port-echo serve NAME PORT... | udp HOST PORT');
  process.exit(2);
}
