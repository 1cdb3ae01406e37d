/** `calico ipam show|check|release`. */
import type { Command } from 'commander';
import { Allocator, describeOwner } from '../ipam/allocator';
import * as blk from '../ipam/block';
import { Blocks } from '../ipam/blocks';
import { checkIpam } from '../ipam/check';
import { Pools } from '../ipam/pools';
import { loadHostConfig } from '../lib/config';
import { codecs } from '../lib/datastore/codec';
import { keys } from '../lib/datastore/keys';
import type { Owner } from '../lib/datastore/records';
import { BadRequestError } from '../lib/errors';
import { cidrSize, formatIP, parseIP } from '../lib/ip';
import { silentLogger } from '../lib/log';
import { withKv } from './connect';
import { print, table } from './output';
import { run } from './run';

const network = (o: Owner) => (o.kind === 'pending' ? undefined : o.network);
const endpoint = (o: Owner) => (o.kind === 'endpoint' ? o.endpoint : undefined);

export function ipamCommands(program: Command): void {
  const ipam = program.command('ipam').description('inspect and repair address allocations');
  ipam
    .command('show')
    .description('blocks, their host affinity and use; with --ip, who holds an address')
    .option('--ip <address>', 'show the owner of one address')
    .option('--allocations', 'list every allocated address with its owner')
    .option('--json', 'print JSON')
    .action((o: { ip?: string; allocations?: boolean; json?: boolean }) =>
      run(() =>
        withKv(async (kv) => {
          const blocks = new Blocks(kv);
          if (o.ip) {
            const ip = parseIP(o.ip, '--ip');
            const b = await blocks.find(ip);
            const owner = b && blk.ownerOf(b.rec, b.net, ip);
            print(!!o.json, { ip: formatIP(ip), block: b?.rec.cidr ?? null, owner: owner ?? null }, () =>
              owner ? `${formatIP(ip)} is held by ${describeOwner(owner)} (block ${b.rec.cidr})` : `${formatIP(ip)} is free`,
            );
            return;
          }
          const all = await blocks.list();
          if (o.allocations) {
            const list = all.flatMap((b) =>
              blk.allocations(b.rec, b.net).map(({ ip, owner }) => ({ ip: formatIP(ip), block: b.rec.cidr, affinity: b.rec.affinity, owner })),
            );
            print(!!o.json, list, () =>
              table(
                ['ADDRESS', 'BLOCK', 'KIND', 'HOST', 'NETWORK', 'ENDPOINT', 'SINCE'],
                list.map((a) => [a.ip, a.block, a.owner.kind, a.owner.host, network(a.owner)?.slice(0, 12), endpoint(a.owner)?.slice(0, 12), a.owner.since]),
              ),
            );
            return;
          }
          const rows = all.map((b) => ({
            cidr: b.rec.cidr,
            affinity: b.rec.affinity,
            used: Object.keys(b.rec.allocations).length,
            size: Number(cidrSize(b.net)),
          }));
          print(!!o.json, rows, () =>
            table(
              ['BLOCK', 'HOST', 'IN USE', 'SIZE'],
              rows.map((r) => [r.cidr, r.affinity ?? '(none)', r.used, r.size]),
            ),
          );
        }),
      ),
    );
  ipam
    .command('check')
    .description('report allocations without a live endpoint and endpoints without an allocation (exit 1 if any)')
    .option('--grace <seconds>', 'how old an address never attached to an endpoint must be to count as leaked', '60')
    .option('--json', 'print JSON')
    .action((o: { grace: string; json?: boolean }) =>
      run(async () => {
        if (!/^\d+$/.test(o.grace)) throw new BadRequestError(`--grace "${o.grace}" is not a number of seconds`);
        return withKv(async (kv) => {
          const [b, e, n] = await Promise.all([new Blocks(kv).list(), kv.list(keys.endpoints()), kv.list(keys.networks())]);
          const report = checkIpam(
            b.map((x) => x.rec),
            codecs.endpoint.decodeAll(e),
            codecs.network.decodeAll(n),
            new Date(),
            Number(o.grace) * 1000,
          );
          print(!!o.json, report, () =>
            report.ok
              ? `ok: ${report.allocations} allocation(s), ${report.endpoints} endpoint(s), no problems`
              : [
                  `${report.problems.length} problem(s):`,
                  ...report.problems.map((p) => `  ${p.kind}: ${p.detail}`),
                  'release leaked addresses with "calico ipam release <ip>"',
                ].join('\n'),
          );
          return report.ok ? 0 : 1;
        });
      }),
    );
  ipam
    .command('release <ip...>')
    .description('free addresses by hand (refuses addresses whose endpoint still exists unless --force)')
    .option('--force', 'release even if the owning endpoint still exists')
    .action((ips: string[], o: { force?: boolean }) =>
      run(async () => {
        const cfg = loadHostConfig();
        const addrs = ips.map((s) => parseIP(s, 'address'));
        return withKv(async (kv) => {
          const allocator = new Allocator(kv, new Pools(kv), cfg.nodeName, silentLogger());
          let refused = 0;
          for (const ip of addrs) {
            const r = await allocator.release(ip, { force: o.force });
            if (r === 'in-use') refused++;
            process.stdout.write(`${formatIP(ip)}: ${r === 'in-use' ? 'kept: its endpoint still exists (use --force)' : r}\n`);
          }
          return refused ? 1 : 0;
        }, cfg);
      }),
    );
}
