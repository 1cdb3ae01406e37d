/** `calico bgp config`, `calico bgp peer add|ls|rm` and `calico node set --route-reflector`. */
import type { Command } from 'commander';
import { codecs } from '../lib/datastore/codec';
import { keys } from '../lib/datastore/keys';
import { BadRequestError, NotFoundError } from '../lib/errors';
import { addPeer, getSettings, listPeers, removePeer, setSettings } from '../routing/model';
import { removeHost } from '../agent/remove-host';
import { withKv } from './connect';
import { print, table } from './output';
import { run } from './run';

function asn(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new BadRequestError(`${what} "${text}" is not an AS number`);
  return Number(text);
}

export function bgpCommands(program: Command, node: Command): void {
  const bgp = program.command('bgp').description('BGP settings and extra peers (route reflectors, top-of-rack routers)');
  bgp
    .command('config')
    .description('show, or with options change, the global BGP settings')
    .option('--as <number>', 'default AS of hosts that set no CALICO_AS')
    .option('--mesh <on|off>', 'node-to-node mesh')
    .option('--json', 'print JSON')
    .action((o: { as?: string; mesh?: string; json?: boolean }) =>
      run(async () => {
        if (o.mesh !== undefined && o.mesh !== 'on' && o.mesh !== 'off') throw new BadRequestError(`--mesh "${o.mesh}": use on or off`);
        return withKv(async (kv) => {
          const patch = { ...(o.as !== undefined ? { asn: asn(o.as, '--as') } : {}), ...(o.mesh !== undefined ? { nodeMesh: o.mesh === 'on' } : {}) };
          const s = Object.keys(patch).length ? await setSettings(kv, patch) : await getSettings(kv);
          print(!!o.json, s, () => `as: ${s.asn}\nnode-to-node mesh: ${s.nodeMesh ? 'on' : 'off'}`);
        });
      }),
    );
  const peer = bgp.command('peer').description('extra BGP peers');
  peer
    .command('add <name>')
    .description('peer every host (or one, with --host) with a router')
    .requiredOption('--ip <address>', "the peer's address")
    .requiredOption('--as <number>', "the peer's AS")
    .option('--host <name>', 'only this host peers with it')
    .action((name: string, o: { ip: string; as: string; host?: string }) =>
      run(async () => {
        return withKv(async (kv) => {
          const p = await addPeer(kv, { name, ip: o.ip, asn: asn(o.as, '--as'), ...(o.host ? { host: o.host } : {}) });
          process.stdout.write(`peer ${p.name} ${p.ip} AS ${p.asn}${p.host ? ` (host ${p.host})` : ' (every host)'}\n`);
        });
      }),
    );
  peer
    .command('ls')
    .description('list extra peers')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        return withKv(async (kv) => {
          const peers = await listPeers(kv);
          print(!!o.json, peers, () =>
            table(
              ['NAME', 'ADDRESS', 'AS', 'HOST'],
              peers.map((p) => [p.name, p.ip, p.asn, p.host ?? '(all)']),
            ),
          );
        });
      }),
    );
  peer
    .command('rm <name>')
    .description('remove an extra peer')
    .action((name: string) =>
      run(async () => {
        return withKv(async (kv) => {
          await removePeer(kv, name);
          process.stdout.write(`removed peer ${name}\n`);
        });
      }),
    );
  node
    .command('rm <name>')
    .description("forget a host: release its addresses and blocks, remove it from every peer's BGP configuration")
    .option('--force', 'even if its calico node still holds its liveness key')
    .action((name: string, o: { force?: boolean }) =>
      run(async () => {
        return withKv(async (kv) => {
          const r = await removeHost(kv, name, { force: o.force });
          process.stdout.write(
            `removed host ${name}: ${r.endpoints} endpoint(s), ${r.networks} network(s), ${r.released} address(es) released, ${r.blocksDeleted} block(s) deleted${r.blocksOrphaned ? `, ${r.blocksOrphaned} left without affinity (other hosts hold addresses in them)` : ''}\n`,
          );
        });
      }),
    );
  node
    .command('set <name>')
    .description("change a host's BGP role")
    .requiredOption('--route-reflector <cluster-id|off>', 'make the host a route reflector with this cluster ID (an IPv4-style ID like 1.0.0.1), or stop')
    .action((name: string, o: { routeReflector: string }) =>
      run(async () => {
        if (o.routeReflector !== 'off' && !/^(\d{1,3}\.){3}\d{1,3}$/.test(o.routeReflector)) {
          throw new BadRequestError(`--route-reflector "${o.routeReflector}": give a cluster ID like 1.0.0.1, or off`);
        }
        return withKv(async (kv) => {
          const e = await kv.get(keys.host(name));
          if (!e) throw new NotFoundError(`no host ${name}; see "calico node ls"`);
          const rec = codecs.host.decode(e);
          if (o.routeReflector === 'off') delete rec.routeReflector;
          else rec.routeReflector = o.routeReflector;
          if (!(await kv.txn([{ key: e.key, mod: e.mod }], [{ put: e.key, value: codecs.host.encode(rec) }])))
            throw new BadRequestError(`host ${name} changed meanwhile; try again`);
          process.stdout.write(`host ${name}: ${rec.routeReflector ? `route reflector, cluster ${rec.routeReflector}` : 'not a route reflector'}\n`);
        });
      }),
    );
}
