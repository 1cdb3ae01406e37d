/**
 * Outgoing NAT as Calico does it (Felix's cali-nat-outgoing): traffic from an address of a pool
 * with natOutgoing to a destination outside every pool leaves with the host's address; traffic
 * between pool addresses, on any host and in any pool, is never translated. Pure: pools in,
 * rule text out, the same text for the same pools (so an unchanged plan is never reapplied).
 */
import type { PoolRecord } from '../lib/datastore/records';
import { type Family, parseCidr } from '../lib/ip';

export interface NatPlan {
  /** Sources translated: the natOutgoing pools, per family. */
  nat: Record<Family, string[]>;
  /** Destinations never translated to: every pool, disabled ones too (their addresses stay in use). */
  all: Record<Family, string[]>;
}

export const NFT_TABLE = 'inet calico-nat';
export const IPT_CHAIN = 'cali-nat-outgoing';

export function natPlan(pools: ReadonlyArray<Pick<PoolRecord, 'cidr' | 'natOutgoing'>>): NatPlan {
  const plan: NatPlan = { nat: { 4: [], 6: [] }, all: { 4: [], 6: [] } };
  for (const p of [...pools].sort((a, b) => a.cidr.localeCompare(b.cidr))) {
    const f = parseCidr(p.cidr).family;
    plan.all[f].push(p.cidr);
    if (p.natOutgoing) plan.nat[f].push(p.cidr);
  }
  return plan;
}

/** Nothing to translate: no table or chain of ours at all. */
export const natNeeded = (plan: NatPlan) => plan.nat[4].length + plan.nat[6].length > 0;

const setDecl = (name: string, type: string, members: string[]) =>
  `  set ${name} { type ${type}; flags interval;${members.length ? ` elements = { ${members.join(', ')} };` : ''} }`;

/**
 * One nft transaction replacing our table whole ("add" first so the delete never fails):
 * a handful of pools, so a rewrite is as cheap as element updates and leaves nothing stale.
 * Connections already translated keep their mapping in conntrack across it.
 */
export function renderNft(plan: NatPlan): string {
  const lines = [`add table ${NFT_TABLE}`, `delete table ${NFT_TABLE}`];
  if (!natNeeded(plan)) return lines.join('\n') + '\n';
  lines.push(
    `table ${NFT_TABLE} {`,
    setDecl('nat4', 'ipv4_addr', plan.nat[4]),
    setDecl('all4', 'ipv4_addr', plan.all[4]),
    setDecl('nat6', 'ipv6_addr', plan.nat[6]),
    setDecl('all6', 'ipv6_addr', plan.all[6]),
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    '    ip saddr @nat4 ip daddr != @all4 masquerade',
    '    ip6 saddr @nat6 ip6 daddr != @all6 masquerade',
    '  }',
    '}',
  );
  return lines.join('\n') + '\n';
}

/** The chain's rules for one family: first out for any pool destination, then masquerade our sources. */
export function iptablesRules(plan: NatPlan, f: Family): string[] {
  if (!plan.nat[f].length) return [];
  return [...plan.all[f].map((c) => `-A ${IPT_CHAIN} -d ${c} -j RETURN`), ...plan.nat[f].map((c) => `-A ${IPT_CHAIN} -s ${c} -j MASQUERADE`)];
}

/** iptables-restore --noflush input: declaring the chain flushes it, so this replaces it whole. */
export function renderIptables(plan: NatPlan, f: Family): string {
  return ['*nat', `:${IPT_CHAIN} - [0:0]`, ...iptablesRules(plan, f), 'COMMIT', ''].join('\n');
}
