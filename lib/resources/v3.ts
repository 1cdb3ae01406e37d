/**
 * Calico's `projectcalico.org/v3` resources (IPPool, BGPConfiguration, BGPPeer,
 * GlobalNetworkPolicy, GlobalNetworkSet) read from a manifest and mapped onto the records the rest of the project
 * already keeps, and back for `calico get`. Schemas are strict: a field Calico has and we do not
 * is refused by name, never dropped, because a dropped field would change what the manifest means.
 */
import { z } from 'zod';
import type { BgpSettings, NetworkSetRecord, PeerRecord, PolicyRecord, PoolRecord, RuleEntity, RuleRecord } from '../datastore/records';
import { EncapModeSchema } from '../datastore/records';
import { type PoolSettings, checkSettings, settingsOf } from '../../ipam/pool-settings';
import { BadRequestError } from '../errors';
import { formatCidr, formatIP, isIP, parseCidr, parseIP } from '../ip';
import { ASN_RANGE, validAsn } from '../limits';
import { PolicySchema, normalise } from '../../policy/model';
import { NETWORK_LABEL } from '../../policy/profiles';
import { quote } from '../../policy/selector';

export const API_VERSION = 'projectcalico.org/v3';
const dnsName = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and dashes');
const metadata = z
  .object({ name: dnsName, labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() })
  .strict();
const asNumber = z.number().int().refine(validAsn, `must be an AS number, ${ASN_RANGE}`);

/** The IPPool fields Calico has that only some values of are supported, and why. */
export const POOL_FIELD_SUPPORT: Record<string, { accepts: readonly unknown[]; why: string }> = {
  nodeSelector: { accepts: ['all()'], why: 'pools for some nodes only are not supported yet; every host uses every pool, so use all() or leave it out' },
};
const poolOption = (field: string) => z.unknown().refine((v) => POOL_FIELD_SUPPORT[field].accepts.includes(v), POOL_FIELD_SUPPORT[field].why);

const IPPoolSpec = z
  .object({
    cidr: z.string(),
    blockSize: z.number().int().optional(),
    disabled: z.boolean().optional(),
    natOutgoing: z.boolean().optional(),
    vxlanMode: EncapModeSchema.optional(),
    ipipMode: EncapModeSchema.optional(),
    ...Object.fromEntries(Object.keys(POOL_FIELD_SUPPORT).map((f) => [f, poolOption(f).optional()])),
  })
  .strict();

const BGPConfigurationSpec = z
  .object({
    asNumber: asNumber.optional(),
    nodeToNodeMeshEnabled: z.boolean().optional(),
    // BIRD's log level follows the node's; Info is what it logs today.
    logSeverityScreen: z.literal('Info', { message: "only Info is supported: BIRD logs at the node's level" }).optional(),
  })
  .strict();

const BGPPeerSpec = z.object({ peerIP: z.string(), asNumber, node: z.string().min(1).optional() }).strict();

const port = z.union([z.number(), z.string()]);
const v3Entity = z
  .object({
    selector: z.string().optional(),
    notSelector: z.string().optional(),
    nets: z.array(z.string()).optional(),
    notNets: z.array(z.string()).optional(),
    ports: z.array(port).optional(),
    notPorts: z.array(port).optional(),
    namespaceSelector: z
      .unknown()
      .refine(() => false, 'namespaces are a Kubernetes notion with no Docker counterpart; select endpoints by their labels instead')
      .optional(),
    serviceAccounts: z
      .unknown()
      .refine(() => false, 'service accounts are a Kubernetes notion with no Docker counterpart')
      .optional(),
    services: z
      .unknown()
      .refine(() => false, 'services are a Kubernetes notion with no Docker counterpart')
      .optional(),
  })
  .strict();
const notYet = (what: string) =>
  z
    .unknown()
    .refine(() => false, `${what} is not supported yet`)
    .optional();
const v3Protocol = z.union([z.enum(['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP']), z.number()]);
const v3Icmp = z.object({ type: z.number().optional(), code: z.number().optional() }).strict();
const v3Rule = z
  .object({
    action: z.enum(['Allow', 'Deny', 'Log', 'Pass']),
    protocol: v3Protocol.optional(),
    notProtocol: v3Protocol.optional(),
    icmp: v3Icmp.optional(),
    notICMP: v3Icmp.optional(),
    source: v3Entity.optional(),
    destination: v3Entity.optional(),
    ipVersion: notYet('ipVersion (a rule matches both families by its nets)'),
    http: notYet('HTTP matching'),
    metadata: z
      .object({ annotations: z.record(z.string(), z.string()).optional() })
      .strict()
      .optional(),
  })
  .strict();
const GlobalNetworkPolicySpec = z
  .object({
    order: z.number().optional(),
    selector: z.string().optional(),
    types: z.array(z.enum(['Ingress', 'Egress'])).optional(),
    ingress: z.array(v3Rule).optional(),
    egress: z.array(v3Rule).optional(),
    tier: z.literal('default', { message: 'tiers are not supported: every policy is in the default tier' }).optional(),
    doNotTrack: notYet('doNotTrack'),
    preDNAT: notYet('preDNAT'),
    applyOnForward: notYet('applyOnForward'),
    namespaceSelector: notYet('namespaceSelector (namespaces are a Kubernetes notion)'),
    serviceAccountSelector: notYet('serviceAccountSelector (service accounts are a Kubernetes notion)'),
  })
  .strict();

const GlobalNetworkSetSpec = z
  .object({
    nets: z.array(z.string()).optional(),
    allowedEgressDomains: notYet('allowedEgressDomains (matching by DNS name)'),
  })
  .strict();

const envelope = <K extends string, S extends z.ZodType>(kind: K, spec: S) =>
  z.object({ apiVersion: z.literal(API_VERSION, { message: `must be ${API_VERSION}` }), kind: z.literal(kind), metadata, spec }).strict();
const SCHEMAS = {
  IPPool: envelope('IPPool', IPPoolSpec),
  BGPConfiguration: envelope('BGPConfiguration', BGPConfigurationSpec),
  BGPPeer: envelope('BGPPeer', BGPPeerSpec),
  GlobalNetworkPolicy: envelope('GlobalNetworkPolicy', GlobalNetworkPolicySpec),
  GlobalNetworkSet: envelope('GlobalNetworkSet', GlobalNetworkSetSpec),
};

export interface PoolSpec extends PoolSettings {
  cidr: string;
  blockSize?: number;
  disabled: boolean;
  name: string;
}
/** One manifest item, mapped onto the record it writes. */
export type Resource =
  | { kind: 'IPPool'; name: string; pool: PoolSpec }
  | { kind: 'BGPConfiguration'; name: 'default'; settings: Partial<BgpSettings> }
  | { kind: 'BGPPeer'; name: string; peer: PeerRecord }
  | { kind: 'GlobalNetworkPolicy'; name: string; policy: PolicyRecord }
  | { kind: 'GlobalNetworkSet'; name: string; set: NetworkSetRecord };

type Fail = (path: Array<string | number>, message: string) => never;

function mapEntity(e: z.infer<typeof v3Entity>): Record<string, unknown> {
  const { selector, notSelector, nets, notNets, ports, notPorts } = e;
  return Object.fromEntries(Object.entries({ selector, notSelector, nets, notNets, ports, notPorts }).filter(([, v]) => v !== undefined));
}

/** Calico's icmp matches: a code only with a type; an empty one matches every type, so it is left out. */
function icmpOf(m: z.infer<typeof v3Icmp>, path: Array<string | number>, fail: Fail): { type: number; code?: number } {
  if (m.type === undefined) {
    if (m.code !== undefined) fail([...path, 'code'], 'a code needs a type');
    return fail(path, 'give the ICMP type to match, like {type: 8} for echo requests');
  }
  return m.code === undefined ? { type: m.type } : { type: m.type, code: m.code };
}

/** A GlobalNetworkSet's nets: CIDRs or single addresses (Calico reads those as /32 or /128), canonical. */
function mapNetworkSet(name: string, labels: Record<string, string>, spec: z.infer<typeof GlobalNetworkSetSpec>, fail: Fail): NetworkSetRecord {
  const nets = (spec.nets ?? []).map((n, i) => {
    try {
      return formatCidr(parseCidr(isIP(n) ? `${n}/${n.includes(':') ? 128 : 32}` : n, 'net'));
    } catch (err) {
      return fail(['spec', 'nets', i], (err as Error).message);
    }
  });
  for (const [k, v] of Object.entries(labels)) {
    // Labels are matched by selectors, whose values cannot hold both quotes.
    if (!/^[A-Za-z0-9_./-]+$/.test(k)) fail(['metadata', 'labels', k], 'a label key is letters, digits and _ . / -');
    if (v.includes("'") && v.includes('"')) fail(['metadata', 'labels', k], 'a label value cannot hold both \' and "');
  }
  return { name, labels, nets: [...new Set(nets)] };
}

function mapPolicy(name: string, spec: z.infer<typeof GlobalNetworkPolicySpec>, fail: Fail): PolicyRecord {
  const proto = (p: z.infer<typeof v3Protocol>) => (typeof p === 'string' ? p.toLowerCase() : p);
  const rule = (r: z.infer<typeof v3Rule>, i: number, dir: 'ingress' | 'egress') => ({
    action: r.action.toLowerCase(),
    ...(r.protocol !== undefined ? { protocol: proto(r.protocol) } : {}),
    ...(r.notProtocol !== undefined ? { notProtocol: proto(r.notProtocol) } : {}),
    ...(r.icmp ? { icmp: icmpOf(r.icmp, ['spec', dir, i, 'icmp'], fail) } : {}),
    ...(r.notICMP ? { notICMP: icmpOf(r.notICMP, ['spec', dir, i, 'notICMP'], fail) } : {}),
    ...(r.source ? { source: mapEntity(r.source) } : {}),
    ...(r.destination ? { destination: mapEntity(r.destination) } : {}),
  });
  const short = {
    kind: 'Policy',
    name,
    ...(spec.order !== undefined ? { order: spec.order } : {}),
    ...(spec.selector !== undefined ? { selector: spec.selector } : {}),
    // Calico's default differs from the short shape's: Ingress always, Egress when there are egress rules.
    types: spec.types ? spec.types.map((t) => t.toLowerCase()) : ['ingress', ...(spec.egress?.length ? ['egress'] : [])],
    ...(spec.ingress ? { ingress: spec.ingress.map((r, i) => rule(r, i, 'ingress')) } : {}),
    ...(spec.egress ? { egress: spec.egress.map((r, i) => rule(r, i, 'egress')) } : {}),
  };
  // The short shape's checks (selectors parse, port limits, ports need a protocol) are the
  // ones `calico policy apply` makes; its paths are the spec's paths.
  const r = PolicySchema.safeParse(short);
  if (!r.success) fail(['spec', ...(r.error.issues[0].path as Array<string | number>)], r.error.issues[0].message);
  return normalise(r.data);
}

/** Checks and maps one v3 item; `fail` throws with the item named. */
export function mapResource(item: unknown, fail: Fail): Resource {
  const o = (item ?? {}) as { kind?: unknown; apiVersion?: unknown };
  const kind = o.kind;
  if (kind === 'Profile') fail(['kind'], 'profiles are kept by calico node, one per network; read them with "calico get profile"');
  if (kind === 'NetworkPolicy' || kind === 'NetworkSet' || kind === 'HostEndpoint')
    fail(['kind'], `${kind} is not supported yet; supported kinds: ${Object.keys(SCHEMAS).join(', ')} and Policy`);
  if (typeof kind !== 'string' || !(kind in SCHEMAS))
    fail(['kind'], `unknown kind ${JSON.stringify(kind)}; supported kinds: ${Object.keys(SCHEMAS).join(', ')} and Policy`);
  const r = SCHEMAS[kind as keyof typeof SCHEMAS].safeParse(item);
  if (!r.success) {
    const issue = r.error.issues[0];
    const msg =
      issue.code === 'unrecognized_keys'
        ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}: Calico's field is not supported here`
        : issue.message;
    fail(issue.path as Array<string | number>, msg);
  }
  const d = r.data;
  const name = d.metadata.name;
  switch (d.kind) {
    case 'IPPool': {
      const spec = d.spec;
      let cidr: string;
      let net;
      try {
        net = parseCidr(spec.cidr, 'pool CIDR', true);
        cidr = formatCidr(net);
      } catch (err) {
        return fail(['spec', 'cidr'], (err as Error).message);
      }
      // Calico's apply replaces the whole spec: a field left out takes its default.
      const settings = settingsOf(spec);
      try {
        checkSettings(net.family, settings, { vxlanMode: 'spec.vxlanMode', ipipMode: 'spec.ipipMode' });
      } catch (err) {
        return fail(['spec', settings.ipipMode !== 'Never' ? 'ipipMode' : 'vxlanMode'], (err as Error).message);
      }
      return {
        kind: 'IPPool',
        name,
        pool: { name, cidr, disabled: spec.disabled ?? false, ...settings, ...(spec.blockSize !== undefined ? { blockSize: spec.blockSize } : {}) },
      };
    }
    case 'BGPConfiguration': {
      // Calico's per-node BGPConfigurations ("node.<name>") have no counterpart: settings are global.
      if (name !== 'default') fail(['metadata', 'name'], 'only the global BGPConfiguration "default" is supported');
      const spec = d.spec;
      const settings: Partial<BgpSettings> = {
        ...(spec.asNumber !== undefined ? { asn: spec.asNumber } : {}),
        ...(spec.nodeToNodeMeshEnabled !== undefined ? { nodeMesh: spec.nodeToNodeMeshEnabled } : {}),
      };
      return { kind: 'BGPConfiguration', name: 'default', settings };
    }
    case 'BGPPeer': {
      const spec = d.spec;
      let ip: string;
      try {
        ip = formatIP(parseIP(spec.peerIP, 'peer address'));
      } catch (err) {
        return fail(['spec', 'peerIP'], (err as Error).message);
      }
      return { kind: 'BGPPeer', name, peer: { name, ip, asn: spec.asNumber, ...(spec.node ? { host: spec.node } : {}) } };
    }
    case 'GlobalNetworkPolicy':
      return { kind: 'GlobalNetworkPolicy', name, policy: mapPolicy(name, d.spec, fail) };
    case 'GlobalNetworkSet':
      return { kind: 'GlobalNetworkSet', name, set: mapNetworkSet(name, d.metadata.labels ?? {}, d.spec, fail) };
  }
  return fail(['kind'], 'unreachable');
}

const meta = (name: string) => ({ name });
const v3 = (kind: string, name: string, spec: Record<string, unknown>) => ({ apiVersion: API_VERSION, kind, metadata: meta(name), spec });

export function poolToV3(p: PoolRecord) {
  const s = settingsOf(p);
  return v3('IPPool', p.name ?? poolName(p.cidr), {
    cidr: p.cidr,
    blockSize: p.blockSize,
    disabled: p.disabled,
    natOutgoing: s.natOutgoing,
    ipipMode: s.ipipMode,
    vxlanMode: s.vxlanMode,
    nodeSelector: 'all()',
  });
}
/** A pool made by `calico pool add` has no name: its CIDR spelt as a DNS label stands in. */
export const poolName = (cidr: string) =>
  cidr
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');

export const bgpConfigToV3 = (s: BgpSettings) =>
  v3('BGPConfiguration', 'default', { asNumber: s.asn, nodeToNodeMeshEnabled: s.nodeMesh, logSeverityScreen: 'Info' });
export const peerToV3 = (p: PeerRecord) => v3('BGPPeer', p.name, { peerIP: p.ip, asNumber: p.asn, ...(p.host ? { node: p.host } : {}) });

const cap = (s: string) => s[0].toUpperCase() + s.slice(1);
const PROTO: Record<string, string> = { tcp: 'TCP', udp: 'UDP', icmp: 'ICMP', icmpv6: 'ICMPv6', sctp: 'SCTP' };
function ruleToV3(r: RuleRecord): Record<string, unknown> {
  const entity = (e: RuleEntity) => {
    // `network:` is the short shape's sugar for a selector on the network label; v3 has no such field.
    const { network, ...rest } = e;
    const sel = network !== undefined ? `${NETWORK_LABEL} == ${quote(network)}` : undefined;
    return { ...rest, ...(sel ? { selector: rest.selector ? `(${rest.selector}) && ${sel}` : sel } : {}) };
  };
  return {
    action: cap(r.action),
    ...(r.protocol !== undefined ? { protocol: typeof r.protocol === 'string' ? PROTO[r.protocol] : r.protocol } : {}),
    ...(r.notProtocol !== undefined ? { notProtocol: typeof r.notProtocol === 'string' ? PROTO[r.notProtocol] : r.notProtocol } : {}),
    ...(r.icmp ? { icmp: r.icmp } : {}),
    ...(r.notICMP ? { notICMP: r.notICMP } : {}),
    ...(r.source ? { source: entity(r.source) } : {}),
    ...(r.destination ? { destination: entity(r.destination) } : {}),
  };
}
export function policyToV3(p: PolicyRecord) {
  return v3('GlobalNetworkPolicy', p.name, {
    order: p.order,
    selector: p.selector,
    types: p.types.map(cap),
    ...(p.ingress.length ? { ingress: p.ingress.map(ruleToV3) } : {}),
    ...(p.egress.length ? { egress: p.egress.map(ruleToV3) } : {}),
  });
}

export const networkSetToV3 = (n: NetworkSetRecord) => ({
  apiVersion: API_VERSION,
  kind: 'GlobalNetworkSet',
  metadata: { name: n.name, ...(Object.keys(n.labels).length ? { labels: n.labels } : {}) },
  spec: { nets: n.nets },
});

export function badItem(file: string, count: number, i: number, item: unknown): Fail {
  return (path, message) => {
    const m = (item as { metadata?: { name?: unknown }; kind?: unknown; name?: unknown }) ?? {};
    const name = typeof m.metadata?.name === 'string' ? m.metadata.name : typeof m.name === 'string' ? m.name : undefined;
    const kind = typeof m.kind === 'string' ? `${m.kind} ` : '';
    const what = `${count > 1 ? `item ${i + 1}` : 'the resource'}${name ? ` (${kind}${name})` : ''}`;
    throw new BadRequestError(`${file}: ${what}${path.length ? `, field ${path.join('.')}` : ''}: ${message}`);
  };
}
