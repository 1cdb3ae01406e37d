/**
 * A real etcd serving TLS with client certificates and authentication on (a user whose role may
 * use only calico's prefix), configured the way the systemd unit configures a host: in the
 * settings file. calico node and the CLI work with nothing exported and print no warning; a
 * wrong CA, client certificate or password fails at once as a configuration error naming the
 * setting to fix.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { netnsScope, type Netns } from '../harness/netns';
import { enableAuth, startEtcd, type TestEtcd } from '../harness/etcd';
import { makeTestPki, type TestPki } from '../harness/pki';
import { CLI, startCalico, type CalicoProcess } from '../harness/calico';

const scope = netnsScope();
let ns: Netns;
let pki: TestPki;
let etcd: TestEtcd;
const nodes: CalicoProcess[] = [];
const PASSWORD = 'calico pass "quoted"';

before(async () => {
  pki = makeTestPki();
  ns = await scope.create('etcdtls');
  etcd = await startEtcd(ns, '127.0.0.1', { tls: pki });
  await enableAuth(ns, etcd, pki, 'calico', PASSWORD);
});

after(async () => {
  for (const n of nodes) await n.destroy();
  await etcd?.destroy();
  await scope.destroyAll();
  pki?.destroy();
});

/** The settings file a host would have, with quoting as an operator might write it. */
function settings(over: Record<string, string> = {}): string {
  const s: Record<string, string> = {
    ETCD_ENDPOINTS: etcd.endpoint,
    ETCD_CA_CERT_FILE: pki.ca,
    ETCD_CERT_FILE: pki.clientCert,
    ETCD_KEY_FILE: pki.clientKey,
    ETCD_USERNAME: 'calico',
    ETCD_PASSWORD: `"${PASSWORD.replace(/"/g, '\\"')}"`,
    CALICO_BIRD: 'off',
    ...over,
  };
  return ['# etcd over TLS, with authentication', ...Object.entries(s).map(([k, v]) => `${k}=${v}`), ''].join('\n');
}

/** The CLI with only `env` in its environment (env -i): what the settings file does not give is unset. */
async function cli(env: Record<string, string>, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const vars = Object.entries({ PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }).map(([k, v]) => `${k}=${v}`);
  try {
    return { code: 0, ...(await ns.exec('env', ['-i', ...vars, process.execPath, CLI, ...args], { timeoutMs: 60_000 })) };
  } catch (err) {
    const c = (err as Error & { cause?: { code?: number; stdout?: string; stderr?: string } }).cause;
    return { code: typeof c?.code === 'number' ? c.code : -1, stdout: c?.stdout ?? '', stderr: c?.stderr ?? '' };
  }
}

function writeSettings(name: string, text: string): string {
  const file = path.join(pki.dir, name);
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

test('calico node and calico status, configured only by the settings file, work over TLS with a user and print no warning', async () => {
  const node = await startCalico(ns, { name: 'tls-host', settings: settings({ CALICO_NODENAME: 'tls-host' }) });
  nodes.push(node);
  await node.ready();
  assert.doesNotMatch(node.logs(), /DEP0123|ServerName|Warning/i);
  // No Docker runs here, which is the one thing it may warn about.
  const warnings = node
    .logs()
    .split('\n')
    .filter((l) => /"level":"(warn|error)"/.test(l) && !/cannot follow Docker/.test(l));
  assert.deepEqual(warnings, []);

  const file = node.env.CALICO_CONFIG;
  const status = await cli({ CALICO_CONFIG: file }, ['status']);
  assert.equal(status.stderr, '', 'no warning on stderr');
  assert.equal(status.code, 0, status.stdout);
  assert.match(status.stdout, /^node: {7}tls-host$/m, 'registered: the node name came from the file');
  assert.match(status.stdout, /^etcd: {7}reachable$/m);
  assert.match(status.stdout, /^pools: {6}10\.65\.0\.0\/16, fd65::\/64$/m);
  assert.match(status.stdout, /^bgp: {8}off$/m, 'CALICO_BIRD=off from the file');

  // --config names the file as well, and the environment overrides it.
  const viaFlag = await cli({}, ['--config', file, 'pool', 'ls', '--json']);
  assert.equal(viaFlag.code, 0, viaFlag.stderr);
  assert.equal(JSON.parse(viaFlag.stdout).length, 2);
  const overridden = await cli({ CALICO_CONFIG: file, ETCD_PASSWORD: 'not-it' }, ['pool', 'ls']);
  assert.equal(overridden.code, 1);
  assert.match(overridden.stderr, /check ETCD_USERNAME and ETCD_PASSWORD/);
});

test('a wrong CA, a wrong client certificate and a wrong password each fail as a configuration error naming the setting to fix', async () => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    [
      'wrong CA',
      { ETCD_CA_CERT_FILE: pki.otherCa },
      /etcd's certificate is not signed by the CA in ETCD_CA_CERT_FILE \(.*other-ca\.crt\): set ETCD_CA_CERT_FILE/,
    ],
    [
      'wrong client certificate',
      { ETCD_CERT_FILE: pki.otherClientCert, ETCD_KEY_FILE: pki.otherClientKey },
      /etcd refused the client certificate ETCD_CERT_FILE \(.*other-client\.crt\): set ETCD_CERT_FILE and ETCD_KEY_FILE/,
    ],
    ['no client certificate', { ETCD_CERT_FILE: '', ETCD_KEY_FILE: '' }, /etcd requires a client certificate: set ETCD_CERT_FILE and ETCD_KEY_FILE/],
    ['wrong password', { ETCD_PASSWORD: 'wrong' }, /etcd refused user ETCD_USERNAME \(calico\) and its password: check ETCD_USERNAME and ETCD_PASSWORD/],
  ];
  for (const [what, over, message] of cases) {
    const file = writeSettings(`${what.replace(/ /g, '-')}.env`, settings(over));
    const r = await cli({ CALICO_CONFIG: file }, ['pool', 'ls']);
    assert.equal(r.code, 1, `${what}: exit 1, a setting to change (${r.stderr})`);
    assert.match(r.stderr, message, what);
    // Not blamed on reachability after the whole retry budget, nor reported as a bug.
    assert.doesNotMatch(r.stderr, /did not answer|reachable|internal error|DEP0123/, what);
    assert.equal(r.stdout, '', what);
  }
});

test('calico node given a wrong password stops with the message, and removes its sockets', async () => {
  const refused = /"level":"error","message":"etcd at https:\/\/127\.0\.0\.1:\d+: etcd refused user ETCD_USERNAME \(calico\) and its password/;
  let node: CalicoProcess;
  try {
    node = await startCalico(ns, { name: 'tls-bad', settings: settings({ ETCD_PASSWORD: 'wrong', CALICO_NODENAME: 'tls-bad' }) });
  } catch (err) {
    // It may stop before the harness saw its sockets; the harness then reports its log.
    assert.match((err as Error).message, refused);
    return;
  }
  nodes.push(node);
  const deadline = Date.now() + 30_000;
  while (node.pid() !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(node.pid(), undefined, `calico node still running:\n${node.logs()}`);
  assert.match(node.logs(), refused);
  assert.equal(fs.existsSync(path.join(node.pluginDir, 'calico.sock')), false);
});

test('a malformed settings file is refused naming the file and line, before anything starts', async () => {
  const file = writeSettings('broken.env', `${settings()}ETCD_ENDPOINTS\n`);
  const line = settings().split('\n').length;
  for (const args of [['status'], ['node']]) {
    const r = await cli({}, ['--config', file, ...args]);
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(r.stderr, `calico: ${file} line ${line}: "ETCD_ENDPOINTS" has no "=" (the file takes KEY=VALUE lines, as systemd's EnvironmentFile=)\n`);
  }
  const missing = await cli({ CALICO_CONFIG: path.join(pki.dir, 'absent.env') }, ['status']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read the settings file .*absent\.env \(CALICO_CONFIG or --config\)/);
});
