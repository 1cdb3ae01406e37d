/**
 * Published ports end to end: two hosts with real dockerd (its own iptables on, FORWARD DROP)
 * and `calico node` on one subnet, an outside client behind the router (test/harness/subnets.ts).
 * Containers run busybox httpd with a CGI answering "NAME REMOTE_ADDR", so each reply proves
 * which container answered and which source it saw. `docker run -p`, `-P`, ranges, a taken port
 * and a foreign host address, a container on two calico networks, and `docker rm`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope } from '../harness/netns';
import { type DockerHost, startDockerHost } from '../harness/docker';
import { OUTSIDE_CLIENT, type Subnets, startSubnets } from '../harness/subnets';

const scope = netnsScope();
let net: Subnets;
const hosts: Record<string, DockerHost> = {};
const addr: Record<string, string> = {};

/** httpd on each of $PORTS with a CGI naming the container and the client address it saw. */
const SERVE = [
  'sh',
  '-c',
  [
    'mkdir -p /w/cgi-bin',
    `{ echo '#!/bin/sh'; echo 'echo Content-Type: text/plain'; echo echo; echo 'echo "$NAME $REMOTE_ADDR"'; } > /w/cgi-bin/who`,
    'chmod +x /w/cgi-bin/who',
    'for p in $PORTS; do httpd -p $p -h /w; done',
    'exec sleep 3600',
  ].join(' && '),
];

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn().catch(() => false))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const url = (ip: string, port: number) => `http://${ip}:${port}/cgi-bin/who`;
/** busybox httpd listens on IPv6 and shows an IPv4 client as [::ffff:a.b.c.d]. */
const plain = (s: string) => s.trim().replace(/\[::ffff:([\d.]+)\]/, '$1');
/** From the outside client (or a host namespace): what answered, or ''. */
async function fromNs(ns: { exec(cmd: string, args: string[]): Promise<{ stdout: string }> }, ip: string, port: number): Promise<string> {
  return plain((await ns.exec('curl', ['-s', '--max-time', '2', url(ip, port)]).catch(() => ({ stdout: '' }))).stdout);
}
/** From inside container `ctr` on host `h` (busybox nc: this busybox's wget crashes); the reply's last line. */
async function fromCtr(h: string, ctr: string, ip: string, port: number): Promise<string> {
  const ask = 'echo -e "GET /cgi-bin/who HTTP/1.0\r\n\r\n" | nc -w 2 "$0" "$1"';
  const r = await hosts[h].docker(['exec', ctr, 'sh', '-c', ask, ip, String(port)]);
  return r.code === 0 ? plain(r.stdout.trim().split('\n').pop() ?? '') : '';
}

async function run(h: string, name: string, args: string[], ports = '80'): Promise<string> {
  await hosts[h].dockerOk(['run', '-d', '--name', name, '--hostname', name, '-e', `NAME=${name}`, '-e', `PORTS=${ports}`, ...args, 'busybox', ...SERVE]);
  return hosts[h].dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', name]).then((s) => s.split(' ')[0]);
}

interface Ep {
  id: string;
  containerName?: string;
  ports?: Array<{ published?: number; port: number }>;
}
const endpoints = async (h: string): Promise<Ep[]> => JSON.parse((await hosts[h].calico(['endpoint', 'ls', '--host', h, '--json'])).stdout);
const nft = async (h: string) => (await hosts[h].ns.exec('nft', ['list', 'table', 'inet', 'calico-ports']).catch(() => ({ stdout: '' }))).stdout;

before(async () => {
  net = await startSubnets(scope);
  await Promise.all(
    (['pa1', 'pa2'] as const).map(async (name, i) => {
      const { ns, ip } = await net.addHost(name, 'a', i + 11);
      hosts[name] = await startDockerHost(scope, {
        name,
        etcd: net.etcd.endpoint,
        env: { CALICO_IP: ip, CALICO_RECONCILE_INTERVAL: '2' },
        onFabric: { ns, ip },
        dockerIptables: true,
      });
      addr[name] = ip;
    }),
  );
  await hosts.pa1.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'pub']);
  await hosts.pa2.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'pub']);
  addr.web = await run('pa1', 'web', ['--network', 'pub', '-p', '8080:80']);
  addr.near = await run('pa1', 'near', ['--network', 'pub']);
  addr.far = await run('pa2', 'far', ['--network', 'pub']);
});

after(async () => {
  for (const h of Object.values(hosts)) await h.destroy();
  await net?.etcd.destroy();
  await scope.destroyAll();
});

test('-p 8080:80 is reached on the host address from the outside client, another host’s container, a container beside it, the host and itself', async () => {
  const host = addr.pa1;
  await until(async () => (await fromNs(net.outside, host, 8080)) === `web ${OUTSIDE_CLIENT}`, 'the outside client, seen with its own address');
  // The host address is outside every pool, so far's own host masquerades it (outgoing NAT).
  await until(async () => (await fromCtr('pa2', 'far', host, 8080)) === `web ${addr.pa2}`, "another host's container");
  assert.equal(await fromCtr('pa1', 'near', host, 8080), `web ${addr.near}`, 'a container on the same host');
  assert.equal(await fromNs(hosts.pa1.ns, host, 8080), `web ${host}`, 'the host itself');
  assert.equal(await fromNs(hosts.pa2.ns, host, 8080), `web ${addr.pa2}`, 'another host');
  const hairpin = await fromCtr('pa1', 'web', host, 8080);
  assert.match(hairpin, /^web /, 'the container through its own published port (hairpin)');
  assert.notEqual(hairpin, `web ${addr.web}`, 'hairpin is masqueraded');
  const table = (await hosts.pa1.calico(['endpoint', 'ls'])).stdout;
  assert.match(table, /PORTS/);
  assert.match(table, /web .* 8080->80\/tcp/);
});

test('docker port and NetworkSettings.Ports show nothing for a plugin network (what the docs say to use instead)', async () => {
  // libnetwork only reads port maps a driver reports as Go structs; a remote driver's JSON never matches.
  assert.equal(await hosts.pa1.dockerOk(['port', 'web']), '');
  assert.equal(await hosts.pa1.dockerOk(['inspect', '-f', '{{json .NetworkSettings.Ports}}', 'web']), '{}');
  assert.equal(await hosts.pa1.dockerOk(['inspect', '-f', '{{json .HostConfig.PortBindings}}', 'web']), '{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}');
});

test('a host port another container holds is refused naming the port and the container; nothing is left of the refused one', async () => {
  await until(async () => (await endpoints('pa1')).some((e) => e.containerName === 'web'), "web's name learned from Docker");
  const r = await hosts.pa1.docker(['run', '-d', '--name', 'dup', '--network', 'pub', '-p', '8080:81', 'busybox', 'sleep', '60']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /host port 8080->81\/tcp is already published on host pa1 by container web/);
  assert.equal((await endpoints('pa1')).filter((e) => e.ports?.some((b) => b.published === 8080)).length, 1);
  assert.equal(await fromNs(net.outside, addr.pa1, 8080), `web ${OUTSIDE_CLIENT}`, 'web keeps its port');
  await hosts.pa1.docker(['rm', '-f', 'dup']);
});

test("a host port a container on Docker's bridge publishes is refused too", async () => {
  await hosts.pa1.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.202.0.0/24', 'plainbr']);
  await hosts.pa1.dockerOk(['run', '-d', '--name', 'onbridge', '--network', 'plainbr', '-p', '8085:80', 'busybox', 'sleep', '600']);
  const r = await hosts.pa1.docker(['run', '-d', '--name', 'after-bridge', '--network', 'pub', '-p', '8085:80', 'busybox', 'sleep', '60']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /host port 8085->80\/tcp is in use on host pa1 by something else on this host/);
  await hosts.pa1.docker(['rm', '-f', 'after-bridge', 'onbridge']);
  await hosts.pa1.docker(['network', 'rm', 'plainbr']);
});

test('a host address that is not this host’s is refused naming the field and the allowed values', async () => {
  const r = await hosts.pa1.docker(['run', '-d', '--name', 'foreign', '--network', 'pub', '-p', '192.0.2.7:8081:80', 'busybox', 'sleep', '60']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`field "HostIP": "192\\.0\\.2\\.7" is not allowed; allowed values: .*${addr.pa1.replace(/\./g, '\\.')}`));
  assert.ok(!(await endpoints('pa1')).some((e) => e.containerName === 'foreign'));
  assert.doesNotMatch(await nft('pa1'), /8081/);
  await hosts.pa1.docker(['rm', '-f', 'foreign']);
});

test('-P publishes exposed ports on free host ports, and a range maps port to port; calico endpoint ls shows which', async () => {
  await run('pa1', 'anyport', ['--network', 'pub', '--expose', '80', '-P']);
  await run('pa1', 'ranged', ['--network', 'pub', '-p', '9000-9002:80-82'], '80 81 82');
  await until(async () => (await endpoints('pa1')).some((e) => e.containerName === 'anyport'), 'names learned');
  const eps = await endpoints('pa1');
  const any = eps.find((e) => e.containerName === 'anyport')!.ports![0].published!;
  assert.ok(any > 1024, `a free ephemeral port: ${any}`);
  assert.equal(await fromNs(net.outside, addr.pa1, any), `anyport ${OUTSIDE_CLIENT}`);
  assert.equal(
    eps
      .find((e) => e.containerName === 'ranged')!
      .ports!.map((b) => `${b.published}:${b.port}`)
      .sort()
      .join(' '),
    '9000:80 9001:81 9002:82',
  );
  for (const p of [9000, 9002]) assert.equal(await fromNs(net.outside, addr.pa1, p), `ranged ${OUTSIDE_CLIENT}`);
});

test('a container on two calico networks publishes once, through its gateway endpoint', async () => {
  await hosts.pa1.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'pub2']);
  await hosts.pa1.dockerOk([
    'create',
    '--name',
    'twonet',
    '--hostname',
    'twonet',
    '-e',
    'NAME=twonet',
    '-e',
    'PORTS=80',
    '--network',
    'pub',
    '-p',
    '8090:80',
    'busybox',
    ...SERVE,
  ]);
  await hosts.pa1.dockerOk(['network', 'connect', 'pub2', 'twonet']);
  await hosts.pa1.dockerOk(['start', 'twonet']);
  await until(async () => (await endpoints('pa1')).filter((e) => e.containerName === 'twonet').length === 2, 'both endpoints named');
  const mine = (await endpoints('pa1')).filter((e) => e.containerName === 'twonet');
  assert.equal(mine.filter((e) => e.ports?.some((b) => b.published === 8090)).length, 1, JSON.stringify(mine));
  assert.equal(await fromNs(net.outside, addr.pa1, 8090), `twonet ${OUTSIDE_CLIENT}`);
});

test('stopping a container unpublishes its port, starting it publishes again, and after docker rm nothing is left', async () => {
  await hosts.pa1.dockerOk(['stop', '-t', '0', 'web']);
  await until(async () => (await fromNs(net.outside, addr.pa1, 8080)) === '', 'nothing on 8080 once stopped');
  await hosts.pa1.dockerOk(['start', 'web']);
  await until(async () => (await fromNs(net.outside, addr.pa1, 8080)) === `web ${OUTSIDE_CLIENT}`, 'published again on start');
  await hosts.pa1.dockerOk(['rm', '-f', 'web', 'anyport', 'ranged', 'twonet']);
  await until(async () => !/ : /.test(await nft('pa1')), 'no DNAT element left');
  const left = (await endpoints('pa1')).filter((e) => e.ports?.length);
  assert.deepEqual(left, [], 'no endpoint record with ports left');
  assert.equal(await fromNs(net.outside, addr.pa1, 8080), '');
  const ipt = (await hosts.pa1.ns.exec('iptables-save', ['-t', 'nat'])).stdout;
  assert.doesNotMatch(ipt, /cali-ports/, 'and nothing of ours in iptables');
});
