/** BGP configuration kept in etcd: global settings, extra peers, and what each host announces. */
import { codecs } from '../lib/datastore/codec';
import type { KV } from '../lib/datastore/kv';
import { keys } from '../lib/datastore/keys';
import type { BgpSettings, PeerRecord } from '../lib/datastore/records';
import { BadRequestError, NotFoundError } from '../lib/errors';
import { parseIP, formatIP } from '../lib/ip';
import { ASN_RANGE, validAsn } from '../lib/limits';

export type { BgpSettings, PeerRecord };
export { validAsn };

export const DEFAULT_ASN = 64512;

export async function getSettings(kv: KV): Promise<BgpSettings> {
  const e = await kv.get(keys.bgpSettings());
  return { asn: DEFAULT_ASN, nodeMesh: true, ...(e ? codecs.bgpSettings.decode(e) : {}) };
}

export async function setSettings(kv: KV, patch: Partial<BgpSettings>): Promise<BgpSettings> {
  if (patch.asn !== undefined && !validAsn(patch.asn)) throw new BadRequestError(`AS number ${patch.asn} is out of range: use ${ASN_RANGE}`);
  const next = { ...(await getSettings(kv)), ...patch };
  await kv.put(keys.bgpSettings(), codecs.bgpSettings.encode(next));
  return next;
}

export async function listPeers(kv: KV): Promise<PeerRecord[]> {
  return codecs.peer.decodeAll(await kv.list(keys.peers()));
}

export async function addPeer(kv: KV, p: PeerRecord): Promise<PeerRecord> {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(p.name))
    throw new BadRequestError(`peer name "${p.name}" must be a DNS label: lower-case letters, digits and dashes`);
  const ip = parseIP(p.ip, 'peer address');
  if (!validAsn(p.asn)) throw new BadRequestError(`peer AS ${p.asn} is out of range: use ${ASN_RANGE}`);
  const rec: PeerRecord = { name: p.name, ip: formatIP(ip), asn: p.asn, ...(p.host ? { host: p.host } : {}) };
  await kv.put(keys.peer(rec.name), codecs.peer.encode(rec));
  return rec;
}

export async function removePeer(kv: KV, name: string): Promise<void> {
  if (!(await kv.get(keys.peer(name)))) throw new NotFoundError(`no BGP peer named ${name}; see "calico bgp peer ls"`);
  await kv.del(keys.peer(name));
}
