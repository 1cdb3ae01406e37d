/** `calico pool add|ls|rm|disable|enable`. */
import type { Command } from 'commander';
import { Pools } from '../ipam/pools';
import { Blocks } from '../ipam/blocks';
import { BadRequestError } from '../lib/errors';
import { cidrSize, containsCidr } from '../lib/ip';
import { withKv } from './connect';
import { print, table } from './output';
import { run } from './run';

export function poolCommands(program: Command): void {
  const pool = program.command('pool').description('manage IP pools, the ranges container addresses come from');
  pool
    .command('add <cidr>')
    .description('add a pool (IPv4 or IPv6)')
    .option('--block-size <prefix>', 'prefix length of the per-host blocks (default 26 for IPv4, 122 for IPv6)')
    .option('--disabled', 'create it disabled (no new allocations)')
    .action((cidr: string, o: { blockSize?: string; disabled?: boolean }) =>
      run(async () => {
        let blockSize: number | undefined;
        if (o.blockSize !== undefined) {
          if (!/^\d+$/.test(o.blockSize)) throw new BadRequestError(`--block-size "${o.blockSize}" is not a prefix length like 26`);
          blockSize = Number(o.blockSize);
        }
        return withKv(async (kv) => {
          const rec = await new Pools(kv).add(cidr, { blockSize, disabled: o.disabled });
          process.stdout.write(`pool ${rec.cidr} (blocks /${rec.blockSize})${rec.disabled ? ' disabled' : ''}\n`);
        });
      }),
    );
  pool
    .command('ls')
    .description('list pools with their use')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        return withKv(async (kv) => {
          const pools = await new Pools(kv, 0).list();
          const blocks = await new Blocks(kv).list();
          const rows = pools.map((p) => {
            const inPool = blocks.filter((b) => containsCidr(p.net, b.net));
            const used = inPool.reduce((n, b) => n + Object.keys(b.rec.allocations).length, 0);
            return {
              cidr: p.cidr,
              family: p.family,
              blockSize: p.blockSize,
              disabled: p.disabled,
              blocks: inPool.length,
              used,
              size: cidrSize(p.net).toString(),
            };
          });
          print(!!o.json, rows, () =>
            table(
              ['CIDR', 'BLOCK', 'STATE', 'BLOCKS', 'IN USE', 'SIZE'],
              rows.map((r) => [r.cidr, `/${r.blockSize}`, r.disabled ? 'disabled' : 'enabled', r.blocks, r.used, r.size]),
            ),
          );
        });
      }),
    );
  pool
    .command('rm <cidr>')
    .description('remove a pool that has no addresses in use')
    .action((cidr: string) =>
      run(async () => {
        return withKv(async (kv) => {
          await new Pools(kv).remove(cidr);
          process.stdout.write(`removed pool ${cidr}\n`);
        });
      }),
    );
  for (const [name, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    pool
      .command(`${name} <cidr>`)
      .description(disabled ? 'stop new allocations from a pool (addresses in use keep working)' : 'allow allocations from a pool again')
      .action((cidr: string) =>
        run(async () => {
          return withKv(async (kv) => {
            const rec = await new Pools(kv).setDisabled(cidr, disabled);
            process.stdout.write(`pool ${rec.cidr} ${disabled ? 'disabled' : 'enabled'}\n`);
          });
        }),
      );
  }
}
