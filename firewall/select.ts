/**
 * Which backend enforces policy (CALICO_FIREWALL=auto|nftables|iptables), and the migration
 * between them: the backend not chosen has its rules and sets removed, so a host switched from
 * one to the other (or to CALICO_POLICY=off, which removes both) never filters twice or keeps
 * stale rules no one updates.
 */
import type { Logger } from '../lib/log';
import { BadRequestError, errorMessage } from '../lib/errors';
import type { FirewallBackend } from './desired';
import { IptablesBackend } from './iptables/backend';
import { NftablesBackend, nftablesAvailable } from './nftables/backend';
import { ensureCoexist, removeCoexist } from './nftables/coexist';

export type FirewallChoice = 'auto' | 'nftables' | 'iptables';

/**
 * Which kernel interface `choice` resolves to; `auto` is nftables where libnftables and the
 * kernel accept our table. Outgoing NAT and published ports follow the same choice.
 */
export async function firewallKind(choice: FirewallChoice, log: Logger): Promise<FirewallBackend['name']> {
  if (choice === 'iptables') return 'iptables';
  const nft = await nftablesAvailable();
  if (nft.ok) return 'nftables';
  if (choice === 'nftables')
    throw new BadRequestError(`CALICO_FIREWALL=nftables, but nftables cannot be used here: ${nft.reason}; install nftables or set CALICO_FIREWALL=iptables`);
  log.info('nftables is not usable here; the firewall uses iptables', { reason: nft.reason });
  return 'iptables';
}

/**
 * Before the iptables backend's first apply: the nftables backend's "accept cali+" rules at the
 * top of FORWARD (firewall/nftables/coexist.ts) would let workload traffic past our jump there.
 * Removing them first only narrows what passes until the first apply.
 */
export async function prepareFirewall(backend: FirewallBackend): Promise<void> {
  if (backend.name === 'iptables') await removeCoexist();
}

/**
 * CALICO_POLICY=off: no rules of ours, but workload traffic is still forwarded where dockerd's
 * own firewall set FORWARD's policy to DROP, as it would be with no firewall at all.
 */
export async function forwardWithoutPolicy(log: Logger): Promise<void> {
  await removeOtherFirewalls(log);
  await ensureCoexist();
}

/** Removes the rules of every backend but `keep` (all of them without one). Missing is success. */
export async function removeOtherFirewalls(log: Logger, keep?: FirewallBackend['name']): Promise<void> {
  const all: FirewallBackend[] = [new IptablesBackend()];
  if ((await nftablesAvailable()).ok) all.push(new NftablesBackend());
  for (const b of all) {
    if (b.name === keep) continue;
    try {
      await b.remove();
    } catch (err) {
      // A backend whose tools are missing has nothing in the kernel to remove.
      const missing = /ENOENT|not found|could not be loaded/i.test(errorMessage(err));
      log.log(missing ? 'debug' : 'warn', 'could not remove the rules of a firewall backend not in use', { backend: b.name, error: errorMessage(err) });
    }
  }
  if (keep === 'iptables') await removeCoexist();
}
