/**
 * The desired firewall (firewall/desired.ts) as one nftables table. Pure: text only, no kernel.
 *
 * Layout (all in {@link TABLE}):
 * - Two base chains on forward, egress (from a `cali…` interface) before ingress (to one), both
 *   ahead of Docker's filter priority. Each ends in a native verdict: `accept` ends only its own
 *   base chain, so a packet between two local endpoints is accepted only if the sender's egress
 *   chain and then the receiver's ingress chain both accept it; no marks are needed.
 * - Established/related accepted and invalid dropped first; anti-spoofing is one lookup of
 *   `iifname . saddr` in {@link OWN} for every endpoint; dispatch is one verdict-map lookup by
 *   interface ({@link FROM_MAP}, {@link TO_MAP}); an interface not in the map is dropped.
 * - The map points to a tier chain shared by every endpoint with the same (direction, policy
 *   group, profile): so an endpoint is only elements, never chains of its own.
 * - A group chain per family holds its policies' rules inline, in order (`pass` is `return` to
 *   the tier chain, which goes on to the profile); it ends in the default deny. Runs of at least
 *   {@link MIN_BLOCK} rules that each name a protocol and destination ports (any action but
 *   `pass`) become one lookup by protocol and then by port (`th dport vmap`) into small chains
 *   holding, in their order, only the rules whose protocol and ports cover that interval: a
 *   packet can match no other rule of the run, so it does not walk one rule per policy rule.
 *   Profiles compile the same way.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { InternalError } from '../../lib/errors';
import { WORKLOAD_PREFIX } from '../../lib/dataplane/types';
import type { Dir, EndpointSpec, Family, GroupSpec, PolicySpec, PortRange, ProfileSpec, RuleSpec, SetSpec, Side } from '../desired';

export const TABLE = 'inet calico';
/** Base chains. */
export const EGRESS = 'cal-fwd-egress';
export const INGRESS = 'cal-fwd-ingress';
export const INPUT = 'cal-input';
/** Regular chains the base chains jump to for `cali…` traffic. */
export const FROM_WL = 'cal-from-wl';
export const TO_WL = 'cal-to-wl';
export const TO_HOST = 'cal-to-host';
export const FROM_MAP = 'cal-from-wl-map';
export const TO_MAP = 'cal-to-wl-map';
export const OWN: Record<Family, string> = { 4: 'cal-own4', 6: 'cal-own6' };
/** Runs at least this long become a port lookup; shorter ones are cheaper walked. */
export const MIN_BLOCK = 4;

/** Chain name → its rules (the text after `add rule TABLE <chain> `). */
export type Chains = Map<string, string[]>;

const WL = `"${WORKLOAD_PREFIX}*"`;
const h = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);
const d = (dir: Dir) => (dir === 'ingress' ? 'i' : 'o');
const SAFE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$/;
const IFNAME = new RegExp(`^${WORKLOAD_PREFIX}[A-Za-z0-9_.-]{1,11}$`);

/** Names from the desired state go into nft text only after this check (no quoting games). */
export function safeName(n: string): string {
  if (!SAFE.test(n)) throw new InternalError(`refusing to program nftables object ${JSON.stringify(n)}: not a plain name`);
  return n;
}

export function safeIfName(n: string): string {
  if (!IFNAME.test(n)) throw new InternalError(`refusing to program interface ${JSON.stringify(n)}: not a ${WORKLOAD_PREFIX}… name`);
  return n;
}

/** An address or CIDR of the family, as nft element text. */
export function element(m: string, f: Family): string {
  const [ip, len, extra] = m.split('/');
  const ok = extra === undefined && isIP(ip) === f && (len === undefined || (/^\d{1,3}$/.test(len) && Number(len) <= (f === 4 ? 32 : 128)));
  if (!ok) throw new InternalError(`refusing to program ${JSON.stringify(m)}: not an IPv${f} address or CIDR`);
  return m;
}

export const groupChain = (id: string, f: Family) => `g${f}-${SAFE.test(id) && id.length <= 40 ? id : h(id, 16)}`;
export const profileChain = (name: string, dir: Dir, f: Family) => `pr${f}-${d(dir)}-${h(name, 16)}`;
export const tierKey = (dir: Dir, t: EndpointSpec['ingress']) => `${dir}|${t.group ?? ''}|${t.profile}`;
export const tierChain = (key: string) => `t-${key[0]}-${h(key, 16)}`;

const ports = (rs: readonly PortRange[]) => {
  const items = rs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`));
  return items.length === 1 ? items[0] : `{ ${items.join(', ')} }`;
};
/** Log prefixes come from policy names; keep them to characters that need no escaping. */
const safePrefix = (p: string) => p.replace(/[^A-Za-z0-9 ._:-]/g, '_').slice(0, 28);

function side(s: Side, f: Family, dir: 'saddr' | 'daddr', withPorts = true): string[] {
  const a = `${f === 4 ? 'ip' : 'ip6'} ${dir}`;
  const out: string[] = [];
  for (const set of s.sets) out.push(`${a} @${safeName(set)}`);
  for (const set of s.notSets) out.push(`${a} != @${safeName(set)}`);
  if (s.nets) out.push(`${a} @${safeName(s.nets)}`);
  if (s.notNets) out.push(`${a} != @${safeName(s.notNets)}`);
  const p = `th ${dir === 'saddr' ? 'sport' : 'dport'}`;
  if (withPorts && s.ports?.length) out.push(`${p} ${ports(s.ports)}`);
  if (s.notPorts?.length) out.push(`${p} != ${ports(s.notPorts)}`);
  return out;
}

const VERDICT: Record<RuleSpec['action'], (r: RuleSpec) => string> = {
  allow: () => 'accept',
  deny: () => 'drop',
  pass: () => 'return',
  log: (r) => `log prefix "${safePrefix(r.logPrefix)} "`,
};

/**
 * ICMP type and code, read from the transport header (`@th`: type is its first byte, code its
 * second), after the protocol match: one spelling for ICMP and ICMPv6, and a negated type and
 * code is one comparison of both bytes, which `icmp type != X icmp code != Y` would not be
 * (nft 1.0 lists it that way all the same; the kernel compares the two bytes as one).
 */
function icmp(r: RuleSpec): string[] {
  const out: string[] = [];
  const m = (x: NonNullable<RuleSpec['icmp']>, op: string) => (x.code === undefined ? `@th,0,8 ${op}${x.type}` : `@th,0,16 ${op}${x.type * 256 + x.code}`);
  if (r.icmp) out.push(m(r.icmp, ''));
  if (r.notICMP) out.push(m(r.notICMP, '!= '));
  return out;
}

function matches(r: RuleSpec, f: Family, dstPorts = true): string[] {
  return [
    ...(r.protocol === undefined ? [] : [`meta l4proto ${r.protocol}`]),
    ...(r.notProtocol === undefined ? [] : [`meta l4proto != ${r.notProtocol}`]),
    ...icmp(r),
    ...side(r.src, f, 'saddr'),
    ...side(r.dst, f, 'daddr', dstPorts),
  ];
}

export function ruleText(r: RuleSpec, f: Family): string {
  return [...matches(r, f), VERDICT[r.action](r)].join(' ');
}

const PORTED = new Set([6, 17, 132]);
/**
 * A rule that can only match packets of its protocol and destination ports. `pass` is left out:
 * its `return` would leave only the lookup's chain, not the group chain.
 */
const mergeable = (r: RuleSpec) => r.action !== 'pass' && r.protocol !== undefined && PORTED.has(r.protocol) && !!r.dst.ports?.length;

/**
 * One protocol's rules of a run as a port lookup: the port space cut at every range's ends;
 * each piece jumps to a chain of the rules (in order) covering it, with the protocol and
 * destination port left out of their matches. A piece's chain ends by falling back to the rule
 * after the lookup, as walking the run would. Pieces with the same rules share a chain.
 */
function portLookup(run: readonly RuleSpec[], f: Family, owner: string, chains: Chains, n: { k: number }): string {
  const cuts = new Set<number>();
  for (const r of run) for (const [a, b] of r.dst.ports!) cuts.add(a).add(b + 1);
  const edges = [...cuts].sort((x, y) => x - y);
  const byRules = new Map<string, string>();
  const pieces: Array<{ lo: number; hi: number; chain: string }> = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    const [lo, hi] = [edges[i], edges[i + 1] - 1];
    const covering = run.filter((r) => r.dst.ports!.some(([a, b]) => a <= lo && hi <= b));
    if (!covering.length) continue;
    // A terminal rule equal to one before it can never be reached; a log rule still logs.
    const rules: string[] = [];
    for (const r of covering) {
      const text = [...matches(r, f, false).slice(1), VERDICT[r.action](r)].join(' ');
      if (r.action === 'log' || !rules.includes(text)) rules.push(text);
    }
    const key = rules.join('\n');
    let chain = byRules.get(key);
    if (!chain) {
      chain = `${owner}-b${n.k++}`;
      byRules.set(key, chain);
      chains.set(chain, rules);
    }
    const prev = pieces[pieces.length - 1];
    if (prev && prev.chain === chain && prev.hi + 1 === lo) prev.hi = hi;
    else pieces.push({ lo, hi, chain });
  }
  const elems = pieces.map((x) => `${x.lo === x.hi ? x.lo : `${x.lo}-${x.hi}`} : jump ${x.chain}`);
  return `th dport vmap { ${elems.join(', ')} }`;
}

/** A run of mergeable rules: by protocol (each protocol's rules keep their order), then by port. */
function block(run: readonly RuleSpec[], f: Family, owner: string, chains: Chains, n: { k: number }): string {
  const protocols = [...new Set(run.map((r) => r.protocol!))];
  if (protocols.length === 1) return `meta l4proto ${protocols[0]} ${portLookup(run, f, owner, chains, n)}`;
  const jumps = protocols.map((p) => {
    const chain = `${owner}-q${n.k++}`;
    chains.set(chain, [
      portLookup(
        run.filter((r) => r.protocol === p),
        f,
        owner,
        chains,
        n,
      ),
    ]);
    return `${p} : jump ${chain}`;
  });
  return `meta l4proto vmap { ${jumps.join(', ')} }`;
}

/** A rule list as the rules of chain `owner` (plus its port-lookup chains), then `tail`. */
export function compileRules(owner: string, rules: readonly RuleSpec[], f: Family, tail: string[] = []): Chains {
  const chains: Chains = new Map([[owner, []]]);
  const main = chains.get(owner)!;
  const n = { k: 0 };
  for (let i = 0; i < rules.length;) {
    let j = i;
    while (j < rules.length && mergeable(rules[j])) j++;
    if (j - i >= MIN_BLOCK) {
      main.push(block(rules.slice(i, j), f, owner, chains, n));
      i = j;
    } else {
      main.push(ruleText(rules[i], f));
      i++;
    }
  }
  main.push(...tail);
  return chains;
}

/** A group per family: its policies' rules in order, then the default deny. */
export function compileGroup(g: GroupSpec, policies: ReadonlyMap<string, PolicySpec>, f: Family): Chains {
  const rules = g.policies.flatMap((name) => {
    const p = policies.get(name);
    if (!p) throw new InternalError(`policy group ${g.id} names policy ${name}, which the desired state does not hold`);
    return p[g.dir][f];
  });
  return compileRules(groupChain(g.id, f), rules, f, ['drop']);
}

export function compileProfile(p: ProfileSpec, dir: Dir, f: Family): Chains {
  return compileRules(profileChain(p.name, dir, f), p[dir][f], f);
}

/** Connections to a published port (ports/rules.ts DNAT): admitted after the policies, before the profile. */
export const PUBLISHED = 'ct status dnat accept';

/**
 * A tier: the group (returns only on `pass`), then on ingress published-port connections, the
 * profile (returns when nothing allowed), drop. So `-p` works whatever the network's profile
 * says, and a policy selecting the container still decides (its default deny included).
 */
export function compileTier(key: string): string[] {
  const [dir, group, profile] = key.split('|') as [Dir, string, string];
  const fam = (c: (f: Family) => string) => `meta nfproto vmap { ipv4 : jump ${c(4)}, ipv6 : jump ${c(6)} }`;
  return [...(group ? [fam((f) => groupChain(group, f))] : []), ...(dir === 'ingress' ? [PUBLISHED] : []), fam((f) => profileChain(profile, dir, f)), 'drop'];
}

/** An endpoint's elements: anti-spoofing pairs per family and its dispatch entries. */
export function endpointElements(e: EndpointSpec): { own: Record<Family, string[]>; from: string; to: string } {
  const i = `"${safeIfName(e.ifName)}"`;
  return {
    own: { 4: e.addrs[4].map((a) => `${i} . ${element(a, 4)}`), 6: e.addrs[6].map((a) => `${i} . ${element(a, 6)}`) },
    from: `${i} : goto ${tierChain(tierKey('egress', e.egress))}`,
    to: `${i} : goto ${tierChain(tierKey('ingress', e.ingress))}`,
  };
}

export const setDecl = (s: SetSpec) => `{ type ${s.family === 4 ? 'ipv4_addr' : 'ipv6_addr'};${s.kind === 'net' ? ' flags interval;' : ''} }`;

/** The fixed part: base chains, dispatch chains and the endpoint sets and maps (declarations). */
export function compileBase(endpointToHost: 'drop' | 'accept'): { decls: string[]; chains: Chains } {
  const ct = 'ct state vmap { established : accept, related : accept, invalid : drop }';
  const spoof = [`iifname . ip saddr != @${OWN[4]} drop`, `iifname . ip6 saddr != @${OWN[6]} drop`];
  return {
    decls: [
      `add set ${TABLE} ${OWN[4]} { type ifname . ipv4_addr; }`,
      `add set ${TABLE} ${OWN[6]} { type ifname . ipv6_addr; }`,
      `add map ${TABLE} ${FROM_MAP} { type ifname : verdict; }`,
      `add map ${TABLE} ${TO_MAP} { type ifname : verdict; }`,
      `add chain ${TABLE} ${EGRESS} { type filter hook forward priority filter - 20; policy accept; }`,
      `add chain ${TABLE} ${INGRESS} { type filter hook forward priority filter - 10; policy accept; }`,
      `add chain ${TABLE} ${INPUT} { type filter hook input priority filter - 10; policy accept; }`,
    ],
    chains: new Map([
      [EGRESS, [ct, `iifname ${WL} jump ${FROM_WL}`]],
      [INGRESS, [ct, `oifname ${WL} jump ${TO_WL}`]],
      [INPUT, [`iifname ${WL} jump ${TO_HOST}`]],
      [FROM_WL, [...spoof, `iifname vmap @${FROM_MAP}`, 'drop']],
      [TO_WL, [`oifname vmap @${TO_MAP}`, 'drop']],
      // Neighbour discovery with the host's link-local gateway comes before the source check.
      [TO_HOST, ['ct state established,related accept', 'icmpv6 type { 133, 135, 136 } accept', ...spoof, endpointToHost]],
    ]),
  };
}
