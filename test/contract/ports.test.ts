/**
 * Contract test for what Docker 29 sends for published ports (protocol doc §3.8, §3.13, §5.2,
 * §5.4): the port map arrives in every endpoint's CreateEndpoint options, Join and
 * ProgramExternalConnectivity carry none, and ProgramExternalConnectivity and Revoke come only for
 * the container's gateway endpoint. The fake Docker replays that order against the real `calico
 * node`, real etcd and a real kernel namespace, and the kernel's DNAT is read back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Netns } from '../harness/netns';
import type { CalicoProcess } from '../harness/calico';
import { startContractHost, type ContractHost } from '../harness/contract-host';
import type { FakeDocker } from '../harness/plugin-client';

const hex = () => randomBytes(32).toString('hex');
const SPACE = 'CalicoLocalAddressSpace';
const PORT_OPTIONS = {
  'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }],
  'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }],
};

let host: ContractHost | undefined;
let ns: Netns;
let node: CalicoProcess;
let docker: FakeDocker;

before(async () => {
  host = await startContractHost('pc');
  ({ ns, node, docker } = host);
});

after(async () => {
  await host?.destroy();
});

async function network(): Promise<{ id: string; pool: { PoolID: string } }> {
  const id = hex();
  await docker.ok('net', 'GwAllocCheck', { Options: { 'com.docker.network.enable_ipv4': true } });
  await docker.ok('ipam', 'GetDefaultAddressSpaces');
  const pool = await docker.ok('ipam', 'RequestPool', { AddressSpace: SPACE, Pool: '', SubPool: '', Options: {}, V6: false });
  await docker.ok('net', 'CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.enable_ipv4': true },
    IPv4Data: [{ AddressSpace: SPACE, Pool: pool.Pool }],
    IPv6Data: [],
  });
  return { id, pool };
}

/** Docker 29's §5.2 up to Join for one network of a sandbox: the port map in CreateEndpoint only. */
async function attach(net: Awaited<ReturnType<typeof network>>, sandbox: string) {
  const eid = hex();
  const a = await docker.ok('ipam', 'RequestAddress', { PoolID: net.pool.PoolID, Address: '', Options: { 'com.docker.network.endpoint.name': 'web' } });
  await docker.ok('net', 'CreateEndpoint', {
    NetworkID: net.id,
    EndpointID: eid,
    Interface: { Address: a.Address, AddressIPv6: '', MacAddress: '' },
    Options: PORT_OPTIONS,
  });
  const join = await docker.ok('net', 'Join', { NetworkID: net.id, EndpointID: eid, SandboxKey: sandbox, Options: {} });
  await docker.ok('net', 'EndpointOperInfo', { NetworkID: net.id, EndpointID: eid });
  return { net, eid, ip: a.Address.split('/')[0] as string, join };
}

const dnat = async () => (await ns.exec('nft', ['list', 'map', 'inet', 'calico-ports', 'any4']).catch(() => ({ stdout: '' }))).stdout;
const published = async () =>
  (JSON.parse((await node.cli(['endpoint', 'ls', '--json'])).stdout) as Array<{ id: string; ports?: Array<{ published?: number }> }>)
    .filter((e) => e.ports?.some((b) => b.published !== undefined))
    .map((e) => e.id);

test("Docker 29: a container on two calico networks publishes once, through the gateway endpoint Program was sent for, from CreateEndpoint's port map", async () => {
  const [n1, n2] = [await network(), await network()];
  const sandbox = `/var/run/docker/netns/${hex().slice(0, 12)}`;
  const first = await attach(n1, sandbox);
  assert.equal(first.join.Gateway, '169.254.1.1', 'the first endpoint is the gateway');
  // ≥29: Program only for the endpoint that became the gateway; its options carry no port map.
  assert.deepEqual(await docker.ok('net', 'ProgramExternalConnectivity', { NetworkID: n1.id, EndpointID: first.eid, Options: {} }), {});
  const second = await attach(n2, sandbox);
  assert.equal(second.join.Gateway, '', 'the second is not');
  assert.deepEqual(await published(), [first.eid]);
  assert.match(await dnat(), new RegExp(`tcp \\. 8080 : ${first.ip.replace(/\./g, '\\.')} \\. 80`));

  // §5.4, disconnect of the gateway network: Revoke and Leave for it, then Program for the new gateway.
  await docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: n1.id, EndpointID: first.eid });
  await docker.ok('net', 'Leave', { NetworkID: n1.id, EndpointID: first.eid });
  await docker.ok('net', 'ProgramExternalConnectivity', { NetworkID: n2.id, EndpointID: second.eid, Options: {} });
  await docker.ok('net', 'DeleteEndpoint', { NetworkID: n1.id, EndpointID: first.eid });
  assert.deepEqual(await published(), [second.eid]);
  assert.match(await dnat(), new RegExp(`tcp \\. 8080 : ${second.ip.replace(/\./g, '\\.')} \\. 80`));

  // §5.5 on 29: Revoke only where Program was sent, then Leave and DeleteEndpoint.
  await docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: n2.id, EndpointID: second.eid });
  await docker.ok('net', 'Leave', { NetworkID: n2.id, EndpointID: second.eid });
  await docker.ok('net', 'DeleteEndpoint', { NetworkID: n2.id, EndpointID: second.eid });
  assert.deepEqual(await published(), []);
  const deadline = Date.now() + 5000;
  while ((await dnat()).includes('8080') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.doesNotMatch(await dnat(), /8080/, 'no DNAT left');
});

test('a Program replayed, and Revoke or Leave sent twice or for an unknown endpoint, all answer {}', async () => {
  const n = await network();
  const ep = await attach(n, `/var/run/docker/netns/${hex().slice(0, 12)}`);
  for (let i = 0; i < 2; i++)
    assert.deepEqual(await docker.ok('net', 'ProgramExternalConnectivity', { NetworkID: n.id, EndpointID: ep.eid, Options: PORT_OPTIONS }), {});
  assert.deepEqual(await published(), [ep.eid]);
  for (let i = 0; i < 2; i++) assert.deepEqual(await docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: n.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await docker.ok('net', 'RevokeExternalConnectivity', { NetworkID: n.id, EndpointID: hex() }), {});
  for (let i = 0; i < 2; i++) assert.deepEqual(await docker.ok('net', 'Leave', { NetworkID: n.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await docker.ok('net', 'DeleteEndpoint', { NetworkID: n.id, EndpointID: ep.eid }), {});
  assert.deepEqual(await published(), []);
  const r = await docker.net('ProgramExternalConnectivity', { NetworkID: n.id, EndpointID: ep.eid, Options: {} });
  assert.equal(r.status, 400, 'Program for a deleted endpoint is refused');
  assert.match(r.body.Err, /not known to calico/);
});
