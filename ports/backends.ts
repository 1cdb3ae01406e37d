/**
 * Where published ports live in the kernel: our own nftables table, or two iptables nat chains
 * jumped to from PREROUTING, OUTPUT and POSTROUTING where the firewall resolved to iptables
 * (nat/backends.ts is the same shape). Both replace their rules whole per apply (one map or
 * chain per family, rewritten in one transaction) and can tell whether the kernel still holds
 * what they last wrote, so the periodic check repairs hand edits and flushes.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { RulesBackend } from '../firewall/kept-rules';
import { OwnTable } from '../firewall/nftables/own-table';
import { restore, tool } from '../firewall/iptables/tools';
import { FAMILIES, type Family, IPT_DNAT, IPT_MASQ, NFT_TABLE, type PortsPlan, iptablesJumps, portsNeeded, renderIptables, renderNft } from './rules';

const run = promisify(execFile);

export type PortsBackend = RulesBackend<PortsPlan>;

export class NftPorts implements PortsBackend {
  readonly name = 'nftables' as const;
  private readonly table = new OwnTable(NFT_TABLE);

  apply(plan: PortsPlan): Promise<void> {
    return this.table.write(renderNft(plan), portsNeeded(plan));
  }

  intact(): Promise<boolean> {
    return this.table.intact();
  }

  remove(): Promise<void> {
    return this.table.remove();
  }
}

const ours = (l: string) =>
  l.startsWith(`-A ${IPT_DNAT} `) || l.startsWith(`-A ${IPT_MASQ} `) || l.endsWith(` -j ${IPT_DNAT}`) || l.endsWith(` -j ${IPT_MASQ}`);

export class IptablesPorts implements PortsBackend {
  readonly name = 'iptables' as const;
  private written?: Record<Family, string[]>;

  async apply(plan: PortsPlan): Promise<void> {
    const prev = this.written;
    this.written = undefined;
    const wrote = { 4: [] as string[], 6: [] as string[] };
    for (const f of FAMILIES) {
      if (!plan.rules[f].length) {
        // Nothing of ours was there after the last apply: no processes to spawn per change.
        if (!prev || prev[f].length) await removeChains(f);
        continue;
      }
      await restore(f, renderIptables(plan, f));
      for (const j of iptablesJumps(f)) if (!(await has(f, j.chain, j.rule))) await run(tool(f), ['-w', '-t', 'nat', '-I', j.chain, '1', ...j.rule]);
      // Compared later as iptables-save spells it, not as we wrote it.
      wrote[f] = await this.saved(f);
    }
    this.written = wrote;
  }

  async intact(): Promise<boolean> {
    if (!this.written) return false;
    for (const f of FAMILIES) {
      const now = await this.saved(f);
      if (now.join('\n') !== this.written[f].join('\n')) return false;
    }
    return true;
  }

  async remove(): Promise<void> {
    this.written = undefined;
    for (const f of FAMILIES) await removeChains(f);
  }

  private async saved(f: Family): Promise<string[]> {
    const { stdout } = await run(`${tool(f)}-save`, ['-t', 'nat'], { maxBuffer: 64 * 1024 * 1024 });
    return stdout.split('\n').filter(ours);
  }
}

async function has(f: Family, chain: string, rule: string[]): Promise<boolean> {
  try {
    await run(tool(f), ['-w', '-t', 'nat', '-C', chain, ...rule]);
    return true;
  } catch {
    return false;
  }
}

async function removeChains(f: Family): Promise<void> {
  for (const j of iptablesJumps(f)) {
    // -D removes one copy; more can only come from someone else's hand, so a few tries.
    for (let i = 0; i < 5 && (await has(f, j.chain, j.rule)); i++) await run(tool(f), ['-w', '-t', 'nat', '-D', j.chain, ...j.rule]).catch(() => undefined);
  }
  for (const c of [IPT_DNAT, IPT_MASQ]) {
    await run(tool(f), ['-w', '-t', 'nat', '-F', c]).catch(() => undefined);
    await run(tool(f), ['-w', '-t', 'nat', '-X', c]).catch(() => undefined);
  }
}
