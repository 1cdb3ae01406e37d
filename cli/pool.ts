/** `calico pool add|ls|rm|disable|enable`. */
import type { Command } from 'commander';
import { Pools } from '../ipam/pools';
import { Blocks } from '../ipam/blocks';
import { type PoolSettings, describeEncap, parseBool, parseEncapMode, settingsOf } from '../ipam/pool-settings';
import { BadRequestError } from '../lib/errors';
import { cidrSize, containsCidr } from '../lib/ip';
import { withKv } from './connect';
import { print, table } from './output';
import { run } from './run';

interface SettingFlags {
  natOutgoing?: string | boolean;
  vxlanMode?: string;
  ipipMode?: string;
}
const FLAG_NAMES = { vxlanMode: '--vxlan-mode', ipipMode: '--ipip-mode' };

/** Only the flags given: `calico pool set` leaves the rest as they are. */
function settingFlags(o: SettingFlags): Partial<PoolSettings> {
  return {
    ...(o.natOutgoing !== undefined ? { natOutgoing: o.natOutgoing === true ? true : parseBool('--nat-outgoing', String(o.natOutgoing)) } : {}),
    ...(o.vxlanMode !== undefined ? { vxlanMode: parseEncapMode('--vxlan-mode', o.vxlanMode) } : {}),
    ...(o.ipipMode !== undefined ? { ipipMode: parseEncapMode('--ipip-mode', o.ipipMode) } : {}),
  };
}

const MODES = 'Always, CrossSubnet or Never';
const describe = (rec: Parameters<typeof settingsOf>[0]) => {
  const s = settingsOf(rec);
  return `nat-outgoing ${s.natOutgoing}, encapsulation ${describeEncap(rec)}`;
};

export function poolCommands(program: Command): void {
  const pool = program.command('pool').description('manage IP pools, the ranges container addresses come from');
  pool
    .command('add <cidr>')
    .description('add a pool (IPv4 or IPv6)')
    .option('--block-size <prefix>', 'prefix length of the per-host blocks (default 26 for IPv4, 122 for IPv6)')
    .option('--disabled', 'create it disabled (no new allocations)')
    .option('--nat-outgoing [bool]', 'translate traffic to destinations outside every pool to the host address (default false)')
    .option('--vxlan-mode <mode>', `VXLAN encapsulation between hosts: ${MODES} (default Never)`)
    .option('--ipip-mode <mode>', `IP-in-IP encapsulation between hosts: ${MODES} (default Never)`)
    .action((cidr: string, o: { blockSize?: string; disabled?: boolean } & SettingFlags) =>
      run(async () => {
        let blockSize: number | undefined;
        if (o.blockSize !== undefined) {
          if (!/^\d+$/.test(o.blockSize)) throw new BadRequestError(`--block-size "${o.blockSize}" is not a prefix length like 26`);
          blockSize = Number(o.blockSize);
        }
        return withKv(async (kv) => {
          const rec = await new Pools(kv).add(cidr, { blockSize, disabled: o.disabled, ...settingFlags(o) }, FLAG_NAMES);
          process.stdout.write(`pool ${rec.cidr} (blocks /${rec.blockSize}, ${describe(rec)})${rec.disabled ? ' disabled' : ''}\n`);
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
            const settings = settingsOf(p);
            const inPool = blocks.filter((b) => containsCidr(p.net, b.net));
            const used = inPool.reduce((n, b) => n + Object.keys(b.rec.allocations).length, 0);
            return {
              cidr: p.cidr,
              family: p.family,
              blockSize: p.blockSize,
              disabled: p.disabled,
              ...settings,
              blocks: inPool.length,
              used,
              size: cidrSize(p.net).toString(),
            };
          });
          print(!!o.json, rows, () =>
            table(
              ['CIDR', 'BLOCK', 'STATE', 'NAT', 'ENCAP', 'BLOCKS', 'IN USE', 'SIZE'],
              rows.map((r) => [
                r.cidr,
                `/${r.blockSize}`,
                r.disabled ? 'disabled' : 'enabled',
                r.natOutgoing ? 'outgoing' : 'off',
                describeEncap(r),
                r.blocks,
                r.used,
                r.size,
              ]),
            ),
          );
        });
      }),
    );
  pool
    .command('set <cidr>')
    .description("change a pool's outgoing NAT or encapsulation; every host applies it within seconds, containers keep their addresses")
    .option('--nat-outgoing [bool]', 'true or false (no value: true)')
    .option('--vxlan-mode <mode>', MODES)
    .option('--ipip-mode <mode>', MODES)
    .action((cidr: string, o: SettingFlags) =>
      run(async () => {
        const patch = settingFlags(o);
        if (!Object.keys(patch).length) throw new BadRequestError('nothing to set: give --nat-outgoing, --vxlan-mode or --ipip-mode');
        return withKv(async (kv) => {
          const rec = await new Pools(kv).update(cidr, patch, FLAG_NAMES);
          process.stdout.write(`pool ${rec.cidr}: ${describe(rec)}\n`);
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
