/** BGP configuration kept in etcd: global settings, extra peers, and what each host announces. */
import type { KV } from '../lib/datastore/kv';
import { BadRequestError, NotFoundError } from '../lib/errors';
import { parseIP, formatIP } from '../lib/ip';

export const DEFAULT_ASN = 64512;

export interface BgpSettings {
  /** AS of hosts that set none (CALICO_AS unset). */
  asn: number;
  /** Every host peers with every other; off when route reflectors or top-of-rack routers peer instead. */
  nodeMesh: boolean;
}

export interface PeerRecord {
  name: string;
  ip: string;
  asn: number;
  /** Only this host peers with it; absent: every host does. */
  host?: string;
}

export const bgpKeys = {
  settings: () => 'config/bgp',
  peer: (name: string) => `bgppeers/${name}`,
  peers: () => 'bgppeers/',
};

export function validAsn(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 4294967295;
}

export async function getSettings(kv: KV): Promise<BgpSettings> {
  const e = await kv.get(bgpKeys.settings());
  return { asn: DEFAULT_ASN, nodeMesh: true, ...(e ? (JSON.parse(e.value) as Partial<BgpSettings>) : {}) };
}

export async function setSettings(kv: KV, patch: Partial<BgpSettings>): Promise<BgpSettings> {
  if (patch.asn !== undefined && !validAsn(patch.asn)) throw new BadRequestError(`AS number ${patch.asn} is out of range: use 1 to 4294967295`);
  const next = { ...(await getSettings(kv)), ...patch };
  await kv.put(bgpKeys.settings(), JSON.stringify(next));
  return next;
}

export async function listPeers(kv: KV): Promise<PeerRecord[]> {
  return (await kv.list(bgpKeys.peers())).map((e) => JSON.parse(e.value) as PeerRecord);
}

export async function addPeer(kv: KV, p: PeerRecord): Promise<PeerRecord> {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(p.name))
    throw new BadRequestError(`peer name "${p.name}" must be a DNS label: lower-case letters, digits and dashes`);
  const ip = parseIP(p.ip, 'peer address');
  if (!validAsn(p.asn)) throw new BadRequestError(`peer AS ${p.asn} is out of range: use 1 to 4294967295`);
  const rec: PeerRecord = { name: p.name, ip: formatIP(ip), asn: p.asn, ...(p.host ? { host: p.host } : {}) };
  await kv.put(bgpKeys.peer(rec.name), JSON.stringify(rec));
  return rec;
}

export async function removePeer(kv: KV, name: string): Promise<void> {
  if (!(await kv.get(bgpKeys.peer(name)))) throw new NotFoundError(`no BGP peer named ${name}; see "calico bgp peer ls"`);
  await kv.del(bgpKeys.peer(name));
}
