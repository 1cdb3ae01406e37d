/** `calico ipam show|check|release`. */
import type { Command } from 'commander';
import { Allocator, describeOwner } from '../ipam/allocator';
import * as blk from '../ipam/block';
import { checkIpam } from '../ipam/check';
import { Pools } from '../ipam/pools';
import { loadConfig } from '../lib/config';
import { keys } from '../lib/datastore/keys';
import type { BlockRecord, EndpointRecord, NetworkRecord } from '../lib/datastore/records';
import { BadRequestError } from '../lib/errors';
import { cidrSize, containsIP, formatIP, parseCidr, parseIP } from '../lib/ip';
import { silentLogger } from '../lib/log';
import { connect } from './connect';
import { print, table } from './output';
import { run } from './run';

export function ipamCommands(program: Command): void {
  const ipam = program.command('ipam').description('inspect and repair address allocations');
  ipam
    .command('show')
    .description('blocks, their host affinity and use; with --ip, who holds an address')
    .option('--ip <address>', 'show the owner of one address')
    .option('--allocations', 'list every allocated address with its owner')
    .option('--json', 'print JSON')
    .action((o: { ip?: string; allocations?: boolean; json?: boolean }) =>
      run(async () => {
        const kv = connect();
        try {
          const blocks = (await kv.list(keys.blocks())).map((e) => JSON.parse(e.value) as BlockRecord);
          if (o.ip) {
            const ip = parseIP(o.ip, '--ip');
            const b = blocks.find((x) => containsIP(parseCidr(x.cidr), ip));
            const owner = b && blk.ownerOf(b, parseCidr(b.cidr), ip);
            print(!!o.json, { ip: formatIP(ip), block: b?.cidr ?? null, owner: owner ?? null }, () =>
              owner ? `${formatIP(ip)} is held by ${describeOwner(owner)} (block ${b.cidr})` : `${formatIP(ip)} is free`,
            );
            return;
          }
          if (o.allocations) {
            const list = blocks.flatMap((b) =>
              blk.allocations(b, parseCidr(b.cidr)).map(({ ip, owner }) => ({ ip: formatIP(ip), block: b.cidr, affinity: b.affinity, owner })),
            );
            print(!!o.json, list, () =>
              table(
                ['ADDRESS', 'BLOCK', 'KIND', 'HOST', 'NETWORK', 'ENDPOINT', 'SINCE'],
                list.map((a) => [a.ip, a.block, a.owner.kind, a.owner.host, a.owner.network?.slice(0, 12), a.owner.endpoint?.slice(0, 12), a.owner.since]),
              ),
            );
            return;
          }
          const rows = blocks.map((b) => ({
            cidr: b.cidr,
            affinity: b.affinity,
            used: Object.keys(b.allocations).length,
            size: Number(cidrSize(parseCidr(b.cidr))),
          }));
          print(!!o.json, rows, () =>
            table(
              ['BLOCK', 'HOST', 'IN USE', 'SIZE'],
              rows.map((r) => [r.cidr, r.affinity ?? '(none)', r.used, r.size]),
            ),
          );
        } finally {
          await kv.close();
        }
      }),
    );
  ipam
    .command('check')
    .description('report allocations without a live endpoint and endpoints without an allocation (exit 1 if any)')
    .option('--grace <seconds>', 'how old an address never attached to an endpoint must be to count as leaked', '60')
    .option('--json', 'print JSON')
    .action((o: { grace: string; json?: boolean }) =>
      run(async () => {
        if (!/^\d+$/.test(o.grace)) throw new BadRequestError(`--grace "${o.grace}" is not a number of seconds`);
        const kv = connect();
        try {
          const [b, e, n] = await Promise.all([kv.list(keys.blocks()), kv.list(keys.endpoints()), kv.list(keys.networks())]);
          const report = checkIpam(
            b.map((x) => JSON.parse(x.value) as BlockRecord),
            e.map((x) => JSON.parse(x.value) as EndpointRecord),
            n.map((x) => JSON.parse(x.value) as NetworkRecord),
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
        } finally {
          await kv.close();
        }
      }),
    );
  ipam
    .command('release <ip...>')
    .description('free addresses by hand (refuses addresses whose endpoint still exists unless --force)')
    .option('--force', 'release even if the owning endpoint still exists')
    .action((ips: string[], o: { force?: boolean }) =>
      run(async () => {
        const cfg = loadConfig();
        const kv = connect(cfg);
        try {
          const allocator = new Allocator(kv, new Pools(kv), cfg.nodeName, silentLogger());
          let refused = 0;
          for (const s of ips) {
            const ip = parseIP(s, 'address');
            const r = await allocator.release(ip, { force: o.force });
            if (r === 'in-use') refused++;
            process.stdout.write(`${formatIP(ip)}: ${r === 'in-use' ? 'kept: its endpoint still exists (use --force)' : r}\n`);
          }
          return refused ? 1 : 0;
        } finally {
          await kv.close();
        }
      }),
    );
}
