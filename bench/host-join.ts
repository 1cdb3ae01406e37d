/**
 * Part of `npm run bench:fabric`: how soon a host that joins is reached. Each sample adds a
 * fresh host to the fabric with dockerd up but `calico node` not yet started, then times from
 * the node's start until a container on another host gets a ping reply from a container on the
 * new host ("reached"), and until that container gets one from a container on a third host
 * ("reaches"). The new host's `docker network create` and `docker run` are inside the time, as
 * they would be for a user. The reference is the same `docker run` and pings on a host that
 * joined long ago, timed from the `docker run`: what is left once joining costs nothing.
 */
import type { Fabric } from '../test/harness/fabric';
import type { NetnsScope } from '../test/harness/netns';
import { type DockerHost, startDockerHost } from '../test/harness/docker';
import { cidrLast, containsIP, parseCidr, parseIP } from '../lib/ip';
import { percentile } from './stats';

export interface JoinTimes {
  /** From node start (or `docker run` for the reference) until another host's container got a reply from the new one. */
  reachedMs: number;
  /** Until the new host's container got a reply from a container on another host. */
  reachesMs: number;
}

export interface HostJoinOptions {
  scope: NetnsScope;
  fabric: Fabric;
  /** Holds container `prober` at `proberIp`: it pings the new host's container. */
  prober: DockerHost;
  proberIp: string;
  /** Holds the container the new host's container pings, at `targetIp`. */
  target: DockerHost;
  targetIp: string;
  network: string;
  samples: number;
  /** Fabric indexes from here on are free (172.31.0.<n>). */
  firstIndex: number;
  env?: Record<string, string>;
}

/**
 * Pings `ip` every 20 ms from container `from` on `h` until the first reply; throws after 30 s.
 * One ping stream, not one `ping -c 1 -W 1` after another: a ping sent before the route exists
 * waits its whole second for a reply, which would round every time up by up to 1 s. grep stops
 * at the first reply, and ping dies writing the next line into the closed pipe.
 */
async function pingUntilReply(h: DockerHost, from: string, ip: string): Promise<void> {
  const script = `until ping -i 0.02 -w 30 ${ip} 2>/dev/null | grep -q -m 1 'bytes from'; do sleep 0.02; done`;
  const r = await h.docker(['exec', from, 'busybox', 'timeout', '30', 'sh', '-c', script], { timeoutMs: 35_000 });
  if (r.code !== 0) throw new Error(`no reply from ${ip} to ${from} on ${h.name} within 30 s`);
}

/**
 * The container's address on `network`, checked: an address that is not in the network's
 * subnet, or is that subnet's network or broadcast address, means the wrong field was read.
 */
export async function containerAddress(h: DockerHost, name: string, network: string): Promise<string> {
  // Both at once: the pings start only after this, in the new host's time and the reference's alike.
  const [ip, subnet] = await Promise.all([
    h.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name]),
    h.dockerOk(['network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', network]),
  ]);
  const cidr = subnet.split(/\s+/).find((c) => c.includes('.'));
  if (!ip || !cidr) throw new Error(`container ${name} on ${h.name} has no IPv4 address on ${network} (got "${ip}", subnet "${subnet}")`);
  const a = parseIP(ip);
  const c = parseCidr(cidr);
  if (!containsIP(c, a)) throw new Error(`container ${name}'s address ${ip} is outside ${network}'s subnet ${cidr}`);
  if (c.prefix < 31 && (a.value === c.base || a.value === cidrLast(c)))
    throw new Error(`container ${name}'s address ${ip} is ${cidr}'s network or broadcast address`);
  return ip;
}

/** Times both directions at once, from `t0`. */
async function timeBoth(t0: number, reached: () => Promise<void>, reaches: () => Promise<void>): Promise<JoinTimes> {
  const [reachedMs, reachesMs] = await Promise.all([reached().then(() => performance.now() - t0), reaches().then(() => performance.now() - t0)]);
  return { reachedMs, reachesMs };
}

function stat(xs: number[]) {
  const s = [...xs].sort((x, y) => x - y);
  return {
    samples: s.length,
    medianMs: Math.round(percentile(s, 50)),
    p90Ms: Math.round(percentile(s, 90)),
    maxMs: Math.round(s[s.length - 1] ?? NaN),
    // In the order taken, to see whether the slow ones are the first (cold caches) or random.
    eachMs: xs.map((x) => Math.round(x)),
  };
}

export async function hostJoin(o: HostJoinOptions) {
  const joining: JoinTimes[] = [];
  const reference: JoinTimes[] = [];
  for (let i = 0; i < o.samples; i++) {
    const name = `bj${i}`;
    const { ns, ip } = await o.fabric.addHost(name, o.firstIndex + i);
    // Its dockerd and image first, untimed: a host's Docker is up before calico node is started.
    const c = await startDockerHost(o.scope, { name, etcd: o.fabric.etcd.endpoint, env: { CALICO_IP: ip, ...o.env }, onFabric: { ns, ip }, deferNode: true });
    try {
      const t0 = performance.now();
      await c.node.start();
      await c.dockerOk(['network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', o.network]);
      await c.dockerOk(['run', '-d', '--name', 'joiner', '--network', o.network, 'busybox', 'sleep', '3600']);
      const addr = await containerAddress(c, 'joiner', o.network);
      joining.push(
        await timeBoth(
          t0,
          () => pingUntilReply(o.prober, 'prober', addr),
          () => pingUntilReply(c, 'joiner', o.targetIp),
        ),
      );
    } finally {
      await c.destroy();
      // Forget it, so later samples do not keep sessions to hosts that are gone.
      await o.target.calico(['node', 'rm', '--force', name]);
    }
    // The reference: the same container start and pings on a host that joined long ago (it
    // pings the prober: the target is on its own host).
    const ref = `ref${i}`;
    const t1 = performance.now();
    await o.target.dockerOk(['run', '-d', '--name', ref, '--network', o.network, 'busybox', 'sleep', '3600']);
    const refAddr = await containerAddress(o.target, ref, o.network);
    reference.push(
      await timeBoth(
        t1,
        () => pingUntilReply(o.prober, 'prober', refAddr),
        () => pingUntilReply(o.target, ref, o.proberIp),
      ),
    );
    await o.target.dockerOk(['rm', '-f', ref]);
  }
  return {
    newHost: { reached: stat(joining.map((j) => j.reachedMs)), reaches: stat(joining.map((j) => j.reachesMs)) },
    joinedHost: { reached: stat(reference.map((j) => j.reachedMs)), reaches: stat(reference.map((j) => j.reachesMs)) },
  };
}
