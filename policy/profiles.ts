/**
 * Profiles: one per Calico network name, kept in etcd (`profiles/<name>`) the way Calico keeps
 * its per-network profiles, so the same network name on every host is one profile. A profile
 * lets in traffic from endpoints of the same network and lets out everything (only the network
 * when it is `--internal`). Policy agents keep them in step with the networks they see: created
 * when a network name is first learned, removed when no host has a network of that name.
 */
import { codecs } from '../lib/datastore/codec';
import type { KV, KVEntry } from '../lib/datastore/kv';
import { keyName, keys } from '../lib/datastore/keys';
import type { EndpointRecord, NetworkRecord, ProfileRecord } from '../lib/datastore/records';
import { NotFoundError } from '../lib/errors';
import { quote } from './selector';

export type { ProfileRecord };

export const NETWORK_LABEL = 'calico/network';

/** The profile Calico gives a network: same-network traffic in; out anywhere, or only the network if internal. */
export function defaultProfile(name: string, internal: boolean): ProfileRecord {
  const same = { selector: `${NETWORK_LABEL} == ${quote(name)}` };
  return { name, internal, ingress: [{ action: 'allow', source: same }], egress: [internal ? { action: 'allow', destination: same } : { action: 'allow' }] };
}

/** The network name an endpoint's profile and `calico/network` label use (its ID until learned). */
export function networkName(ep: EndpointRecord, networks: Map<string, NetworkRecord>): string {
  return networks.get(`${ep.host}/${ep.network}`)?.name ?? ep.network;
}

/** The profiles every named network calls for: internal if the network is internal on any host. */
export function wantedProfiles(networks: NetworkRecord[]): Map<string, ProfileRecord> {
  const internal = new Map<string, boolean>();
  for (const n of networks) if (n.name) internal.set(n.name, (internal.get(n.name) ?? false) || !!n.internal);
  return new Map([...internal].map(([name, int]) => [name, defaultProfile(name, int)]));
}

export async function listProfiles(kv: KV): Promise<ProfileRecord[]> {
  return codecs.profile.decodeAll(await kv.list(keys.profiles()));
}

export async function getProfile(kv: KV, name: string): Promise<ProfileRecord> {
  const e = await kv.get(keys.profile(name));
  if (!e) throw new NotFoundError(`no profile ${name}; profiles are named after Docker networks, see "calico profile ls"`);
  return codecs.profile.decode(e);
}

/**
 * Writes missing profiles, fixes ones whose internal flag no longer matches, and removes those no
 * network is named for any more. Guarded by revision, so agents on several hosts doing the same
 * at once cannot undo each other; the loser sees the change on its next pass. Returns the count
 * of changes made.
 */
export async function syncProfiles(kv: KV, networks: NetworkRecord[], stored: KVEntry[]): Promise<number> {
  const wanted = wantedProfiles(networks);
  const have = new Map(stored.map((e) => [keyName(e.key, keys.profiles()), e]));
  const internal = (e: KVEntry) => {
    try {
      return codecs.profile.decode(e).internal;
    } catch {
      return undefined; // unreadable: rewritten below
    }
  };
  let changes = 0;
  for (const [name, p] of wanted) {
    const e = have.get(name);
    if (e && internal(e) === p.internal) continue;
    const guard = e ? { key: e.key, mod: e.mod } : { key: keys.profile(name), absent: true as const };
    if (await kv.txn([guard], [{ put: keys.profile(name), value: codecs.profile.encode(p) }])) changes++;
  }
  for (const [name, e] of have) {
    if (wanted.has(name)) continue;
    if (await kv.txn([{ key: e.key, mod: e.mod }], [{ del: e.key }])) changes++;
  }
  return changes;
}
