/**
 * Route distribution on the real kernel with real BIRD: hosts on a fabric, each running
 * `calico node`, learn each other's blocks by BGP (proto bird), containers on different hosts
 * reach each other, and a host that joins later is reached without configuration by hand.
 */
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { plugIntoSandbox } from '../harness/sandbox';
import { type Fabric, startFabric } from '../harness/fabric';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
let fabric: Fabric;
const hosts: Array<{ ns: Netns; ip: string; node: CalicoProcess; nid: string }> = [];

async function addHost(i: number) {
  const { ns, ip, ip6 } = await fabric.addHost(`bh${i}`, i);
  // Routing only: with no Docker to learn network names from, each host's network is its own
  // profile (by ID) and policy would rightly keep them apart; policy has its own suites.
  // Host 1 names its IPv6 address; the others have an IPv6 default route on the fabric and leave
  // CALICO_IP6 unset, so theirs is detected (the next hop h1 learns for h2's block below).
  if (i !== 1) await ns.ip(['-6', 'route', 'add', 'default', 'dev', 'eth0']);
  const node = await startCalico(ns, {
    name: `bh${i}`,
    etcd: fabric.etcd.endpoint,
    env: { CALICO_IP: ip, ...(i === 1 ? { CALICO_IP6: ip6 } : {}), CALICO_LOG_LEVEL: 'info', CALICO_POLICY: 'off' },
  });
  await node.ready();
  const nid = hex();
  await node.docker.ok('net', 'CreateNetwork', {
    NetworkID: nid,
    Options: { 'com.docker.network.enable_ipv6': true },
    IPv4Data: [{ Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' }],
    IPv6Data: [{ Pool: '::/0', Gateway: '::/0' }],
  });
  const h = { ns, ip, node, nid };
  hosts.push(h);
  return h;
}

/** Does Docker's part of `docker run` on host h, into a new container namespace. */
async function runContainer(h: (typeof hosts)[number], v6 = false) {
  const d = h.node.docker;
  const sandbox = await scope.create('ctr');
  const eid = hex();
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '', Options: null })).Address as string;
  const a6 = v6 ? ((await d.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv6', Address: '', Options: null })).Address as string) : '';
  await d.ok('net', 'CreateEndpoint', { NetworkID: h.nid, EndpointID: eid, Interface: { Address: a, AddressIPv6: a6 }, Options: null });
  const join = await d.ok('net', 'Join', { NetworkID: h.nid, EndpointID: eid, SandboxKey: `/netns/${sandbox.name}`, Options: null });
  await plugIntoSandbox(h.ns, sandbox, join, { v4: a, ...(a6 ? { v6: a6 } : {}) });
  return { sandbox, ip: a.split('/')[0], ip6: a6.split('/')[0] };
}

/** Whether each BIRD start in a node's log was in graceful-restart recovery (`bird -R`), in order. */
function birdStarts(node: CalicoProcess): boolean[] {
  return node
    .logs()
    .split('\n')
    .flatMap((l) => {
      try {
        const j = JSON.parse(l) as { message?: string; recovery?: boolean };
        return j.message === 'BIRD started' ? [j.recovery === true] : [];
      } catch {
        return [];
      }
    });
}

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const birdRoutes = (h: (typeof hosts)[number]) =>
  h.ns.ipJson<Array<{ dst: string; gateway?: string; protocol: string; type?: string }>>(['route', 'show', 'proto', 'bird']);

before(async () => {
  fabric = await startFabric(scope);
  await addHost(1);
  await addHost(2);
});

after(async () => {
  await Promise.all(hosts.map((h) => h.node.destroy()));
  await fabric?.etcd.destroy();
  await scope.destroyAll();
});

test('containers on different hosts reach each other through routes learned by BGP: one route per block, no per-container routes', async () => {
  const [h1, h2] = hosts;
  const c1 = await runContainer(h1);
  const c2 = await runContainer(h2);
  await until(async () => (await birdRoutes(h1)).some((r) => r.gateway === h2.ip), 'h1 learned a route via h2');
  await until(async () => (await birdRoutes(h2)).some((r) => r.gateway === h1.ip), 'h2 learned a route via h1');
  await c1.sandbox.exec('ping', ['-c', '2', '-W', '2', c2.ip]);
  await c2.sandbox.exec('ping', ['-c', '2', '-W', '2', c1.ip]);
  const learned = (await birdRoutes(h1)).filter((r) => r.gateway === h2.ip);
  assert.deepEqual(
    learned.map((r) => r.dst.endsWith('/26')),
    [true],
    `h1 should hold h2's block, not /32s: ${JSON.stringify(learned)}`,
  );
  // Our own block is a blackhole route installed by BIRD: unused addresses stop here.
  assert.ok((await birdRoutes(h1)).some((r) => r.type === 'blackhole'));
});

/** Whether this kernel makes IP-in-IP devices (this machine's has no ipip module). */
async function ipipWorks(): Promise<boolean> {
  const probe = await scope.create('ipip');
  return probe.ip(['link', 'add', 'name', 'ipprobe', 'type', 'ipip']).then(
    () => true,
    () => false,
  );
}

test('IP-in-IP pools: BIRD puts the BGP routes on tunl0 on-link (Always), natively within the subnet (CrossSubnet), back on the fabric (Never)', async () => {
  const [h1, h2] = hosts;
  const c1 = await runContainer(h1);
  const c2 = await runContainer(h2);
  const real = await ipipWorks();
  // Without the ipip module (or dummy) a veth named tunl0 stands in, its peer up so routes through
  // it are accepted: the routes BIRD programs are what is proven here; packets through the tunnel
  // only where the kernel has the real device.
  if (!real)
    for (const h of hosts) {
      await h.ns.ip(['link', 'add', 'tunl0', 'type', 'veth', 'peer', 'name', 'tunl0-peer']);
      await h.ns.ip(['link', 'set', 'tunl0-peer', 'up']);
    }
  const toH2 = async () =>
    (await h1.ns.ipJson<Array<{ dst: string; gateway?: string; dev?: string; flags?: string[] }>>(['route', 'show', 'proto', 'bird'])).filter(
      (r) => r.gateway === h2.ip,
    );
  try {
    assert.equal((await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--ipip-mode', 'Always'])).code, 0);
    await until(async () => (await toH2()).some((r) => r.dev === 'tunl0' && !!r.flags?.includes('onlink')), "h2's block through tunl0, on-link");
    const [tunl] = await h1.ns.ipJson<Array<{ mtu: number; flags: string[] }>>(['link', 'show', 'dev', 'tunl0']);
    assert.equal(tunl.mtu, 1480, 'uplink MTU less 20');
    assert.ok(tunl.flags.includes('UP'));
    if (real) await until(() => c1.sandbox.exec('ping', ['-c', '1', '-W', '1', c2.ip]).then(() => true), 'ping inside IP-in-IP');
    // Both hosts share the fabric's subnet: CrossSubnet routes them natively.
    assert.equal((await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--ipip-mode', 'CrossSubnet'])).code, 0);
    await until(async () => (await toH2()).some((r) => r.dev === 'eth0' && !r.flags?.includes('onlink')), "h2's block natively within the subnet");
    await until(() => c1.sandbox.exec('ping', ['-c', '1', '-W', '1', c2.ip]).then(() => true), 'native ping under CrossSubnet');
  } finally {
    assert.equal((await h1.node.cli(['pool', 'set', '10.65.0.0/16', '--ipip-mode', 'Never'])).code, 0);
  }
  await until(async () => (await toH2()).some((r) => r.dev === 'eth0'), "h2's block back on the fabric");
  await until(async () => !(await h1.ns.ipJson<Array<{ flags: string[] }>>(['link', 'show', 'dev', 'tunl0']))[0].flags.includes('UP'), 'tunl0 down again');
  await c2.sandbox.exec('ping', ['-c', '1', '-W', '2', c1.ip]);
  if (!real) for (const h of hosts) await h.ns.ip(['link', 'del', 'tunl0']);
});

test('IPv6 too: dual-stack containers on different hosts reach each other over routes learned by BGP, with CALICO_IP6 given or detected', async () => {
  const [h1, h2] = hosts;
  const c1 = await runContainer(h1, true);
  const c2 = await runContainer(h2, true);
  const v6routes = (h: (typeof hosts)[number]) => h.ns.ipJson<Array<{ dst: string; gateway?: string }>>(['-6', 'route', 'show', 'proto', 'bird']);
  await until(async () => (await v6routes(h1)).some((r) => r.gateway === 'fd31::2' && r.dst.endsWith('/122')), "h1 learned h2's IPv6 block");
  await until(async () => await c1.sandbox.exec('ping', ['-6', '-c', '1', '-W', '1', c2.ip6]).then(() => true), 'ping6 h1 -> h2');
  await c2.sandbox.exec('ping', ['-6', '-c', '1', '-W', '2', c1.ip6]);
});

test("calico status shows the BGP sessions, the routes learned and this host's blocks", async () => {
  const [h1, h2] = hosts;
  await until(async () => {
    const st = JSON.parse((await h1.node.cli(['status', '--json'])).stdout);
    return st.bgp?.sessions?.some(
      (x: { name: string; state: string; info: string }) => x.name === `mesh_${h2.ip.replace(/\./g, '_')}` && x.info.startsWith('Established'),
    );
  }, 'h1 reports its session to h2 established');
  const st = JSON.parse((await h1.node.cli(['status', '--json'])).stdout);
  assert.ok(
    st.bgp.routes.some((r: { via?: string; dst: string }) => r.via === h2.ip && r.dst.endsWith('/26')),
    JSON.stringify(st.bgp.routes),
  );
  assert.ok(st.blocks.length >= 1);
  const human = (await h1.node.cli(['status'])).stdout;
  assert.match(human, /bgp sessions:\n.*PEER/);
  assert.match(human, /Established/);
});

test('calico node killed and restarted on one host: traffic to its running containers keeps flowing (graceful restart)', async () => {
  const [h1, h2] = hosts;
  const c1 = await runContainer(h1);
  const c2 = await runContainer(h2);
  await until(async () => await c1.sandbox.exec('ping', ['-c', '1', '-W', '1', c2.ip]).then(() => true), 'cross-host ping before the kill');
  const pinging = c1.sandbox.exec('ping', ['-c', '40', '-i', '0.25', '-W', '1', c2.ip], { timeoutMs: 60_000 }).then(
    (r) => r.stdout,
    (err: Error) => err.message,
  );
  await new Promise((r) => setTimeout(r, 1500));
  await h2.node.stop('SIGKILL'); // BIRD goes with it; its peers keep its routes as stale
  await new Promise((r) => setTimeout(r, 2000));
  await h2.node.restart();
  await h2.node.ready();
  const out = await pinging;
  const loss = Number(/(\d+)% packet loss/.exec(out)?.[1] ?? '100');
  assert.equal(loss, 0, out);
  // Its first start found no BIRD routes in the kernel; the restart found h1's and recovered.
  await until(async () => birdStarts(h2.node).length === 2, 'BIRD started again');
  assert.deepEqual(birdStarts(h2.node), [false, true]);
});

test('a host that joins later is reached by every container, with no configuration by hand', async () => {
  const h3 = await addHost(3);
  const c3 = await runContainer(h3);
  const c1 = await runContainer(hosts[0]);
  await until(async () => (await birdRoutes(hosts[0])).some((r) => r.gateway === h3.ip), 'h1 learned h3');
  await until(async () => (await birdRoutes(h3)).some((r) => r.gateway === hosts[0].ip), 'h3 learned h1');
  await until(async () => await c1.sandbox.exec('ping', ['-c', '1', '-W', '1', c3.ip]).then(() => true), 'ping h1 -> h3');
  await c3.sandbox.exec('ping', ['-c', '1', '-W', '2', c1.ip]);
  // A first start: nothing to recover, so no graceful-restart wait before routes reach the kernel.
  assert.deepEqual(birdStarts(h3.node), [false]);
});

test('with the mesh off, hosts peering only with a plain BIRD route reflector (a top-of-rack setup) still reach each other', async () => {
  const [h1, h2] = hosts;
  const tor = await fabric.addHost('tor', 250);
  const conf = [
    'router id 172.31.0.250;',
    'protocol device { }',
    'template bgp clients { local 172.31.0.250 as 64512; rr client; rr cluster id 1.0.0.1; direct; ipv4 { import all; export all; }; }',
    ...[h1, h2].map((h, i) => `protocol bgp c${i} from clients { neighbor ${h.ip} as 64512; }`),
  ].join('\n');
  const dir = await tor.ns.exec('mktemp', ['-d']);
  const path = `${dir.stdout.trim()}/bird.conf`;
  fs.writeFileSync(path, conf + '\n');
  tor.ns.spawn('bird', ['-f', '-c', path, '-s', `${dir.stdout.trim()}/bird.ctl`]);
  await h1.node.cli(['bgp', 'config', '--mesh', 'off']);
  await h1.node.cli(['bgp', 'peer', 'add', 'tor', '--ip', '172.31.0.250', '--as', '64512']);
  try {
    // Mesh sessions go, the reflector session comes, and routes flow through it.
    await until(async () => {
      const st = JSON.parse((await h1.node.cli(['status', '--json'])).stdout);
      const names = (st.bgp?.sessions ?? []).map((x: { name: string }) => x.name);
      return names.length === 1 && names[0] === 'global_172_31_0_250';
    }, 'h1 peers only with the reflector');
    const c1 = await runContainer(h1);
    const c2 = await runContainer(h2);
    await until(async () => await c1.sandbox.exec('ping', ['-c', '1', '-W', '1', c2.ip]).then(() => true), 'ping through reflected routes');
    const st = JSON.parse((await h1.node.cli(['status', '--json'])).stdout);
    assert.ok(
      st.bgp.routes.some((r: { via?: string; protocol: string }) => r.via === h2.ip && r.protocol === 'global_172_31_0_250'),
      JSON.stringify(st.bgp.routes),
    );
  } finally {
    await h1.node.cli(['bgp', 'peer', 'rm', 'tor']);
    await h1.node.cli(['bgp', 'config', '--mesh', 'on']);
  }
});

test('a host removed with calico node rm disappears from every peer, with its routes, blocks and addresses', async () => {
  const [h1, , h3] = hosts;
  const refused = await h1.node.cli(['node', 'rm', 'bh3'], { allowFail: true });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /host bh3 is alive/);
  assert.equal(await h3.node.stop('SIGTERM'), 0);
  const out = (await h1.node.cli(['node', 'rm', 'bh3'])).stdout;
  assert.match(out, /removed host bh3: \d+ endpoint\(s\), 1 network\(s\), \d+ address\(es\) released, 1 block\(s\) deleted/);
  await until(async () => !(await birdRoutes(h1)).some((r) => r.gateway === h3.ip), 'h1 dropped the routes via h3', 15_000);
  const names = (JSON.parse((await h1.node.cli(['node', 'ls', '--json'])).stdout) as Array<{ name: string }>).map((x) => x.name);
  assert.deepEqual(names.sort(), ['bh1', 'bh2']);
  const blocks = JSON.parse((await h1.node.cli(['ipam', 'show', '--json'])).stdout) as Array<{ affinity: string }>;
  assert.ok(!blocks.some((b) => b.affinity === 'bh3'));
});
