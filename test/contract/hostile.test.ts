/**
 * Hostile input through the real sockets of a real `calico node` (real etcd, real kernel in a
 * throw-away namespace): malformed bodies, hostile IDs, impossible addresses, colliding
 * interfaces, conflicting bursts, slow and vanishing clients. Every refusal is a 4xx/5xx with an
 * Err naming the field, writes nothing to etcd or the kernel, and the node stays up with
 * `calico ipam check` clean and no unhandled rejection in its log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Netns } from '../harness/netns';
import type { TestEtcd } from '../harness/etcd';
import type { CalicoProcess } from '../harness/calico';
import { startContractHost, type ContractHost } from '../harness/contract-host';
import type { FakeDocker, Reply } from '../harness/plugin-client';

const hex = () => randomBytes(32).toString('hex');
const PREFIX = '/calico-libnetwork/v1/';
const V4 = { AddressSpace: 'CalicoLocalAddressSpace', Pool: '0.0.0.0/0', Gateway: '0.0.0.0/0' };

let host: ContractHost | undefined;
let ns: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
let docker: FakeDocker;
let slowClient: Promise<{ ms: number; reply: string }>;

/** Raw bytes to a socket; resolves with what came back once the server closes (or `waitMs`). */
function rawExchange(sock: string, chunks: string[], waitMs = 15_000): Promise<{ ms: number; reply: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const c = net.connect(sock);
    let reply = '';
    const timer = setTimeout(() => (c.destroy(), resolve({ ms: Date.now() - t0, reply })), waitMs);
    c.on('data', (d) => (reply += d.toString()));
    c.on('error', reject);
    c.on('close', () => (clearTimeout(timer), resolve({ ms: Date.now() - t0, reply })));
    c.on('connect', () => chunks.forEach((ch) => c.write(ch)));
  });
}

/** One request with any method, parsed like callPlugin's reply. */
async function request(sock: string, method: string, path: string, body = ''): Promise<Reply & { allow?: string }> {
  const head = `${method} ${path} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  const { reply } = await rawExchange(sock, [head + body]);
  const [headers, raw = ''] = reply.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1] ?? 0);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  return { status, body: parsed, raw, allow: /\r\nAllow: ([^\r]*)/i.exec(headers)?.[1] };
}

/** Every key under the prefix with its mod revision, read through etcd's JSON gateway. */
async function etcdState(): Promise<Record<string, string>> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const body = JSON.stringify({ key: b64(PREFIX), range_end: b64(PREFIX.slice(0, -1) + '0'), keys_only: true });
  const script = `fetch(${JSON.stringify(`${etcd.endpoint}/v3/kv/range`)},{method:'POST',body:${JSON.stringify(body)}}).then(r=>r.text()).then(t=>process.stdout.write(t))`;
  const out = JSON.parse((await ns.exec(process.execPath, ['-e', script])).stdout) as { kvs?: Array<{ key: string; mod_revision: string }> };
  return Object.fromEntries((out.kvs ?? []).map((kv) => [Buffer.from(kv.key, 'base64').toString(), kv.mod_revision]));
}

async function etcdGet(key: string): Promise<string> {
  const body = JSON.stringify({ key: Buffer.from(PREFIX + key).toString('base64') });
  const script = `fetch(${JSON.stringify(`${etcd.endpoint}/v3/kv/range`)},{method:'POST',body:${JSON.stringify(body)}}).then(r=>r.text()).then(t=>process.stdout.write(t))`;
  const out = JSON.parse((await ns.exec(process.execPath, ['-e', script])).stdout) as { kvs?: Array<{ value: string }> };
  return Buffer.from(out.kvs?.[0]?.value ?? '', 'base64').toString();
}

async function etcdPut(key: string, value: string): Promise<void> {
  const body = JSON.stringify({ key: Buffer.from(PREFIX + key).toString('base64'), value: Buffer.from(value).toString('base64') });
  await ns.exec(process.execPath, [
    '-e',
    `fetch(${JSON.stringify(`${etcd.endpoint}/v3/kv/put`)},{method:'POST',body:${JSON.stringify(body)}}).then(r=>r.text())`,
  ]);
}

/** Runs refused requests and asserts each is a 4xx/5xx whose Err matches, and etcd is untouched. */
async function refusedWithoutWrites(cases: Array<[string, () => Promise<Reply>, RegExp]>): Promise<void> {
  const before = await etcdState();
  for (const [what, call, err] of cases) {
    const r = await call();
    assert.ok(r.status >= 400 && r.status < 600, `${what}: status ${r.status}: ${r.raw.slice(0, 300)}`);
    assert.equal(typeof r.body?.Err, 'string', `${what}: no Err in ${r.raw.slice(0, 300)}`);
    assert.match(r.body.Err, err, what);
    assert.ok(r.raw.length < 4096, `${what}: a ${r.raw.length}-byte error`);
  }
  assert.deepEqual(await etcdState(), before, 'a refused request wrote to etcd');
}

const createNetworkBody = (id: string, v4: unknown[], v6: unknown[] = [], generic: unknown = {}) => ({
  NetworkID: id,
  Options: { 'com.docker.network.enable_ipv6': v6.length > 0, 'com.docker.network.generic': generic },
  IPv4Data: v4,
  IPv6Data: v6,
});

async function network(): Promise<string> {
  const id = hex();
  await docker.ok('net', 'CreateNetwork', createNetworkBody(id, [V4]));
  return id;
}

async function address(ip = ''): Promise<string> {
  return (await docker.ok('ipam', 'RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: ip, Options: null })).Address as string;
}

async function endpoint(nid: string, eid = hex()): Promise<{ eid: string; a: string }> {
  const a = await address();
  await docker.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a, AddressIPv6: '', MacAddress: '' }, Options: null });
  await docker.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '/var/run/docker/netns/h', Options: null });
  return { eid, a };
}

async function teardown(nid: string, ep: { eid: string; a: string }): Promise<void> {
  await docker.ok('net', 'Leave', { NetworkID: nid, EndpointID: ep.eid });
  await docker.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: ep.eid });
  await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: ep.a.split('/')[0] });
}

const routesVia = async (ifName: string) => (await ns.ipJson<Array<{ dst: string }>>(['route', 'show', 'dev', ifName])).map((r) => r.dst).sort();

before(async () => {
  host = await startContractHost('hs');
  ({ ns, etcd, node, docker } = host);
  // A client that never finishes its headers, left running while everything else goes on.
  slowClient = rawExchange(docker.networkSock, ['POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\n'], 20_000);
});

after(async () => {
  await host?.destroy();
});

describe('CreateNetwork IPAM data is checked like RequestPool checks a subnet', () => {
  test('bad pools, pools of the wrong family or outside every pool, and bad aux addresses are refused naming the field, writing nothing', async () => {
    const pool = (Pool: string, extra = {}) => ({ ...V4, Pool, ...extra });
    const create =
      (v4: unknown[], v6: unknown[] = []) =>
      () =>
        docker.net('CreateNetwork', createNetworkBody(hex(), v4, v6));
    await refusedWithoutWrites([
      ['bad address', create([pool('999.1.1.1/32')]), /field "IPv4Data\.0\.Pool".*not a CIDR/],
      ['prefix /33', create([pool('10.65.0.0/33')]), /field "IPv4Data\.0\.Pool".*more than 32 bits/],
      ['not a CIDR', create([pool('not-a-cidr')]), /field "IPv4Data\.0\.Pool".*not a CIDR/],
      ['mapped, /200', create([], [{ ...V4, Gateway: '::/0', Pool: '::ffff:1.2.3.4/200' }]), /field "IPv6Data\.0\.Pool"/],
      ['IPv6 in IPv4Data', create([pool('fd65::/64')]), /field "IPv4Data\.0\.Pool".*IPv6 network in the IPv4 list/],
      ['outside every pool', create([pool('10.99.0.0/16')]), /field "IPv4Data\.0\.Pool".*not inside any Calico IP pool/],
      ['host bits', create([pool('10.65.0.1/16')]), /field "IPv4Data\.0\.Pool".*host bits set/],
      ['aux /33', create([pool('10.65.0.0/16', { AuxAddresses: { router: '10.250.0.1/33' } })]), /field "IPv4Data\.0\.AuxAddresses\.router".*more than 32/],
      ['aux outside', create([pool('10.65.40.0/24', { AuxAddresses: { r: '10.65.41.1/32' } })]), /field "IPv4Data\.0\.AuxAddresses\.r".*outside/],
      ['aux family', create([pool('10.65.40.0/24', { AuxAddresses: { r: 'fd65::1/128' } })]), /field "IPv4Data\.0\.AuxAddresses\.r".*not an IPv4/],
      ['aux zone', create([], [{ ...V4, Gateway: '::/0', Pool: '::/0', AuxAddresses: { r: 'fd65::1%eth0/128' } }]), /AuxAddresses\.r.*IPv6 zone/],
      ['foreign gateway', create([pool('10.65.0.0/16', { Gateway: '10.65.0.1/16' })]), /--ipam-driver calico-ipam/],
    ]);
  });
});

describe('option depth and size are bounded', () => {
  test('a value nested 100,000 deep and 50,000 unknown options get short 400s naming the option', async () => {
    const deep = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000);
    const raw = (generic: string) => `{"NetworkID":"${hex()}","Options":{"com.docker.network.generic":${generic}},"IPv4Data":[${JSON.stringify(V4)}]}\n`;
    const many = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`opt${i}`, 'x']));
    await refusedWithoutWrites([
      [
        'deep generic',
        () => docker.net('CreateNetwork', { raw: raw(`{"com.docker.network.driver.mtu":${deep}}`) }),
        /field "Options\.com\.docker\.network\.generic\.com\.docker\.network\.driver\.mtu\.a\.a.*nests deeper than 32/,
      ],
      [
        'deep endpoint option',
        () => docker.net('CreateEndpoint', { raw: `{"NetworkID":"${hex()}","EndpointID":"${hex()}","Options":{"x":${deep}}}` }),
        /field "Options\.x\.a\.a/,
      ],
      ['deep IPAM body', () => docker.ipam('RequestAddress', { raw: `{"PoolID":"CalicoPoolIPv4","Options":${deep}}` }), /nests deeper/],
      [
        '50,000 IPAM options',
        () => docker.ipam('RequestPool', { Pool: '', Options: many, V6: false }),
        /IPAM option\(s\) opt0, opt1, opt10, opt100, opt1000 and 49995 more/,
      ],
      [
        '50,000 unknown options',
        () => docker.net('CreateNetwork', createNetworkBody(hex(), [V4], [], many)),
        /options opt0, opt1, opt10, opt100, opt1000 and 49995 more/,
      ],
      [
        'object option value',
        () => docker.net('CreateNetwork', createNetworkBody(hex(), [V4], [], { 'com.docker.network.driver.mtu': { a: 1 } })),
        /-o com\.docker\.network\.driver\.mtu: its value must be a string/,
      ],
    ]);
    assert.doesNotMatch(node.logs(), /Maximum call stack/);
  });
});

describe('hostile IDs and malformed bodies', () => {
  test('IDs with quotes, slashes, control characters or a megabyte are refused naming the field', async () => {
    const nid = await network();
    const bad = [`x'"y`, '../../hosts/evil', 'a\u0000b', 'ab\ncd', 'x'.repeat(200_000), ''];
    const cases: Array<[string, () => Promise<Reply>, RegExp]> = [];
    for (const id of bad) {
      const label = JSON.stringify(id.slice(0, 20));
      cases.push(
        [`CreateNetwork ${label}`, () => docker.net('CreateNetwork', createNetworkBody(id, [V4])), /field "NetworkID"/],
        [
          `CreateEndpoint ${label}`,
          () => docker.net('CreateEndpoint', { NetworkID: nid, EndpointID: id, Interface: { Address: '10.65.1.1/32' } }),
          /field "EndpointID"/,
        ],
        [`Join ${label}`, () => docker.net('Join', { NetworkID: id, EndpointID: hex(), SandboxKey: '' }), /field "NetworkID"/],
      );
    }
    cases.push(
      ['SandboxKey with quotes', () => docker.net('Join', { NetworkID: nid, EndpointID: hex(), SandboxKey: `/x'"y` }), /field "SandboxKey"/],
      [
        'MAC',
        () => docker.net('CreateEndpoint', { NetworkID: nid, EndpointID: hex(), Interface: { Address: '10.65.1.1/32', MacAddress: 'x"y' } }),
        /invalid MAC address/,
      ],
      ['Delete with a slash', () => docker.net('DeleteNetwork', { NetworkID: 'a/b' }), /field "NetworkID"/],
    );
    await refusedWithoutWrites(cases);
    await docker.ok('net', 'DeleteNetwork', { NetworkID: nid });
  });

  test('bodies that are not objects, not JSON, too large or sent with another method are refused', async () => {
    await refusedWithoutWrites([
      ['array', () => docker.net('CreateNetwork', { raw: '[]' }), /field "\(body\)"/],
      ['string', () => docker.ipam('RequestPool', { raw: '"x"' }), /field "\(body\)"/],
      ['null', () => docker.net('Join', { raw: 'null' }), /field "\(body\)"/],
      ['not JSON', () => docker.net('CreateNetwork', { raw: '{"NetworkID": ' }), /malformed JSON/],
      ['wrong type', () => docker.ipam('RequestAddress', { PoolID: 7 }), /field "PoolID"/],
      ['5 MB', () => docker.net('CreateNetwork', { raw: `{"x":"${'y'.repeat(5 << 20)}"}` }), /over the \d+-byte limit/],
      ['PUT', () => request(docker.networkSock, 'PUT', '/NetworkDriver.CreateNetwork', JSON.stringify(createNetworkBody(hex(), [V4]))), /only uses POST/],
      ['GET', () => request(docker.ipamSock, 'GET', '/IpamDriver.GetCapabilities'), /method GET is not allowed/],
      ['unknown path', () => docker.net(`X${'y'.repeat(10_000)}`, {}), /does not implement/],
    ]);
    const r = await request(docker.networkSock, 'DELETE', '/NetworkDriver.DeleteNetwork', '{}');
    assert.equal(r.status, 405);
    assert.equal(r.allow, 'POST');
  });
});

describe('impossible addresses', () => {
  test('zones, mapped addresses, impossible prefixes and forged PoolIDs are refused naming the field', async () => {
    const pool = (await docker.ok('ipam', 'RequestPool', { AddressSpace: 'x', Pool: '10.65.50.0/24', SubPool: '', Options: {}, V6: false })).PoolID as string;
    await refusedWithoutWrites([
      ['zone', () => docker.ipam('RequestAddress', { PoolID: 'CalicoPoolIPv6', Address: 'fd65::7%eth0' }), /Address "fd65::7%eth0" has an IPv6 zone/],
      [
        'mapped',
        () => docker.ipam('RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: '::ffff:10.65.0.9' }),
        /IPv4-mapped.*give the IPv4 address 10\.65\.0\.9/,
      ],
      ['mapped subnet', () => docker.ipam('RequestPool', { Pool: '::ffff:10.65.0.0/120', V6: true }), /--subnet .*IPv4-mapped/],
      ['zone subnet', () => docker.ipam('RequestPool', { Pool: 'fd65::%eth0/64', V6: true }), /--subnet .*IPv6 zone/],
      [
        'release /33',
        () => docker.ipam('ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: '10.65.0.5/33' }),
        /Address "10\.65\.0\.5\/33" has prefix length 33/,
      ],
      ['release outside', () => docker.ipam('ReleaseAddress', { PoolID: pool, Address: '10.65.51.1' }), /outside the subnet 10\.65\.50\.0\/24 of its PoolID/],
      ['release family', () => docker.ipam('ReleaseAddress', { PoolID: pool, Address: 'fd65::1' }), /not an IPv4 address/],
      ['release no PoolID', () => docker.ipam('ReleaseAddress', { Address: '10.65.0.5' }), /field "PoolID"/],
      ['forged PoolID', () => docker.ipam('RequestAddress', { PoolID: 'CalicoPoolIPv4|fd65::/64' }), /subnet is not IPv4/],
      [
        'Interface.Address mapped',
        () => docker.net('CreateEndpoint', { NetworkID: hex(), EndpointID: hex(), Interface: { Address: '::ffff:10.65.0.9/128' } }),
        /Interface\.Address.*IPv4-mapped/,
      ],
    ]);
  });
});

describe('replays and colliding interface names', () => {
  test('a replayed CreateEndpoint with another address is refused and the endpoint keeps its own', async () => {
    const nid = await network();
    const ep = await endpoint(nid);
    const other = await address();
    const r = await docker.net('CreateEndpoint', { NetworkID: nid, EndpointID: ep.eid, Interface: { Address: other }, Options: null });
    assert.equal(r.status, 400);
    assert.match(r.body.Err, new RegExp(`endpoint ${ep.eid.slice(0, 12)} already exists and it holds ${ep.a}`));
    const listed = JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout) as Array<{ id: string; ipv4: string[] }>;
    assert.deepEqual(listed.find((e) => e.id === ep.eid)?.ipv4, [ep.a]);
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: other.split('/')[0] });
    // ipam check sees an allocation whose live endpoint does not list it (the old fault's trace).
    const rec = JSON.parse(await etcdGet(`endpoints/hs-host/${ep.eid}`)) as Record<string, unknown>;
    await etcdPut(`endpoints/hs-host/${ep.eid}`, JSON.stringify({ ...rec, ipv4: [] }));
    const check = await node.cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
    const kinds = (JSON.parse(check.stdout) as { problems: Array<{ kind: string; ip: string }> }).problems.map((p) => [p.kind, p.ip]);
    assert.deepEqual(kinds, [['allocation-not-listed-by-endpoint', ep.a.split('/')[0]]]);
    await etcdPut(`endpoints/hs-host/${ep.eid}`, JSON.stringify(rec));
    await teardown(nid, ep);
    await docker.ok('net', 'DeleteNetwork', { NetworkID: nid });
  });

  test("an ID sharing a live endpoint's first 11 characters never touches its veth or routes, and is refused on CreateEndpoint", async () => {
    const nid = await network();
    const ep = await endpoint(nid);
    const ifName = `cali${ep.eid.slice(0, 11)}`;
    const twin = ep.eid.slice(0, 11) + hex().slice(11);
    const routes = await routesVia(ifName);
    assert.deepEqual(routes, [ep.a.split('/')[0]]);
    assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: nid, EndpointID: twin }), {});
    assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: twin }), {});
    const a = await address();
    const c = await docker.net('CreateEndpoint', { NetworkID: nid, EndpointID: twin, Interface: { Address: a }, Options: null });
    assert.equal(c.status, 400);
    assert.match(c.body.Err, new RegExp(`would use host interface ${ifName}, which endpoint ${ep.eid.slice(0, 12)} already uses`));
    const j = await docker.net('Join', { NetworkID: nid, EndpointID: twin, SandboxKey: '', Options: null });
    assert.equal(j.status, 400);
    assert.deepEqual(await routesVia(ifName), routes, "the live endpoint's routes changed");
    assert.match(node.logs(), /left host interface cali\w+ in place, it belongs to another endpoint/);
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: a.split('/')[0] });
    await teardown(nid, ep);
    assert.deepEqual(await ns.ipJson(['link', 'show', 'type', 'veth']), []);
    await docker.ok('net', 'DeleteNetwork', { NetworkID: nid });
  });

  test('a burst of CreateEndpoints for one ID with different addresses lets exactly one through', async () => {
    const nid = await network();
    const eid = hex();
    const addrs = await Promise.all(Array.from({ length: 12 }, () => address()));
    const replies = await Promise.all(
      addrs.map((a) => docker.net('CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a }, Options: null })),
    );
    const won = addrs.filter((_, i) => replies[i].status === 200);
    assert.equal(won.length, 1, replies.map((r) => r.raw).join('\n'));
    for (const r of replies.filter((x) => x.status !== 200)) assert.match(r.body.Err, /already exists and it holds/);
    // Concurrent requests for one --ip: one holder, the rest told who holds it.
    const want = '10.65.99.9';
    const ips = await Promise.all(Array.from({ length: 8 }, () => docker.ipam('RequestAddress', { PoolID: 'CalicoPoolIPv4', Address: want, Options: null })));
    assert.equal(ips.filter((r) => r.status === 200).length, 1);
    for (const r of ips.filter((x) => x.status !== 200)) assert.match(r.body.Err, /already in use/);
    await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: want });
    await docker.ok('net', 'DeleteEndpoint', { NetworkID: nid, EndpointID: eid });
    for (const a of addrs) await docker.ok('ipam', 'ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: a.split('/')[0] });
    await docker.ok('net', 'DeleteNetwork', { NetworkID: nid });
  });
});

describe('the CLI refuses the same values', () => {
  test('impossible addresses given to calico are refused with exit 1 and a message naming them', async () => {
    for (const [args, err] of [
      [['pool', 'add', '10.0.0.0/33'], /more than 32 bits/],
      [['pool', 'add', 'fd00::%eth0/64'], /IPv6 zone/],
      [['ipam', 'show', '--ip', '::ffff:10.65.0.1'], /IPv4-mapped/],
    ] as const) {
      const r = await node.cli([...args], { allowFail: true });
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, err);
    }
  });
});

describe('slow and vanishing clients', () => {
  test('a client that aborts mid-body is logged at debug, not as an internal error', async () => {
    await rawExchange(docker.networkSock, ['POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"Netw'], 300);
    await new Promise((r) => setTimeout(r, 300));
    assert.match(node.logs(), /"level":"debug","message":"plugin client went away"/);
    assert.doesNotMatch(node.logs(), /internal error: aborted/);
  });

  test('a client that never finishes its headers is dropped after the header timeout, and everyone else was served meanwhile', async () => {
    const { ms, reply } = await slowClient;
    assert.match(reply, /^HTTP\/1\.1 408/);
    assert.ok(ms >= 9_000 && ms < 13_000, `dropped after ${ms} ms`);
  });
});

describe('after all of it', () => {
  test('the node is up, ipam check is clean, Docker being away was logged once and nothing was unhandled', async () => {
    assert.ok(node.pid(), 'calico node exited');
    assert.deepEqual(await docker.ok('net', 'GetCapabilities'), { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true });
    const check = await node.cli(['ipam', 'check', '--grace', '0', '--json'], { allowFail: true });
    assert.deepEqual(JSON.parse(check.stdout).problems, []);
    assert.equal(check.code, 0);
    const logs = node.logs();
    assert.doesNotMatch(logs, /unhandled/i);
    assert.equal(logs.split('\n').filter((l) => /"level":"warn"/.test(l) && /cannot follow Docker/.test(l)).length, 1);
  });
});
