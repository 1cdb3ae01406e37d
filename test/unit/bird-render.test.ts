import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type RenderInput, renderBird } from '../../routing/render';

const base: RenderInput = {
  self: { name: 'h1', ipv4: '172.31.0.2' },
  hosts: [{ name: 'h1', ipv4: '172.31.0.2' }, { name: 'h2', ipv4: '172.31.0.3' }, { name: 'h0', ipv4: '172.31.0.1' }, { name: 'h9' }],
  settings: { asn: 64512, nodeMesh: true },
  peers: [],
  pools: [{ cidr: '10.65.0.0/16' }, { cidr: 'fd65::/64' }],
  blocks: ['10.65.3.0/26', 'fd65::40/122'],
};

/** BIRD's own parser is the judge of the syntax. */
function birdAccepts(conf: string): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-bird-'));
  try {
    fs.writeFileSync(path.join(dir, 'bird.conf'), conf);
    execFileSync('bird', ['-p', '-c', path.join(dir, 'bird.conf')], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`bird -p refused the configuration: ${String((err as { stderr?: Buffer }).stderr ?? err)}\n${conf}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sessions = (conf: string) =>
  [...conf.matchAll(/protocol bgp (\S+) from calico \{\n {2}neighbor (\S+) as (\d+);\n((?: {2}[^\n]*\n)*?)\}/g)].map((m) => ({
    name: m[1],
    ip: m[2],
    asn: Number(m[3]),
    extra: m[4].trim(),
  }));

describe('renderBird', () => {
  test('renders a configuration BIRD 2 accepts, with blackholes and aggregate filters for our blocks', () => {
    const conf = renderBird(base);
    birdAccepts(conf);
    assert.match(conf, /route 10\.65\.3\.0\/26 blackhole;/);
    assert.match(conf, /if net = 10\.65\.3\.0\/26 then accept;\n {2}if net ~ 10\.65\.3\.0\/26 then reject;\n {2}if net ~ POOLS4 then accept;\n {2}reject;/);
    assert.match(conf, /route fd65::40\/122 blackhole;/);
    assert.match(conf, /define POOLS4 = \[ 10\.65\.0\.0\/16\+ \];/);
  });

  test('is deterministic whatever the order of its inputs', () => {
    const shuffled = { ...base, hosts: [...base.hosts].reverse(), pools: [...base.pools].reverse(), blocks: [...base.blocks].reverse() };
    assert.equal(renderBird(shuffled), renderBird(base));
  });

  test('meshes with every other host that has an address; both ends of a pair dial, none is passive', () => {
    const s = sessions(renderBird(base));
    assert.deepEqual(
      s.map((x) => [x.name, x.ip, x.asn, x.extra]),
      [
        ['mesh_172_31_0_1', '172.31.0.1', 64512, ''],
        ['mesh_172_31_0_3', '172.31.0.3', 64512, ''],
      ],
    );
    assert.doesNotMatch(renderBird(base), /passive/);
  });

  test('sessions dial 1 s after they start and retry within seconds, so a joining host is reached quickly', () => {
    const conf = renderBird(base);
    assert.match(conf, /template bgp calico \{\n[^}]*connect delay time 1; connect retry time 2; error wait time 1, 30;/);
    // Graceful restart stays on for the sessions and the kernel routes.
    assert.match(conf, /template bgp calico \{\n[^}]*direct; graceful restart;/);
    assert.match(conf, /learn; persist; scan time 10; graceful restart;/);
  });

  test("uses each host's own AS and the global default for hosts without one", () => {
    const conf = renderBird({
      ...base,
      self: { ...base.self, asn: 65001 },
      hosts: [...base.hosts.slice(0, 2).map((h) => (h.name === 'h2' ? { ...h, asn: 65002 } : h))],
    });
    assert.match(conf, /local 172\.31\.0\.2 as 65001;/);
    assert.deepEqual(
      sessions(conf).map((x) => x.asn),
      [65002],
    );
    birdAccepts(conf);
  });

  test('with the mesh off, hosts peer only with route reflectors and extra peers', () => {
    const conf = renderBird({
      ...base,
      settings: { asn: 64512, nodeMesh: false },
      peers: [
        { name: 'tor', ip: '172.31.0.254', asn: 65000 },
        { name: 'other', ip: '172.31.0.253', asn: 65000, host: 'h2' },
      ],
    });
    assert.deepEqual(
      sessions(conf).map((x) => [x.name, x.ip, x.asn]),
      [['global_172_31_0_254', '172.31.0.254', 65000]],
    );
    birdAccepts(conf);
  });

  test('a route reflector treats same-AS hosts as clients', () => {
    const conf = renderBird({ ...base, self: { ...base.self, routeReflector: '1.0.0.1' }, settings: { asn: 64512, nodeMesh: false } });
    const s = sessions(conf);
    assert.deepEqual(
      s.map((x) => x.extra),
      ['rr client;\n  rr cluster id 1.0.0.1;', 'rr client;\n  rr cluster id 1.0.0.1;'],
    );
    birdAccepts(conf);
    const client = renderBird({
      ...base,
      hosts: [...base.hosts, { name: 'rr', ipv4: '172.31.0.100', routeReflector: '1.0.0.1' }],
      settings: { asn: 64512, nodeMesh: false },
    });
    assert.deepEqual(
      sessions(client).map((x) => x.ip),
      ['172.31.0.100'],
    );
  });

  test('a host-specific peer appears only on that host', () => {
    const peers = [{ name: 'rack', ip: '172.31.0.250', asn: 65100, host: 'h2' }];
    assert.equal(
      sessions(renderBird({ ...base, peers })).some((x) => x.ip === '172.31.0.250'),
      false,
    );
    const h2 = renderBird({ ...base, self: { name: 'h2', ipv4: '172.31.0.3' }, peers });
    assert.deepEqual(
      sessions(h2)
        .filter((x) => x.name.startsWith('node_'))
        .map((x) => [x.ip, x.asn]),
      [['172.31.0.250', 65100]],
    );
    birdAccepts(h2);
  });

  test('a host without blocks or pools still gets a valid configuration that announces nothing', () => {
    const conf = renderBird({ ...base, pools: [], blocks: [] });
    birdAccepts(conf);
    assert.doesNotMatch(conf, /blackhole/);
  });

  test('refuses to render for a host without an IPv4 address', () => {
    assert.throws(() => renderBird({ ...base, self: { name: 'h9' } }), /has no IPv4 address for BGP: set CALICO_IP/);
  });

  test('carries IPv6 routes on the IPv4 session only between hosts that both have an IPv6 address, with it as next hop', () => {
    const hosts = [
      { name: 'h1', ipv4: '172.31.0.2', ipv6: 'fd31::2' },
      { name: 'h2', ipv4: '172.31.0.3', ipv6: 'fd31::3' },
      { name: 'h0', ipv4: '172.31.0.1' },
    ];
    const conf = renderBird({ ...base, self: hosts[0], hosts });
    birdAccepts(conf);
    const s = sessions(conf);
    assert.match(s.find((x) => x.ip === '172.31.0.3')!.extra, /ipv6 \{ import filter pools_only6; export filter to_peers6; next hop address fd31::2; \};/);
    assert.doesNotMatch(s.find((x) => x.ip === '172.31.0.1')!.extra, /ipv6/);
    assert.doesNotMatch(renderBird(base), /next hop address/);
  });

  test('puts BGP routes of IP-in-IP pools on tunl0 on-link (CrossSubnet only towards hosts outside our subnet), and leaves VXLAN pools to the agent', () => {
    const conf = renderBird({
      ...base,
      self: { ...base.self, ipv4Subnet: '172.31.0.0/24' },
      pools: [
        { cidr: '10.65.0.0/16', ipip: 'CrossSubnet' },
        { cidr: '10.66.0.0/16', ipip: 'Always' },
        { cidr: '10.67.0.0/16', encapsulated: true },
        { cidr: 'fd65::/64' },
      ],
    });
    birdAccepts(conf);
    assert.match(conf, /define IPIP_ALWAYS = \[ 10\.66\.0\.0\/16\+ \];/);
    assert.match(conf, /define IPIP_CROSS = \[ 10\.65\.0\.0\/16\+ \];/);
    assert.match(conf, /define ENCAP4 = \[ 10\.67\.0\.0\/16\+ \];/);
    const k4 = /filter to_kernel4 \{\n([^}]*\}[^}]*)\}/.exec(conf)![1];
    assert.match(
      k4,
      /if source = RTS_BGP && \(net ~ IPIP_ALWAYS \|\| \(net ~ IPIP_CROSS && !\(gw ~ 172\.31\.0\.0\/24\)\)\) then \{ ifname = "tunl0"; onlink = true; gw = bgp_next_hop; \}/,
    );
    assert.doesNotMatch(/filter to_kernel6 \{\n[^}]*\}/.exec(conf)![0], /tunl0/);
    // Without a known subnet CrossSubnet encapsulates towards everyone, which always works.
    const unknown = renderBird({ ...base, pools: [{ cidr: '10.65.0.0/16', ipip: 'CrossSubnet' }] });
    birdAccepts(unknown);
    assert.match(unknown, /\(net ~ IPIP_ALWAYS \|\| net ~ IPIP_CROSS\) then \{ ifname = "tunl0"; onlink = true; gw = bgp_next_hop; \}/);
  });
});
