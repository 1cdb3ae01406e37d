/** Small builders of desired-state objects (firewall/desired.ts) for the backends' kernel tests. */
import type { FamilyRules, RuleSpec, SetSpec } from '../../firewall/desired';

export const none = { sets: [], notSets: [] };
export const rule = (r: Partial<RuleSpec>): RuleSpec => ({ action: 'allow', src: none, dst: none, logPrefix: 'calico p', ...r });
/** A rule list per family: each family keeps the rules whose sets are all of that family. */
const refs = (r: RuleSpec) => [...r.src.sets, ...r.dst.sets, r.src.nets, r.dst.nets, r.src.notNets, r.dst.notNets].filter(Boolean) as string[];
export const both = (rs: RuleSpec[]): FamilyRules => ({
  4: rs.filter((r) => refs(r).every((n) => n.startsWith('cal4'))),
  6: rs.filter((r) => refs(r).every((n) => n.startsWith('cal6'))),
});
/** A set whose family follows its name (`cal4…` / `cal6…`). */
export const set = (name: string, members: string[], kind: SetSpec['kind'] = 'addr'): SetSpec => ({
  name,
  family: name.startsWith('cal4') ? 4 : 6,
  kind,
  members: new Set(members),
});
