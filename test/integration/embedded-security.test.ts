/**
 * The embedded etcd serves only clients holding its root-only client certificate: another local
 * user can neither read nor write it, root's CLI finds it with nothing configured, and a data
 * directory an older version served over plain HTTP keeps its data.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { netnsScope } from '../harness/netns';
import { startCalico, type CalicoProcess } from '../harness/calico';
import { freePort } from '../../agent/embedded-etcd';

const scope = netnsScope();
const nodes: CalicoProcess[] = [];

after(async () => {
  for (const n of nodes) await n.destroy();
  await scope.destroyAll();
});

const AS_NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'];

async function fails(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const c = (err as Error & { cause?: { stderr?: string } }).cause;
    return `${(err as Error).message} ${c?.stderr ?? ''}`;
  }
  assert.fail('expected the command to fail');
}

test('another local user can neither read nor write the embedded etcd, while root and its CLI can', async () => {
  const ns = await scope.create('embsec');
  const node = await startCalico(ns, { name: 'embsec-host' });
  nodes.push(node);
  // The test's temporary root is private by itself: open it so only calico's own modes protect.
  fs.chmodSync(path.dirname(node.dataDir), 0o755);
  await node.ready();
  const url = fs.readFileSync(path.join(node.dataDir, 'etcd.endpoint'), 'utf8').trim();
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const tls = path.join(node.dataDir, 'etcd-tls');
  assert.equal(fs.statSync(tls).mode & 0o777, 0o700);
  for (const f of fs.readdirSync(tls)) assert.equal(fs.statSync(path.join(tls, f)).mode & 0o777, 0o600, f);

  // As nobody: no certificate to present (the keys are unreadable), so etcd refuses the handshake.
  assert.match(await fails(ns.exec(AS_NOBODY[0], [...AS_NOBODY.slice(1), 'cat', path.join(tls, 'client.key')])), /Permission denied/);
  const ctl = ['etcdctl', '--endpoints', url, '--insecure-skip-tls-verify', '--dial-timeout=2s', '--command-timeout=3s'];
  await fails(ns.exec(AS_NOBODY[0], [...AS_NOBODY.slice(1), ...ctl, 'get', '--prefix', '']));
  await fails(ns.exec(AS_NOBODY[0], [...AS_NOBODY.slice(1), ...ctl, 'put', '/calico/evil', 'x']));
  // A raw HTTPS request to the JSON gateway, and plain HTTP to the same port.
  const raw = `require('https').request(${JSON.stringify(`${url}/v3/kv/range`)},{method:'POST',rejectUnauthorized:false},r=>{r.resume();r.on('end',()=>console.log('status',r.statusCode))}).on('error',e=>{console.error(e.message);process.exit(3)}).end(JSON.stringify({key:'AA==',range_end:'AA=='}))`;
  await fails(ns.exec(AS_NOBODY[0], [...AS_NOBODY.slice(1), process.execPath, '-e', raw]));
  const plain = `fetch(${JSON.stringify(url.replace('https', 'http') + '/v3/kv/range')},{method:'POST',body:'{"key":"AA=="}'}).then(r=>console.log(r.status)).catch(e=>{console.error(String(e));process.exit(3)})`;
  await fails(ns.exec(process.execPath, ['-e', plain]));
  // The CLI as nobody says what to do.
  const env = Object.entries(node.env).map(([k, v]) => `${k}=${v}`);
  const cli = path.resolve(__dirname, '../../cli/main.js');
  assert.match(
    await fails(ns.exec(AS_NOBODY[0], [...AS_NOBODY.slice(1), 'env', ...env, process.execPath, cli, 'pool', 'ls'])),
    /readable by root only|no embedded etcd is recorded/,
  );

  // As root: etcdctl with the embedded certificates, and the CLI with nothing configured.
  const rootCtl = ['--endpoints', url, `--cacert=${tls}/ca.crt`, `--cert=${tls}/client.crt`, `--key=${tls}/client.key`, '--command-timeout=5s'];
  await ns.exec('etcdctl', [...rootCtl, 'put', '/calico-test/root', 'yes']);
  assert.match((await ns.exec('etcdctl', [...rootCtl, 'get', '/calico-test/root'])).stdout, /yes/);
  const pools = JSON.parse((await node.cli(['pool', 'ls', '--json'])).stdout) as Array<{ cidr: string }>;
  assert.equal(pools.length, 2);
});

test('a data directory from a version that served plain HTTP keeps its data and is served over TLS afterwards', async () => {
  const ns = await scope.create('embmig');
  const node = await startCalico(ns, { name: 'embmig-host', etcd: 'http://127.0.0.1:1' });
  nodes.push(node);
  await node.stop('SIGKILL');
  // The old embedded etcd: the same name and data directory, plain HTTP on loopback.
  const dir = path.join(node.dataDir, 'etcd');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const [c, p] = [await freePort(), await freePort()];
  const old = ns.spawn('etcd', [
    '--name',
    'calico-embedded',
    '--data-dir',
    dir,
    '--listen-client-urls',
    `http://127.0.0.1:${c}`,
    '--advertise-client-urls',
    `http://127.0.0.1:${c}`,
    '--listen-peer-urls',
    `http://127.0.0.1:${p}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${p}`,
    '--initial-cluster',
    `calico-embedded=http://127.0.0.1:${p}`,
  ]);
  try {
    const ctl = ['--endpoints', `http://127.0.0.1:${c}`, '--command-timeout=3s'];
    for (let i = 0; ; i++) {
      try {
        await ns.exec('etcdctl', [...ctl, 'put', '/calico-test/kept', 'from-before']);
        break;
      } catch (err) {
        if (i > 50) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await new Promise<void>((r) => {
      old.once('exit', () => r());
      old.kill('SIGTERM');
    });
  }
  fs.writeFileSync(path.join(node.dataDir, 'etcd.endpoint'), `http://127.0.0.1:${c}\n`);

  delete node.env.ETCD_ENDPOINTS;
  await node.restart();
  await node.ready();
  const url = fs.readFileSync(path.join(node.dataDir, 'etcd.endpoint'), 'utf8').trim();
  assert.match(url, /^https:/);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  const tls = path.join(node.dataDir, 'etcd-tls');
  const got = await ns.exec('etcdctl', [
    '--endpoints',
    url,
    `--cacert=${tls}/ca.crt`,
    `--cert=${tls}/client.crt`,
    `--key=${tls}/client.key`,
    '--command-timeout=5s',
    'get',
    '--print-value-only',
    '/calico-test/kept',
  ]);
  assert.equal(got.stdout.trim(), 'from-before');
  assert.equal(JSON.parse((await node.cli(['pool', 'ls', '--json'])).stdout).length, 2);
});
