/**
 * The Dockerfile builds here with no registry (scripts/build-image.sh makes its base images) and
 * its filesystem, the managed plugin's rootfs, runs everything `calico node` runs.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCmd } from '../harness/docker';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-image-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the image builds without a registry and holds node, the nftables and memory addons, iptables, ipset, nft, BIRD, etcd and openssl', async () => {
  const rootfs = path.join(dir, 'rootfs');
  const built = await runCmd(path.resolve(__dirname, '../../../scripts/build-image.sh'), ['--rootfs', rootfs], { timeoutMs: 900_000 });
  assert.equal(built.code, 0, built.stderr);
  const inside = async (...cmd: string[]) => {
    const r = await runCmd('chroot', [rootfs, ...cmd]);
    assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
    return r.stdout + r.stderr;
  };
  assert.match(await inside('/usr/local/bin/node', '--version'), /^v20\./);
  await inside('/usr/local/bin/node', '-e', "require('/opt/calico/dist/firewall/nftables/calico_nft.node')");
  // Found by lib/memory beside its module: a daemon without it keeps what it frees.
  assert.match(
    await inside('/usr/local/bin/node', '-e', "process.stdout.write(String(require('/opt/calico/dist/lib/memory/calico_memory.node').trim()))"),
    /^(true|false)$/,
  );
  await inside('/usr/local/bin/node', '/opt/calico/dist/cli/main.js', '--help');
  assert.match(await inside('iptables', '--version'), /iptables v1\./);
  assert.match(await inside('ipset', 'version'), /ipset v/);
  assert.match(await inside('nft', '--version'), /nftables v/);
  assert.match(await inside('bird', '--version'), /BIRD version 2/);
  assert.match(await inside('etcd', '--version'), /etcd Version: 3\./);
  assert.match(await inside('openssl', 'version'), /OpenSSL 3/);
  await inside('ip', '-V');
  await inside('setpriv', '--version');
});
