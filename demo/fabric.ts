/**
 * `npm run demo` (root): the product's job, shown on one machine. Builds a fabric of three hosts
 * (network namespaces on a bridge, one etcd), each with its own dockerd and `calico node`
 * running BIRD; creates the same calico network on each, runs a container on each, prints the
 * addresses, the BGP sessions, the routes each host learned and a ping matrix, then tears it all
 * down. Nothing leaves the namespaces it creates.
 */
import { netnsScope } from '../test/harness/netns';
import { startFabric } from '../test/harness/fabric';
import { type DockerHost, startDockerHost } from '../test/harness/docker';

const HOSTS = Number(process.env.DEMO_HOSTS ?? 3);

function say(s = ''): void {
  process.stdout.write(s + '\n');
}

async function main() {
  const scope = netnsScope();
  const hosts: DockerHost[] = [];
  const fabric = await startFabric(scope);
  try {
    say(`fabric: bridge with etcd at ${fabric.etcd.endpoint}`);
    for (let i = 1; i <= HOSTS; i++) {
      const { ns, ip } = await fabric.addHost(`demo${i}`, i);
      hosts.push(
        await startDockerHost(scope, { name: `demo${i}`, etcd: fabric.etcd.endpoint, env: { CALICO_IP: ip, CALICO_LOG_LEVEL: 'warn' }, onFabric: { ns, ip } }),
      );
      say(`host demo${i}: ${ip}, dockerd and calico node up`);
    }
    const ctrs: Array<{ host: string; name: string; ip: string; h: DockerHost }> = [];
    for (const h of hosts) {
      await h.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', 'demo']);
      const name = `web-${h.name}`;
      await h.dockerOk(['run', '-d', '--name', name, '--network', 'demo', 'busybox', 'sleep', '3600']);
      ctrs.push({ host: h.name, name, ip: await h.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.demo.IPAddress}}', name]), h });
    }
    say('\ncontainers:');
    for (const c of ctrs) say(`  ${c.name.padEnd(12)} on ${c.host}  ${c.ip}/32`);
    // Wait until every host has learned every other host's block.
    const deadline = Date.now() + 30_000;
    for (const h of hosts) {
      for (;;) {
        const routes = await h.ns.ipJson<Array<{ gateway?: string }>>(['route', 'show', 'proto', 'bird']);
        if (new Set(routes.map((r) => r.gateway).filter(Boolean)).size >= hosts.length - 1 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    for (const h of hosts) {
      const st = JSON.parse((await h.calico(['status', '--json'])).stdout) as {
        bgp: { sessions: Array<{ name: string; info: string }> };
        blocks: Array<{ cidr: string }>;
      };
      say(`\n${h.name}: blocks ${st.blocks.map((b) => b.cidr).join(', ')}`);
      for (const s of st.bgp.sessions) say(`  BGP ${s.name.padEnd(20)} ${s.info}`);
      const routes = await h.ns.ip(['route', 'show', 'proto', 'bird']);
      for (const r of routes.trim().split('\n')) say(`  route ${r}`);
    }
    say('\nping matrix (from row to column):');
    say('  ' + ''.padEnd(14) + ctrs.map((c) => c.name.padEnd(14)).join(''));
    for (const a of ctrs) {
      const cells: string[] = [];
      for (const b of ctrs) {
        if (a === b) {
          cells.push('-'.padEnd(14));
          continue;
        }
        const r = await a.h.docker(['exec', a.name, 'ping', '-c', '1', '-W', '2', b.ip]);
        cells.push((r.code === 0 ? 'ok' : 'FAIL').padEnd(14));
      }
      say('  ' + a.name.padEnd(14) + cells.join(''));
    }
  } finally {
    say('\ntearing down');
    for (const h of hosts) await h.destroy();
    await fabric.etcd.destroy();
    await scope.destroyAll();
  }
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
