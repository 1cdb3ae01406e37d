/**
 * Published ports, the pure parts: Docker's port map read and checked (ports/request.ts), host
 * ports chosen against other containers' (ports/allocate.ts), the DNAT plan and its text for
 * both backends (ports/rules.ts), and the firewall admitting published connections.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bindingFamilies, describeBinding, parsePortMap, sameRequest } from '../../ports/request';
import { DEFAULT_EPHEMERAL, type Holder, choosePorts, parseEphemeralRange } from '../../ports/allocate';
import { iptablesRules, portsNeeded, portsPlan, renderIptables, renderNft } from '../../ports/rules';
import type { EndpointRecord, PortBindingRecord } from '../../lib/datastore/records';
import { BadRequestError, ConflictError } from '../../lib/errors';
import * as IPT from '../../firewall/iptables/compile';

const HOST_IPS = ['127.0.0.1', '172.31.0.1', '::1', 'fd31::1'];
const tcp = (hostPort: number, port: number, extra: Partial<PortBindingRecord> = {}): PortBindingRecord => ({
  protocol: 'tcp',
  port,
  hostPort,
  hostPortEnd: hostPort,
  ...extra,
});

describe("Docker's port map", () => {
  test('is read into bindings: protocol by number, host port range, any host port, host address', () => {
    const got = parsePortMap(
      [
        { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 },
        { Proto: 17, IP: '', Port: 53, HostIP: '172.31.0.1', HostPort: 5353, HostPortEnd: 0 },
        { Proto: 6, IP: '', Port: 81, HostIP: '0.0.0.0', HostPort: 9000, HostPortEnd: 9010 },
        { Proto: 132, Port: 9, HostIP: 'FD31::1', HostPort: 0, HostPortEnd: 0 },
      ],
      HOST_IPS,
    );
    assert.deepEqual(got, [
      { protocol: 'tcp', port: 80, hostPort: 8080, hostPortEnd: 8080 },
      { protocol: 'udp', port: 53, hostIp: '172.31.0.1', hostPort: 5353, hostPortEnd: 5353 },
      { protocol: 'tcp', port: 81, hostIp: '0.0.0.0', hostPort: 9000, hostPortEnd: 9010 },
      { protocol: 'sctp', port: 9, hostIp: 'fd31::1', hostPort: 0, hostPortEnd: 0 },
    ]);
    assert.deepEqual(parsePortMap(undefined, HOST_IPS), []);
    assert.deepEqual(parsePortMap(null, HOST_IPS), []);
    assert.deepEqual(parsePortMap([], HOST_IPS), []);
  });

  test('a port below 1 or above 65535 is refused naming the field and the allowed values', () => {
    const refused = (entry: Record<string, unknown>, re: RegExp) =>
      assert.throws(
        () => parsePortMap([{ Proto: 6, Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...entry }], HOST_IPS),
        (e: unknown) => e instanceof BadRequestError && re.test(e.message),
      );
    refused({ Port: 0 }, /field "Port": 0 is not allowed; allowed values: 1-65535$/);
    refused({ Port: 65536 }, /field "Port": 65536 .*1-65535/);
    refused({ HostPort: 70000, HostPortEnd: 70000 }, /field "HostPort": 70000 .*allowed values: 1-65535, or 0 for any free port/);
    refused({ HostPort: -1 }, /field "HostPort": -1/);
    refused({ HostPort: 8080, HostPortEnd: 8000 }, /field "HostPortEnd": 8000 .*8080-65535/);
    refused({ Proto: 1 }, /field "Proto": 1 .*6 \(tcp\), 17 \(udp\), 132 \(sctp\)/);
    refused({ Port: '80' }, /field "Port": "80"/);
    assert.throws(() => parsePortMap('8080:80', HOST_IPS), /expected a list of port bindings/);
  });

  test("a host address that is not this host's, or a loopback one, is refused listing the allowed values", () => {
    assert.throws(
      () => parsePortMap([{ Proto: 6, Port: 80, HostIP: '192.0.2.9', HostPort: 8080 }], HOST_IPS),
      /field "HostIP": "192\.0\.2\.9" is not allowed; allowed values: "", 0\.0\.0\.0, :: \(every address of this host\) or one of this host's addresses: 172\.31\.0\.1, fd31::1$/,
    );
    assert.throws(() => parsePortMap([{ Proto: 6, Port: 80, HostIP: '127.0.0.1', HostPort: 8080 }], HOST_IPS), /loopback addresses cannot be published/);
    assert.throws(() => parsePortMap([{ Proto: 6, Port: 80, HostIP: 'localhost', HostPort: 8080 }], HOST_IPS), /field "HostIP": "localhost"/);
  });

  test('a binding publishes on the families its host address and the endpoint have', () => {
    const both = new Set<4 | 6>([4, 6]);
    assert.deepEqual(bindingFamilies({}, both), [4, 6]);
    assert.deepEqual(bindingFamilies({}, new Set([4])), [4]);
    assert.deepEqual(bindingFamilies({ hostIp: '0.0.0.0' }, both), [4]);
    assert.deepEqual(bindingFamilies({ hostIp: '::' }, both), [6]);
    assert.deepEqual(bindingFamilies({ hostIp: 'fd31::1' }, new Set([4])), []);
  });

  test('bindings are shown as docker ps shows them, and a replay is recognised whatever was published', () => {
    assert.equal(describeBinding(tcp(8080, 80, { published: 8080 })), '8080->80/tcp');
    assert.equal(describeBinding(tcp(0, 80, { hostPortEnd: 0, hostIp: '172.31.0.1' })), '172.31.0.1:any->80/tcp');
    assert.equal(describeBinding(tcp(9000, 81, { hostPortEnd: 9010, hostIp: 'fd31::1' })), '[fd31::1]:9000-9010->81/tcp');
    assert.ok(sameRequest([tcp(8080, 80, { published: 8080 })], [tcp(8080, 80)]));
    assert.ok(!sameRequest([tcp(8080, 80)], [tcp(8081, 80)]));
    assert.ok(sameRequest(undefined, []));
  });
});

describe('choosing host ports', () => {
  const v4 = new Set<4 | 6>([4]);
  const holder = (bindings: PortBindingRecord[], containerName?: string, families = v4): Holder => ({
    endpoint: 'e'.repeat(64),
    containerName,
    families,
    bindings,
  });

  test('a fixed free port is published as asked', async () => {
    assert.deepEqual(await choosePorts([tcp(8080, 80)], v4, [], DEFAULT_EPHEMERAL, 'h1'), [tcp(8080, 80, { published: 8080 })]);
  });

  test('a port another container publishes is refused naming the port and the container, or its endpoint before the name is known', async () => {
    const taken = [tcp(8080, 80, { published: 8080 })];
    await assert.rejects(
      () => choosePorts([tcp(8080, 81)], v4, [holder(taken, 'web')], DEFAULT_EPHEMERAL, 'h1'),
      (e: unknown) =>
        e instanceof ConflictError && /^host port 8080->81\/tcp is already published on host h1 by container web \(endpoint eeeeeeeeeeee\)/.test(e.message),
    );
    await assert.rejects(() => choosePorts([tcp(8080, 81)], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h1'), /by endpoint eeeeeeeeeeee;/);
  });

  test('the same port on another protocol, another specific address or another family is no conflict', async () => {
    const taken = [tcp(8080, 80, { published: 8080, hostIp: '172.31.0.1' })];
    const both = new Set<4 | 6>([4, 6]);
    assert.equal((await choosePorts([{ ...tcp(8080, 80), protocol: 'udp' }], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h'))[0].published, 8080);
    assert.equal((await choosePorts([tcp(8080, 80, { hostIp: '172.31.0.2' })], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h'))[0].published, 8080);
    assert.equal((await choosePorts([tcp(8080, 80, { hostIp: '::' })], both, [holder(taken, undefined, both)], DEFAULT_EPHEMERAL, 'h'))[0].published, 8080);
    // Every address overlaps a specific one.
    await assert.rejects(() => choosePorts([tcp(8080, 80)], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h'), ConflictError);
    // Bindings not yet published (a container's second network, before any Program) hold nothing.
    assert.equal((await choosePorts([tcp(8080, 80)], v4, [holder([tcp(8080, 80)])], DEFAULT_EPHEMERAL, 'h'))[0].published, 8080);
  });

  test('a range takes its first free port and 0 (-P) the first free ephemeral one; a full range is refused', async () => {
    const taken = [tcp(9000, 1, { published: 9000 }), tcp(9001, 2, { published: 9001 })];
    assert.equal((await choosePorts([tcp(9000, 80, { hostPortEnd: 9005 })], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h'))[0].published, 9002);
    const two = await choosePorts(
      [tcp(0, 80, { hostPortEnd: 0 }), tcp(0, 81, { hostPortEnd: 0 })],
      v4,
      [holder([tcp(40000, 1, { published: 40000 })])],
      [40000, 40010],
      'h',
    );
    assert.deepEqual(
      two.map((b) => b.published),
      [40001, 40002],
    );
    await assert.rejects(
      () => choosePorts([tcp(9000, 80, { hostPortEnd: 9001 })], v4, [holder(taken)], DEFAULT_EPHEMERAL, 'h'),
      /every host port of 9000-9001->80\/tcp \(9000-9001\)/,
    );
    await assert.rejects(() => choosePorts([tcp(8080, 80), tcp(8080, 81)], v4, [], DEFAULT_EPHEMERAL, 'h'), /this container \(asked twice\)/);
  });

  test('a port something else on the host holds (a listener, Docker’s proxy for a bridge container) is refused, or skipped in a range', async () => {
    const busy = new Set([8080, 9000]);
    const free = async (_b: PortBindingRecord, port: number) => !busy.has(port);
    await assert.rejects(
      () => choosePorts([tcp(8080, 80)], v4, [], DEFAULT_EPHEMERAL, 'h1', free),
      (e: unknown) =>
        e instanceof ConflictError && /^host port 8080->80\/tcp is in use on host h1 by something else on this host .*Docker's bridge/.test(e.message),
    );
    assert.equal((await choosePorts([tcp(9000, 80, { hostPortEnd: 9003 })], v4, [], DEFAULT_EPHEMERAL, 'h1', free))[0].published, 9001);
    // A port a calico endpoint holds is named by that endpoint, not probed.
    await assert.rejects(
      () => choosePorts([tcp(8080, 80)], v4, [holder([tcp(8080, 1, { published: 8080 })], 'web')], DEFAULT_EPHEMERAL, 'h1', free),
      /by container web/,
    );
  });

  test("the ephemeral range is the kernel's ip_local_port_range, or Docker's default when unreadable", async () => {
    assert.deepEqual(parseEphemeralRange('32768\t60999\n'), [32768, 60999]);
    assert.deepEqual(parseEphemeralRange('x'), DEFAULT_EPHEMERAL);
    assert.deepEqual(parseEphemeralRange(undefined), DEFAULT_EPHEMERAL);
  });
});

const ep = (id: string, ipv4: string[], ipv6: string[], ports?: PortBindingRecord[]): EndpointRecord => ({
  id,
  host: 'h',
  network: 'n',
  ifName: `cali${id.slice(0, 11)}`,
  mac: '02:00:00:00:00:01',
  ipv4,
  ipv6,
  labels: {},
  createdAt: '2026-01-01T00:00:00Z',
  ...(ports ? { ports } : {}),
});

describe('the DNAT plan', () => {
  const eps = [
    ep(
      'b'.repeat(64),
      ['10.65.0.2/32'],
      ['fd65::2/128'],
      [tcp(8080, 80, { published: 8080 }), { ...tcp(5353, 53, { published: 5353, hostIp: '172.31.0.1' }), protocol: 'udp' }],
    ),
    ep('a'.repeat(64), ['10.65.0.1/32'], [], [tcp(9000, 90, { published: 9000 }), tcp(9100, 91)]),
    ep('c'.repeat(64), ['10.65.0.3/32'], []),
  ];

  test('holds only published bindings, per family of the endpoint, specific addresses first, the same whatever the order', () => {
    const plan = portsPlan(eps);
    assert.deepEqual(
      plan.rules[4].map((r) => [r.hostIp ?? '*', r.protocol, r.hostPort, r.addr, r.port]),
      [
        ['172.31.0.1', 'udp', 5353, '10.65.0.2', 53],
        ['*', 'tcp', 8080, '10.65.0.2', 80],
        ['*', 'tcp', 9000, '10.65.0.1', 90],
      ],
    );
    assert.deepEqual(
      plan.rules[6].map((r) => [r.hostIp ?? '*', r.protocol, r.hostPort, r.addr, r.port]),
      [['*', 'tcp', 8080, 'fd65::2', 80]],
    );
    assert.deepEqual(plan.hairpin, { 4: ['10.65.0.1', '10.65.0.2'], 6: ['fd65::2'] });
    assert.deepEqual(portsPlan([...eps].reverse()), plan);
    assert.equal(portsNeeded(portsPlan([eps[2]])), false);
  });

  test('a duplicate host port (which the driver never writes) goes to the endpoint first by ID, never twice', () => {
    const dup = [
      ep('z'.repeat(64), ['10.65.0.9/32'], [], [tcp(8080, 80, { published: 8080 })]),
      ep('y'.repeat(64), ['10.65.0.8/32'], [], [tcp(8080, 80, { published: 8080 })]),
    ];
    assert.deepEqual(
      portsPlan(dup).rules[4].map((r) => r.addr),
      ['10.65.0.8'],
    );
  });

  test('nftables: one table replaced whole, DNAT by map lookups for specific and every address, loopback left alone, hairpin masqueraded', () => {
    const text = renderNft(portsPlan(eps));
    assert.match(text, /^add table inet calico-ports\ndelete table inet calico-ports\ntable inet calico-ports \{/);
    assert.match(
      text,
      /map at4 \{ type ipv4_addr \. inet_proto \. inet_service : ipv4_addr \. inet_service; elements = \{ 172\.31\.0\.1 \. udp \. 5353 : 10\.65\.0\.2 \. 53 \}; \}/,
    );
    assert.match(
      text,
      /map any4 \{ type inet_proto \. inet_service : ipv4_addr \. inet_service; elements = \{ tcp \. 8080 : 10\.65\.0\.2 \. 80, tcp \. 9000 : 10\.65\.0\.1 \. 90 \}; \}/,
    );
    assert.match(text, /map any6 \{ type inet_proto \. inet_service : ipv6_addr \. inet_service; elements = \{ tcp \. 8080 : fd65::2 \. 80 \}; \}/);
    assert.match(text, /map at6 \{ type ipv6_addr \. inet_proto \. inet_service : ipv6_addr \. inet_service; \}/);
    assert.match(text, /type nat hook prerouting priority dstnat; policy accept;\n\s+fib daddr type local jump publish/);
    assert.match(
      text,
      /type nat hook output priority -100; policy accept;\n\s+ip daddr 127\.0\.0\.0\/8 return\n\s+ip6 daddr ::1 return\n\s+fib daddr type local jump publish/,
    );
    assert.match(text, /dnat ip to ip daddr \. meta l4proto \. th dport map @at4\n\s+dnat ip to meta l4proto \. th dport map @any4/);
    assert.match(text, /ct status dnat ip saddr \. ip daddr @hairpin4 masquerade/);
    assert.match(text, /set hairpin4 \{ type ipv4_addr \. ipv4_addr; elements = \{ 10\.65\.0\.1 \. 10\.65\.0\.1, 10\.65\.0\.2 \. 10\.65\.0\.2 \}; \}/);
    assert.equal(renderNft(portsPlan([])), 'add table inet calico-ports\ndelete table inet calico-ports\n');
  });

  test('iptables: a DNAT chain per family and the hairpin masquerade, as iptables-save spells them', () => {
    const plan = portsPlan(eps);
    assert.deepEqual(iptablesRules(plan, 4), [
      '-A cali-ports -d 172.31.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.65.0.2:53',
      '-A cali-ports -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.65.0.2:80',
      '-A cali-ports -p tcp -m tcp --dport 9000 -j DNAT --to-destination 10.65.0.1:90',
      '-A cali-ports-masq -s 10.65.0.1/32 -d 10.65.0.1/32 -m conntrack --ctstate DNAT -j MASQUERADE',
      '-A cali-ports-masq -s 10.65.0.2/32 -d 10.65.0.2/32 -m conntrack --ctstate DNAT -j MASQUERADE',
    ]);
    assert.deepEqual(iptablesRules(plan, 6)[0], '-A cali-ports -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd65::2]:80');
    assert.match(renderIptables(plan, 4), /^\*nat\n:cali-ports - \[0:0\]\n:cali-ports-masq - \[0:0\]\n-A cali-ports /);
  });

  test('an address or port that is not what it should be never reaches rule text', () => {
    assert.throws(() => portsPlan([ep('d'.repeat(64), ['10.65.0.1; flush ruleset/32'], [], [tcp(80, 80, { published: 80 })])]), /refusing to program/);
    assert.throws(() => portsPlan([ep('d'.repeat(64), ['10.65.0.1/32'], [], [tcp(80, 80, { published: 70000 })])]), /refusing to program port 70000/);
  });
});

describe('the firewall and published ports', () => {
  test('iptables admits a DNAT connection to an endpoint after its policies and before its profile, on ingress only', () => {
    const e = { ifName: 'cali1', addrs: { 4: ['10.0.0.1'], 6: [] }, ingress: { group: 'i-1', profile: 'net' }, egress: { profile: 'net' } };
    const chains = IPT.compileEndpoint(e, 4);
    const ing = chains.get(IPT.endpointChain('cali1', 'ingress'))!;
    const dnat = ing.indexOf(`-m conntrack --ctstate DNAT -j MARK --set-xmark ${IPT.MARK_ACCEPT}/${IPT.MARK_ACCEPT}`);
    assert.ok(dnat > ing.indexOf(`-j ${IPT.groupChain('i-1')}`), 'after the policies');
    assert.ok(dnat > ing.indexOf(`-m mark --mark 0x0/${IPT.MARK_PASS} -j DROP`), "after the policies' default deny");
    assert.ok(dnat < ing.indexOf(`-j ${IPT.profileChain('net', 'ingress')}`), 'before the profile');
    assert.ok(!chains.get(IPT.endpointChain('cali1', 'egress'))!.some((r) => r.includes('DNAT')));
  });
});
