/**
 * The policy agent inside a real `calico node` on the real kernel (one host namespace, real
 * etcd): nftables by default, a Join answered only once its own interface is in the rules, a
 * watch lost with etcd and resumed, a switch of backend in each direction removing the other's
 * rules, and CALICO_POLICY=off removing both while workload traffic stays forwarded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { netnsScope, type Netns } from '../harness/netns';
import { startEtcd, type TestEtcd } from '../harness/etcd';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { giveUplink } from '../harness/sandbox';

const hex = () => randomBytes(32).toString('hex');
const scope = netnsScope();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-fw-agent-'));
let host: Netns;
let etcd: TestEtcd;
let node: CalicoProcess;
let ifName: string;

const nftTable = async () => (await host.exec('nft', ['list', 'table', 'inet', 'calico']).catch(() => ({ stdout: '' }))).stdout;
const iptablesOurs = async () =>
  (await host.exec('iptables-save', ['-t', 'filter'])).stdout
    .split('\n')
    .filter((l) => /cal-/.test(l))
    .join('\n');
const forwardAccepts = async () => (await host.exec('iptables', ['-w', '-S', 'FORWARD'])).stdout.includes('-A FORWARD -i cali+ -j ACCEPT');

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function restartWith(env: Record<string, string | undefined>): Promise<void> {
  await node.stop('SIGTERM');
  for (const [k, v] of Object.entries(env))
    if (v === undefined) delete node.env[k];
    else node.env[k] = v;
  await node.restart();
  await node.ready();
}

before(async () => {
  host = await scope.create('fwa');
  await giveUplink(host, await scope.create('fwr'));
  etcd = await startEtcd(host);
  node = await startCalico(host, { name: 'fw-agent', etcd: etcd.endpoint, env: { CALICO_BIRD: 'off', CALICO_LOG_LEVEL: 'info' } });
  await node.ready();
});

after(async () => {
  await node?.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("by default the firewall is nftables, and Join answers with the new endpoint's interface already in the rules", async () => {
  const d = node.docker;
  const { pool, nid } = await d.createIPv4Network();
  const eid = hex();
  const a = (await d.ok('ipam', 'RequestAddress', { PoolID: pool, Address: '', Options: null })).Address as string;
  await d.ok('net', 'CreateEndpoint', { NetworkID: nid, EndpointID: eid, Interface: { Address: a, AddressIPv6: '', MacAddress: '' }, Options: {} });
  await d.ok('net', 'Join', { NetworkID: nid, EndpointID: eid, SandboxKey: '', Options: {} });
  ifName = `cali${eid.slice(0, 11)}`;
  const table = await nftTable();
  assert.match(table, /hook forward/);
  assert.ok(table.includes(`"${ifName}"`), `${ifName} in the table when Join answered`);
  assert.equal(await iptablesOurs(), '', 'no iptables rules of ours beside it');
});

test('after etcd went away and came back, the watch resumes and a policy applied then is enforced', async () => {
  await etcd.stop();
  await new Promise((r) => setTimeout(r, 1500));
  await etcd.start();
  const file = path.join(tmp, 'p.yaml');
  fs.writeFileSync(
    file,
    'kind: Policy\nname: after-outage\nselector: all()\ningress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: [45678]\n',
  );
  await node.cli(['policy', 'apply', '-f', file]);
  await until(async () => (await nftTable()).includes('45678'), 'the policy in the kernel');
});

test('restarted with CALICO_FIREWALL=iptables it programs iptables and removes our nftables table; back on nftables, the iptables rules go', async () => {
  await restartWith({ CALICO_FIREWALL: 'iptables' });
  await until(async () => (await nftTable()) === '', 'our nftables table removed');
  const ours = await iptablesOurs();
  assert.match(ours, /-A FORWARD -j cal-FORWARD/);
  assert.ok(ours.includes(`cal-fw-${ifName}`), 'the endpoint has its iptables chain');
  assert.ok(ours.includes('45678'), 'and the policy is there');
  assert.equal(await forwardAccepts(), false, "the nftables backend's FORWARD accepts are gone (they would bypass cal-FORWARD)");

  await restartWith({ CALICO_FIREWALL: undefined });
  await until(async () => (await iptablesOurs()) === '', 'iptables rules of ours removed');
  assert.ok((await nftTable()).includes(`"${ifName}"`));
  assert.equal(await forwardAccepts(), true, 'FORWARD accepts workload traffic beside a DROP policy');
});

test('with CALICO_POLICY=off both backends are removed and workload traffic is still forwarded', async () => {
  await restartWith({ CALICO_POLICY: 'off' });
  await until(async () => (await nftTable()) === '' && (await iptablesOurs()) === '', 'no rules of ours');
  assert.equal(await forwardAccepts(), true);
  await restartWith({ CALICO_POLICY: undefined });
  assert.ok((await nftTable()).includes(`"${ifName}"`), 'on again: rules back at start');
});
