/**
 * Where outgoing NAT lives in the kernel: our own nftables table beside the firewall's, or an
 * iptables nat chain jumped to from POSTROUTING where the firewall resolved to iptables. Both
 * replace their rules whole per apply (a few pools; rare changes) and can tell whether what is in
 * the kernel is still what they last wrote, so the periodic check repairs hand edits and flushes.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FAMILIES, type Family } from '../firewall/desired';
import type { RulesBackend } from '../firewall/kept-rules';
import { OwnTable } from '../firewall/nftables/own-table';
import { restore, tool } from '../firewall/iptables/tools';
import { IPT_CHAIN, NFT_TABLE, type NatPlan, natNeeded, renderIptables, renderNft } from './rules';

const run = promisify(execFile);

export type NatBackend = RulesBackend<NatPlan>;

export class NftNat implements NatBackend {
  readonly name = 'nftables' as const;
  private readonly table = new OwnTable(NFT_TABLE);

  apply(plan: NatPlan): Promise<void> {
    return this.table.write(renderNft(plan), natNeeded(plan));
  }

  intact(): Promise<boolean> {
    return this.table.intact();
  }

  remove(): Promise<void> {
    return this.table.remove();
  }
}

export class IptablesNat implements NatBackend {
  readonly name = 'iptables' as const;
  private written?: Record<Family, string[]>;

  async apply(plan: NatPlan): Promise<void> {
    this.written = undefined;
    const wrote = { 4: [] as string[], 6: [] as string[] };
    for (const f of FAMILIES) {
      if (!plan.nat[f].length) {
        await removeChain(f);
        continue;
      }
      await restore(f, renderIptables(plan, f));
      if (!(await hasJump(f))) await run(tool(f), ['-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-j', IPT_CHAIN]);
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
    for (const f of FAMILIES) await removeChain(f);
  }

  /** Our chain's rules and the jump to it, as iptables-save prints them. */
  private async saved(f: Family): Promise<string[]> {
    const { stdout } = await run(`${tool(f)}-save`, ['-t', 'nat']);
    return stdout.split('\n').filter((l) => l.startsWith(`-A ${IPT_CHAIN} `) || l === `-A POSTROUTING -j ${IPT_CHAIN}`);
  }
}

async function hasJump(f: Family): Promise<boolean> {
  try {
    await run(tool(f), ['-w', '-t', 'nat', '-C', 'POSTROUTING', '-j', IPT_CHAIN]);
    return true;
  } catch {
    return false;
  }
}

async function removeChain(f: Family): Promise<void> {
  // -D removes one copy; more can only come from someone else's hand, so a few tries.
  for (let i = 0; i < 5 && (await hasJump(f)); i++) await run(tool(f), ['-w', '-t', 'nat', '-D', 'POSTROUTING', '-j', IPT_CHAIN]).catch(() => undefined);
  await run(tool(f), ['-w', '-t', 'nat', '-F', IPT_CHAIN]).catch(() => undefined);
  await run(tool(f), ['-w', '-t', 'nat', '-X', IPT_CHAIN]).catch(() => undefined);
}
