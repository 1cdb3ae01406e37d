/**
 * docker-compose end to end (Debian's docker-compose, v1.29, compose file format 2.4 against the
 * Docker 20.10 engine): a project with two calico networks and labelled services, on a real
 * dockerd with its own iptables on (FORWARD policy DROP). Services reach each other by name
 * through Docker's DNS, the networks stay isolated, a label policy applies, `--scale` adds
 * endpoints, and `down` leaves no veth, endpoint, network or allocation behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsScope } from '../harness/netns';
import { type DockerHost, runCmd } from '../harness/docker';
import { startDockerHost } from '../harness/docker';

const scope = netnsScope();
let h: DockerHost;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-compose-'));
const PROJECT = 'shop';
const SERVE = 'nc -ll -p 80 -e echo ok & exec sleep 3600';

/** Two calico networks: web and db share `front`; `admin` is alone on `back`. */
const COMPOSE = `version: "2.4"
services:
  web:
    image: busybox
    command: ["sh", "-c", "${SERVE}"]
    labels:
      org.projectcalico.label.role: web
    networks: [front]
  db:
    image: busybox
    command: ["sh", "-c", "${SERVE}"]
    labels:
      org.projectcalico.label.role: db
    networks: [front]
  client:
    image: busybox
    command: ["sleep", "3600"]
    labels:
      org.projectcalico.label.role: client
    networks: [front]
  admin:
    image: busybox
    command: ["sh", "-c", "${SERVE}"]
    labels:
      org.projectcalico.label.role: admin
    networks: [back]
networks:
  front:
    driver: calico
    ipam:
      driver: calico-ipam
  back:
    driver: calico
    ipam:
      driver: calico-ipam
      # A size, not a network: calico-ipam picks a free /24 inside a Calico pool.
      config:
        - subnet: 0.0.0.0/24
`;

const POLICY = `kind: Policy
name: web-to-db
order: 100
selector: role == 'db'
types: [ingress]
ingress:
  - action: allow
    protocol: tcp
    source:
      selector: role == 'web'
    destination:
      ports: [80]
`;

const file = path.join(tmp, 'docker-compose.yml');
const compose = (args: string[]) =>
  runCmd('docker-compose', ['-f', file, '-p', PROJECT, '--no-ansi', ...args], { env: { ...process.env, DOCKER_HOST: h.dockerHost }, timeoutMs: 180_000 });
async function composeOk(args: string[]): Promise<string> {
  const r = await compose(args);
  if (r.code !== 0) throw new Error(`docker-compose ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A TCP "ok" from `to` (a name Docker's DNS answers, or an address) as seen by container `from`. */
const tcp = (from: string, to: string) => h.docker(['exec', from, 'nc', '-w', '2', to, '80']).then((r) => r.code === 0 && r.stdout.trim() === 'ok');

async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const endpoints = async () =>
  JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as Array<{ containerName?: string; labels: Record<string, string>; ifName: string }>;
const caliLinks = async () => (await h.ns.ip(['-o', 'link', 'show'])).split('\n').filter((l) => /: (cali|tmp)[0-9a-f]{11}[@:]/.test(l));

before(async () => {
  fs.writeFileSync(file, COMPOSE);
  // The node's embedded etcd holds everything this test checks at the end.
  h = await startDockerHost(scope, { name: 'cmp1', dockerIptables: true });
});

after(async () => {
  if (h) await compose(['down', '--remove-orphans', '-t', '1']).catch(() => undefined);
  await h?.destroy();
  await scope.destroyAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('docker-compose up creates both calico networks and every service joins with its labels learned', async () => {
  await composeOk(['up', '-d']);
  const nets = await h.dockerOk(['network', 'ls', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.Name}} {{.Driver}}']);
  assert.deepEqual(nets.split('\n').sort(), [`${PROJECT}_back calico`, `${PROJECT}_front calico`]);
  await until(async () => {
    const eps = await endpoints();
    return ['web', 'db', 'client', 'admin'].every((s) => eps.some((e) => e.containerName === `${PROJECT}_${s}_1` && e.labels.role === s));
  }, 'labels of every service learned');
});

test('the network asking for a /24 by size gets a free /24 of the Calico pool, and its service an address in it', async () => {
  // Docker 20.10 shows the subnet as configured (0.0.0.0/24); the node's log names the one picked.
  const claimed = [...h.node.logs().matchAll(/claimed a subnet.*?(10\.65\.\d+)\.0\/24/g)].map((m) => m[1]);
  assert.equal(claimed.length, 1, 'one subnet claimed');
  const adminIp = await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${PROJECT}_back").IPAddress}}`, `${PROJECT}_admin_1`]);
  assert.equal(adminIp.split('.').slice(0, 3).join('.'), claimed[0]);
});

test('services on one network reach each other by service name through Docker DNS', async () => {
  await until(() => tcp(`${PROJECT}_web_1`, 'db'), 'web reaches db by name');
  assert.equal(await tcp(`${PROJECT}_client_1`, 'web'), true);
  assert.equal(await tcp(`${PROJECT}_db_1`, 'web'), true);
});

test('a service on the other network is not reachable, by name or by address', async () => {
  // Docker's DNS only answers names of the container's own networks.
  assert.equal(await tcp(`${PROJECT}_web_1`, 'admin'), false);
  const adminIp = await h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${PROJECT}_back").IPAddress}}`, `${PROJECT}_admin_1`]);
  assert.match(adminIp, /^\d+\.\d+\.\d+\.\d+$/);
  assert.equal(await tcp(`${PROJECT}_web_1`, adminIp), false);
  assert.equal((await h.docker(['exec', `${PROJECT}_web_1`, 'ping', '-c', '1', '-W', '1', adminIp])).code, 1);
});

test('a label policy lets only web reach db, the client of the same network no longer', async () => {
  const f = path.join(tmp, 'policy.yaml');
  fs.writeFileSync(f, POLICY);
  const applied = await h.calico(['policy', 'apply', '-f', f]);
  assert.equal(applied.code, 0, applied.stderr);
  await until(async () => !(await tcp(`${PROJECT}_client_1`, 'db')), 'client cut off from db');
  assert.equal(await tcp(`${PROJECT}_web_1`, 'db'), true);
  // The policy selects db only: the client still reaches web.
  assert.equal(await tcp(`${PROJECT}_client_1`, 'web'), true);
});

test('--scale web=3 adds two endpoints that serve and that the policy admits to db', async () => {
  await composeOk(['up', '-d', '--scale', 'web=3']);
  await until(async () => (await endpoints()).filter((e) => e.labels.role === 'web').length === 3, 'three web endpoints');
  for (const i of [2, 3]) {
    await until(() => tcp(`${PROJECT}_web_${i}`, 'db'), `web_${i} reaches db`);
    assert.equal(await tcp(`${PROJECT}_client_1`, `${PROJECT}_web_${i}`), true);
  }
  // Back to one: the two scaled-away endpoints and their veths go.
  await composeOk(['up', '-d', '--scale', 'web=1']);
  await until(async () => (await endpoints()).filter((e) => e.labels.role === 'web').length === 1, 'one web endpoint left');
  assert.equal((await caliLinks()).length, 4);
});

test('docker-compose down leaves no veth, endpoint, network or allocation', async () => {
  await composeOk(['down', '-t', '1']);
  assert.deepEqual(await caliLinks(), []);
  assert.deepEqual(await endpoints(), []);
  const nets = await h.dockerOk(['network', 'ls', '--filter', `label=com.docker.compose.project=${PROJECT}`, '-q']);
  assert.equal(nets, '');
  const allocations = JSON.parse((await h.calico(['ipam', 'show', '--allocations', '--json'])).stdout) as unknown[];
  assert.deepEqual(allocations, []);
  const check = await h.calico(['ipam', 'check', '--grace', '0', '--json']);
  assert.equal(check.code, 0, check.stdout);
  assert.equal((await h.calico(['policy', 'rm', 'web-to-db'])).code, 0);
  // The claimed /24 was released with the network: a new size request takes it again.
  assert.match(h.node.logs(), /released a claimed subnet/);
  const again = `${PROJECT}-again`;
  await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', '--subnet', '0.0.0.0/24', again]);
  const claimed = [...h.node.logs().matchAll(/claimed a subnet.*?(10\.65\.\d+\.0\/24)/g)].map((m) => m[1]);
  assert.equal(claimed.length, 2);
  assert.equal(claimed[1], claimed[0]);
  await h.dockerOk(['network', 'rm', again]);
});
