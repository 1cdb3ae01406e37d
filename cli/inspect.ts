/** `calico endpoint ls`, `calico node ls`, `calico status`. */
import type { Command } from 'commander';
import { Pools } from '../ipam/pools';
import { loadHostConfig } from '../lib/config';
import { Blocks } from '../ipam/blocks';
import { codecs } from '../lib/datastore/codec';
import { keyName, keys } from '../lib/datastore/keys';
import { cidrFromKey } from '../lib/ip';
import { ConfigError, errorMessage } from '../lib/errors';
import { getSettings } from '../routing/model';
import path from 'node:path';
import { silentLogger } from '../lib/log';
import { Bird } from '../routing/bird';
import { withKv } from './connect';
import { type EncapStatus, encapStatus } from '../encap/status';
import { settingsOf } from '../ipam/pool-settings';
import { print, table } from './output';
import { describeBinding } from '../ports/request';
import { run } from './run';

export function endpointCommands(program: Command): void {
  program
    .command('endpoint')
    .description('container endpoints')
    .command('ls')
    .description('list endpoints on every host (or one)')
    .option('--host <name>', 'only this host')
    .option('--json', 'print JSON')
    .action((o: { host?: string; json?: boolean }) =>
      run(async () => {
        return withKv(async (kv) => {
          const eps = codecs.endpoint.decodeAll(await kv.list(keys.endpoints(o.host)));
          const nets = new Map(codecs.network.decodeAll(await kv.list(keys.networks())).map((n) => [`${n.host}/${n.id}`, n]));
          print(!!o.json, eps, () =>
            table(
              ['HOST', 'ENDPOINT', 'CONTAINER', 'NETWORK', 'INTERFACE', 'ADDRESSES', 'PORTS'],
              eps.map((e) => [
                e.host,
                e.id.slice(0, 12),
                e.containerName ?? e.containerId?.slice(0, 12),
                nets.get(`${e.host}/${e.network}`)?.name ?? e.network.slice(0, 12),
                e.ifName,
                [...e.ipv4, ...e.ipv6].join(','),
                // Published bindings only: a container's other networks carry the map unpublished.
                (e.ports ?? [])
                  .filter((b) => b.published !== undefined)
                  .map(describeBinding)
                  .join(',') || undefined,
              ]),
            ),
          );
        });
      }),
    );
}

export function nodeListCommand(node: Command): void {
  node
    .command('ls')
    .description('list hosts registered in etcd')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        return withKv(async (kv) => {
          const alive = new Set((await kv.list(keys.alives(), { keysOnly: true })).map((e) => keyName(e.key, keys.alives())));
          const defaultAsn = (await getSettings(kv)).asn;
          // A host without its own AS uses the global default: show the AS it really speaks.
          const hosts = codecs.host.decodeAll(await kv.list(keys.hosts())).map((h) => ({ ...h, asn: h.asn ?? defaultAsn, alive: alive.has(h.name) }));
          print(!!o.json, hosts, () =>
            table(
              ['NAME', 'ADDRESS', 'AS', 'ALIVE', 'VERSION', 'STARTED'],
              hosts.map((h) => [h.name, h.ipv4, h.asn, h.alive ? 'yes' : 'no', h.version, h.startedAt]),
            ),
          );
        });
      }),
    );
}

/** Tunnel devices here, then how each other host's blocks are reached from here. */
function encapLines(e: EncapStatus): string[] {
  const dev = Object.entries(e.devices)
    .map(([n, d]) => (d ? `${n} ${d.up ? 'up' : 'down'} mtu ${d.mtu}${n.startsWith('vxlan') ? ` vtep ${d.mac}` : ''}` : `${n} absent`))
    .join(', ');
  return [
    `tunnels:    ${dev}`,
    'hosts reached:',
    table(
      ['HOST', 'ADDRESS', 'SUBNET', 'VTEP', 'BLOCKS'],
      e.hosts.map((h) => [h.host, h.address, h.subnet, h.vtep, h.blocks.map((b) => `${b.cidr} ${b.via}`).join(', ') || '-']),
    ),
  ];
}

export function statusCommand(program: Command): void {
  program
    .command('status')
    .description("this host's view: etcd, pools, blocks and endpoints")
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        const cfg = loadHostConfig();
        return withKv(async (kv) => {
          let etcd = 'reachable';
          let report: Record<string, unknown> = {};
          let encapsulation: EncapStatus | undefined;
          try {
            const [host, pools, aff, eps] = await Promise.all([
              kv.get(keys.host(cfg.nodeName)),
              new Pools(kv, 0).list(),
              kv.list(keys.affinities(cfg.nodeName), { keysOnly: true }),
              kv.list(keys.endpoints(cfg.nodeName)),
            ]);
            const found = new Blocks(kv);
            const blocks = (await Promise.all(aff.map((a) => found.get(cidrFromKey(keyName(a.key, keys.affinities(cfg.nodeName))))))).flatMap((b) =>
              b ? [b.rec] : [],
            );
            report = {
              node: cfg.nodeName,
              registered: host ? codecs.host.decode(host) : null,
              pools: pools.map((p) => ({ cidr: p.cidr, disabled: p.disabled, ...settingsOf(p) })),
              blocks: blocks.map((b) => ({ cidr: b.cidr, used: Object.keys(b.allocations).length })),
              endpoints: eps.length,
            };
            encapsulation = await encapStatus(kv, cfg.nodeName);
          } catch (err) {
            // A setting etcd refuses is not "unreachable": the message says which to fix.
            if (err instanceof ConfigError) throw err;
            etcd = `unreachable: ${errorMessage(err)}`;
          }
          // BGP: ask this host's BIRD (managed or external) over its control socket.
          let bgp: unknown = 'off';
          if (cfg.bird !== 'off') {
            const dir = path.join(cfg.dataDir, 'bird');
            const bird = new Bird({ dir, socket: path.join(dir, 'bird.ctl'), external: true, log: silentLogger() });
            try {
              bgp = { sessions: await bird.sessions(), routes: await bird.learnedRoutes() };
            } catch (err) {
              bgp = `BIRD not answering on ${path.join(dir, 'bird.ctl')}: ${errorMessage(err)}`;
            }
          }
          const data = { etcd, ...report, ...(encapsulation ? { encapsulation } : {}), bgp };
          print(!!o.json, data, () =>
            [
              `node:       ${cfg.nodeName}${report.registered ? '' : ' (not registered: is calico node running?)'}`,
              `etcd:       ${etcd}`,
              `pools:      ${((report.pools as Array<{ cidr: string; disabled: boolean }>) ?? []).map((p) => p.cidr + (p.disabled ? ' (disabled)' : '')).join(', ') || '-'}`,
              `blocks:     ${((report.blocks as Array<{ cidr: string; used: number }>) ?? []).map((b) => `${b.cidr} (${b.used} used)`).join(', ') || '-'}`,
              `endpoints:  ${(report.endpoints as number | undefined) ?? '-'}`,
              ...(encapsulation ? encapLines(encapsulation) : []),
              ...(typeof bgp === 'string'
                ? [`bgp:        ${bgp}`]
                : [
                    'bgp sessions:',
                    table(
                      ['PEER', 'STATE', 'SINCE', 'INFO'],
                      (bgp as { sessions: Array<{ name: string; state: string; since: string; info: string }> }).sessions.map((x) => [
                        x.name,
                        x.state,
                        x.since,
                        x.info,
                      ]),
                    ),
                    'learned routes:',
                    table(
                      ['DESTINATION', 'VIA', 'SESSION'],
                      (bgp as { routes: Array<{ dst: string; via?: string; protocol: string }> }).routes.map((r) => [r.dst, r.via, r.protocol]),
                    ),
                  ]),
            ].join('\n'),
          );
          return etcd === 'reachable' ? 0 : 2;
        }, cfg);
      }),
    );
}
