/**
 * End to end with a real Docker engine: only the docker and calico CLIs, a busybox image made
 * locally, dockerd in a throw-away host namespace with a real etcd. The same checks run twice:
 * with the legacy sockets of `calico node` (drivers `calico` / `calico-ipam`) and with the
 * managed plugin (driver NAME:TAG for both). The managed plugin's run goes to an etcd that
 * serves only TLS clients with a certificate and has authentication on, its certificates
 * mounted into the plugin as a user mounts them (/etc/calico/certs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsScope } from '../harness/netns';
import { enableAuth, startEtcd, type TestEtcd } from '../harness/etcd';
import { makeTestPki, type TestPki } from '../harness/pki';
import { startDockerHost, type DockerHost } from '../harness/docker';
import { installPlugin, type InstalledPlugin } from '../harness/plugin';

export function dockerSuite(mode: 'legacy' | 'managed'): void {
  const scope = netnsScope();
  let etcd: TestEtcd;
  let h: DockerHost;
  let plugin: InstalledPlugin | undefined;
  let pki: TestPki | undefined;
  const PLUGIN = 'calico-e2e:latest';
  const CALICO = mode === 'legacy' ? ['-d', 'calico', '--ipam-driver', 'calico-ipam'] : ['-d', PLUGIN, '--ipam-driver', PLUGIN];
  const hostName = mode === 'legacy' ? 'e2e1' : 'e2e2';

  before(async () => {
    h = await startDockerHost(scope, { name: hostName });
    if (mode === 'managed') {
      pki = makeTestPki();
      etcd = await startEtcd(h.ns, '127.0.0.1', { tls: pki });
      await enableAuth(h.ns, etcd, pki, 'calico', 'plugin-e2e-pw');
    } else etcd = await startEtcd(h.ns);
    // The node started on its embedded etcd; point it at the test's etcd like a cluster would.
    await h.node.stop('SIGTERM');
    h.node.env.ETCD_ENDPOINTS = etcd.endpoint;
    if (pki) {
      Object.assign(h.node.env, {
        ETCD_CA_CERT_FILE: pki.ca,
        ETCD_CERT_FILE: pki.clientCert,
        ETCD_KEY_FILE: pki.clientKey,
        ETCD_USERNAME: 'calico',
        ETCD_PASSWORD: 'plugin-e2e-pw',
      });
    }
    if (mode === 'legacy') {
      await h.node.restart();
      await h.node.ready();
    } else {
      // The managed plugin replaces the legacy node; the calico CLI still uses the node's env.
      plugin = await installPlugin(h, {
        name: PLUGIN,
        etcd: etcd.endpoint,
        nodeName: hostName,
        certs: { 'ca.pem': pki!.ca, 'client.pem': pki!.clientCert, 'client-key.pem': pki!.clientKey },
        env: {
          ETCD_CA_CERT_FILE: '/etc/calico/certs/ca.pem',
          ETCD_CERT_FILE: '/etc/calico/certs/client.pem',
          ETCD_KEY_FILE: '/etc/calico/certs/client-key.pem',
          ETCD_USERNAME: 'calico',
          ETCD_PASSWORD: 'plugin-e2e-pw',
        },
      });
    }
  });

  after(async () => {
    await plugin?.remove();
    await h?.destroy();
    await etcd?.destroy();
    pki?.destroy();
    await scope.destroyAll();
  });

  async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await fn())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function addrOf(ctr: string, net: string, v6 = false): Promise<string> {
    return h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").${v6 ? 'GlobalIPv6Address' : 'IPAddress'}}}`, ctr]);
  }

  async function exec(ctr: string, ...cmd: string[]): Promise<string> {
    return h.dockerOk(['exec', ctr, ...cmd]);
  }

  async function assertClean(): Promise<void> {
    const check = await h.calico(['ipam', 'check', '--grace', '0', '--json']);
    assert.deepEqual(JSON.parse(check.stdout).problems, []);
    assert.equal(JSON.parse(check.stdout).allocations, 0);
    assert.deepEqual(JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout), []);
    const links = (await h.ns.ipJson<Array<{ ifname: string }>>(['link', 'show'])).filter((l) => l.ifname.startsWith('cali'));
    assert.deepEqual(links, []);
    assert.deepEqual(await h.ns.ipJson(['route', 'show', 'proto', 'static']), []);
  }

  describe('docker network create', () => {
    test('creates calico networks with no subnet, a pool subnet, a subnet inside a pool, an ip-range and IPv6', async () => {
      await h.dockerOk(['network', 'create', ...CALICO, 'any']);
      await h.dockerOk(['network', 'create', ...CALICO, '--subnet', '10.65.0.0/16', 'whole']);
      await h.dockerOk(['network', 'create', ...CALICO, '--subnet', '10.65.40.0/24', 'part']);
      await h.dockerOk(['network', 'create', ...CALICO, '--subnet', '10.65.41.0/24', '--ip-range', '10.65.41.128/26', 'ranged']);
      await h.dockerOk(['network', 'create', ...CALICO, '--ipv6', 'dual']);
      const drivers = await h.dockerOk(['network', 'ls', '--filter', `driver=${CALICO[1]}`, '--format', '{{.Name}}']);
      assert.deepEqual(drivers.split('\n').sort(), ['any', 'dual', 'part', 'ranged', 'whole']);
    });

    test('refuses a subnet outside every pool, --gateway and unknown options, with the reason', async () => {
      const outside = await h.docker(['network', 'create', ...CALICO, '--subnet', '10.99.0.0/16', 'bad1']);
      assert.notEqual(outside.code, 0);
      assert.match(outside.stderr, /10\.99\.0\.0\/16 is not inside any Calico IP pool \(IPv4 pools: 10\.65\.0\.0\/16\)/);
      const gw = await h.docker(['network', 'create', ...CALICO, '--subnet', '10.65.50.0/24', '--gateway', '10.65.50.1', 'bad2']);
      assert.notEqual(gw.code, 0);
      assert.match(gw.stderr, /calico networks do not take --gateway.*169\.254\.1\.1/);
      const opt = await h.docker(['network', 'create', ...CALICO, '-o', 'foo=bar', 'bad3']);
      assert.notEqual(opt.code, 0);
      assert.match(opt.stderr, /calico does not support the option foo; known options: com\.docker\.network\.driver\.mtu/);
      const names = await h.dockerOk(['network', 'ls', '--format', '{{.Name}}']);
      assert.doesNotMatch(names, /bad/);
    });
  });

  describe('containers', () => {
    test('eth0 holds a /32 from the network, the routes are exactly the link-local gateway, the host has the veth and the /32', async () => {
      await h.dockerOk(['run', '-d', '--name', 'p1', '--network', 'part', 'busybox', 'sleep', '600']);
      const ip = await addrOf('p1', 'part');
      assert.match(ip, /^10\.65\.40\.\d+$/);
      assert.match(await exec('p1', 'ip', '-4', 'addr', 'show', 'eth0'), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32 `));
      assert.equal(await exec('p1', 'ip', 'route'), 'default via 169.254.1.1 dev eth0 \n169.254.1.1 dev eth0 scope link'.trim());
      const eid = await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.part.EndpointID}}', 'p1']);
      const routes = await h.ns.ipJson<Array<{ dst: string; dev: string }>>(['route', 'show', `${ip}/32`]);
      assert.deepEqual(
        routes.map((r) => r.dev),
        [`cali${eid.slice(0, 11)}`],
      );
    });

    test('two containers ping each other over IPv4 and IPv6; IPv6 endpoints get a /128 and a link-local default route', async () => {
      await h.dockerOk(['run', '-d', '--name', 'd1', '--network', 'dual', 'busybox', 'sleep', '600']);
      await h.dockerOk(['run', '-d', '--name', 'd2', '--network', 'dual', 'busybox', 'sleep', '600']);
      const [a4, b4, b6] = [await addrOf('d1', 'dual'), await addrOf('d2', 'dual'), await addrOf('d2', 'dual', true)];
      assert.match(b6, /^fd65::/);
      assert.match(await exec('d2', 'ip', '-6', 'addr', 'show', 'eth0'), new RegExp(`inet6 ${b6}/128 `));
      assert.match(await exec('d2', 'ip', '-6', 'route'), /default via fe80::ecee:eeff:feee:eeee dev eth0/);
      await exec('d1', 'ping', '-c', '2', '-W', '2', b4);
      await exec('d2', 'ping', '-c', '2', '-W', '2', a4);
      await exec('d1', 'ping', '-6', '-c', '2', '-W', '2', b6);
    });

    test('--ip is honoured and a taken --ip is refused naming the holder', async () => {
      await h.dockerOk(['run', '-d', '--name', 's1', '--network', 'part', '--ip', '10.65.40.77', 'busybox', 'sleep', '600']);
      assert.equal(await addrOf('s1', 'part'), '10.65.40.77');
      const eid = await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.part.EndpointID}}', 's1']);
      // The holder is named by its container once the node has learned it from Docker's events.
      await until(
        async () => JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout).some((e: { containerName?: string }) => e.containerName === 's1'),
        'endpoint of s1 named',
      );
      const clash = await h.docker(['run', '--rm', '--network', 'part', '--ip', '10.65.40.77', 'busybox', 'true']);
      assert.notEqual(clash.code, 0);
      assert.match(clash.stderr, new RegExp(`10\\.65\\.40\\.77 is already in use by container s1 \\(endpoint ${eid.slice(0, 12)}`));
    });

    test('endpoints learn their container name, ID and org.projectcalico.label.* labels, and networks their names, from Docker', async () => {
      const id = await h.dockerOk([
        'run',
        '-d',
        '--name',
        'lbl',
        '-l',
        'org.projectcalico.label.role=db',
        '-l',
        'other=ignored',
        '--network',
        'any',
        'busybox',
        'sleep',
        '600',
      ]);
      await until(async () => {
        const eps = JSON.parse((await h.calico(['endpoint', 'ls', '--json'])).stdout) as Array<{
          containerName?: string;
          containerId?: string;
          labels: Record<string, string>;
        }>;
        const e = eps.find((x) => x.containerName === 'lbl');
        return !!e && e.containerId === id && JSON.stringify(e.labels) === JSON.stringify({ role: 'db' });
      }, 'endpoint of lbl learned');
      assert.match((await h.calico(['endpoint', 'ls'])).stdout, new RegExp(`${hostName}\\s+\\w{12}\\s+lbl\\s+any\\s+cali`));
    });

    test('the network MTU option is seen inside the container', async () => {
      await h.dockerOk(['network', 'create', ...CALICO, '-o', 'com.docker.network.driver.mtu=1400', 'small']);
      const out = await h.dockerOk(['run', '--rm', '--network', 'small', 'busybox', 'ip', 'link', 'show', 'eth0']);
      assert.match(out, /mtu 1400/);
    });

    test('addresses come only from the ip-range', async () => {
      await h.dockerOk(['run', '-d', '--name', 'r1', '--network', 'ranged', 'busybox', 'sleep', '600']);
      const last = Number((await addrOf('r1', 'ranged')).split('.')[3]);
      assert.ok(last >= 128 && last < 192, `address .${last} is outside 10.65.41.128/26`);
    });

    test('a container on two calico networks reaches both', async () => {
      await h.dockerOk(['run', '-d', '--name', 'm1', '--network', 'any', 'busybox', 'sleep', '600']);
      await h.dockerOk(['network', 'connect', 'part', 'm1']);
      await h.dockerOk(['run', '-d', '--name', 'a1', '--network', 'any', 'busybox', 'sleep', '600']);
      await exec('m1', 'ping', '-c', '2', '-W', '2', await addrOf('a1', 'any'));
      await exec('m1', 'ping', '-c', '2', '-W', '2', await addrOf('p1', 'part'));
      await exec('p1', 'ping', '-c', '2', '-W', '2', await addrOf('m1', 'part'));
    });

    test('disconnect and connect, stop and start, rm -f and network rm leave nothing behind', async () => {
      await h.dockerOk(['network', 'disconnect', 'part', 'm1']);
      await h.dockerOk(['network', 'connect', 'part', 'm1']);
      await exec('m1', 'ping', '-c', '1', '-W', '2', await addrOf('p1', 'part'));
      await h.dockerOk(['stop', '-t', '1', 'd1']);
      await h.dockerOk(['start', 'd1']);
      await exec('d1', 'ping', '-c', '1', '-W', '2', await addrOf('d2', 'dual'));
      const all = (await h.dockerOk(['ps', '-aq'])).split('\n').filter(Boolean);
      await h.dockerOk(['rm', '-f', ...all]);
      for (const n of ['any', 'whole', 'part', 'ranged', 'dual', 'small']) await h.dockerOk(['network', 'rm', n]);
      await assertClean();
    });
  });
}

if (require.main === module) dockerSuite('legacy');
