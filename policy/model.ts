/**
 * Policy resources (docs/policy.md's shape, Calico's simplified) and their validation. A file is
 * checked whole before anything is written, and every error names the field that is wrong.
 */
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { codecs } from '../lib/datastore/codec';
import type { KV } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { PolicyRecord } from '../lib/datastore/records';
import { BadRequestError, NotFoundError, errorMessage } from '../lib/errors';
import { parseCidr } from '../lib/ip';
import { parseSelector } from './selector';

const port = z.union([
  z.number().int().min(0).max(65535),
  z
    .string()
    .regex(/^\d{1,5}(:\d{1,5})?$/, 'must be a port number or a range like "8000:8080"')
    .refine((s) => s.split(':').every((p) => Number(p) <= 65535), 'ports go up to 65535')
    // iptables' multiport refuses a range that does not go up ("invalid portrange specified").
    .refine((s) => !s.includes(':') || Number(s.split(':')[0]) < Number(s.split(':')[1]), 'a range goes from a lower port to a higher one, like "8000:8080"'),
]);
// multiport takes 15 ports, a range counting as two.
const ports = z
  .array(port)
  .refine((ps) => ps.reduce<number>((n, p) => n + (String(p).includes(':') ? 2 : 1), 0) <= 15, 'at most 15 ports, a range counting as two');
const selector = z.string().superRefine((s, ctx) => {
  try {
    parseSelector(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `is not a valid selector: ${errorMessage(err)}` });
  }
});
const cidr = z.string().refine((s) => {
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
}, 'must be a CIDR like 10.0.0.0/8');

const entity = z
  .object({
    selector: selector.optional(),
    notSelector: selector.optional(),
    // Becomes a selector value, which can be quoted with ' or " but not hold both.
    network: z
      .string()
      .min(1)
      .refine((s) => !(s.includes("'") && s.includes('"')), 'cannot hold both \' and "')
      .optional(),
    nets: z.array(cidr).optional(),
    notNets: z.array(cidr).optional(),
    ports: ports.optional(),
    notPorts: ports.optional(),
  })
  .strict();

const protocol = z.union([z.enum(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp']), z.number().int().min(1).max(255)]);

// Calico's ranges: type 255 is reserved; a code only with a type.
const icmpMatch = z.object({ type: z.number().int().min(0).max(254), code: z.number().int().min(0).max(255).optional() }).strict();

const rule = z
  .object({
    action: z.enum(['allow', 'deny', 'log', 'pass']),
    protocol: protocol.optional(),
    notProtocol: protocol.optional(),
    icmp: icmpMatch.optional(),
    notICMP: icmpMatch.optional(),
    source: entity.optional(),
    destination: entity.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const hasPorts = [r.source, r.destination].some((e) => e?.ports || e?.notPorts);
    if (hasPorts && r.protocol !== 'tcp' && r.protocol !== 'udp' && r.protocol !== 'sctp') {
      ctx.addIssue({ code: 'custom', message: 'ports need protocol tcp, udp or sctp', path: ['protocol'] });
    }
    const icmpProto = r.protocol === 'icmp' || r.protocol === 'icmpv6' || r.protocol === 1 || r.protocol === 58;
    for (const f of ['icmp', 'notICMP'] as const)
      if (r[f] && !icmpProto) ctx.addIssue({ code: 'custom', message: `${f} needs protocol icmp or icmpv6`, path: ['protocol'] });
  });

export const PolicySchema = z
  .object({
    kind: z.literal('Policy'),
    name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and dashes'),
    order: z.number().finite().optional(),
    selector: selector.optional(),
    types: z
      .array(z.enum(['ingress', 'egress']))
      .min(1)
      .optional(),
    ingress: z.array(rule).optional(),
    egress: z.array(rule).optional(),
  })
  .strict();

export type PolicyInput = z.infer<typeof PolicySchema>;
export type Rule = z.infer<typeof rule>;
export type Entity = z.infer<typeof entity>;

export type { PolicyRecord };

/** Fills the defaults: order 1000, selector all(), types = those with rules (ingress if none). */
export function normalise(p: PolicyInput): PolicyRecord {
  const ingress = p.ingress ?? [];
  const egress = p.egress ?? [];
  const types =
    p.types ??
    (ingress.length || egress.length ? [...(ingress.length ? ['ingress' as const] : []), ...(egress.length ? ['egress' as const] : [])] : ['ingress' as const]);
  return { name: p.name, order: p.order ?? 1000, selector: p.selector ?? 'all()', types, ingress, egress };
}

/** Parses a YAML or JSON file holding one policy, a list, or several YAML documents. */
export function parsePolicyFile(text: string, file = 'policy file'): PolicyRecord[] {
  let docs: unknown[];
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) docs = [JSON.parse(trimmed) as unknown];
    else {
      const all = parseAllDocuments(text);
      const bad = all.find((d) => d.errors.length);
      if (bad) throw new Error(bad.errors[0].message);
      docs = all.map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
    }
  } catch (err) {
    throw new BadRequestError(`${file} is neither valid YAML nor JSON: ${(err as Error).message}`);
  }
  const items = docs.flatMap((d): unknown[] => (Array.isArray(d) ? (d as unknown[]) : [d]));
  if (items.length === 0) throw new BadRequestError(`${file} holds no policy`);
  // One etcd transaction carries the whole file (etcd's default limit is 128 operations).
  if (items.length > 128) throw new BadRequestError(`${file} holds ${items.length} policies; apply at most 128 per file`);
  const out: PolicyRecord[] = [];
  items.forEach((item, i) => {
    const r = PolicySchema.safeParse(item);
    if (!r.success) {
      const issue = r.error.issues[0];
      const name = (item as { name?: unknown })?.name;
      const where = [`${items.length > 1 ? `item ${i + 1}` : 'the policy'}${typeof name === 'string' ? ` (${name})` : ''}`, issue.path.join('.')]
        .filter(Boolean)
        .join(', field ');
      throw new BadRequestError(`${file}: ${where}: ${issue.message}`);
    }
    out.push(normalise(r.data));
  });
  const names = out.map((p) => p.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new BadRequestError(`${file}: policy ${dup} appears twice`);
  return out;
}

export async function applyPolicies(kv: KV, policies: PolicyRecord[]): Promise<void> {
  // One transaction: a file is applied whole or not at all.
  const ok = await kv.txn(
    [],
    policies.map((p) => ({ put: keys.policy(p.name), value: codecs.policy.encode(p) })),
  );
  if (!ok) throw new BadRequestError('the policies could not be written; try again');
}

export async function listPolicies(kv: KV): Promise<PolicyRecord[]> {
  return codecs.policy.decodeAll(await kv.list(keys.policies())).sort((a, b) => a.order - b.order || a.name.localeCompare(b.name));
}

export async function getPolicy(kv: KV, name: string): Promise<PolicyRecord> {
  const e = await kv.get(keys.policy(name));
  if (!e) throw new NotFoundError(`no policy ${name}; see "calico policy ls"`);
  return codecs.policy.decode(e);
}

export async function removePolicy(kv: KV, name: string): Promise<void> {
  await getPolicy(kv, name);
  await kv.del(keys.policy(name));
}
