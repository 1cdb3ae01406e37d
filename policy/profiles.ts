/**
 * Profiles: one per Calico network name, kept in etcd (`profiles/<name>`) the way Calico keeps
 * its per-network profiles, so the same network name on every host is one profile. A profile
 * lets in traffic from endpoints of the same network and lets out everything (only the network
 * when it is `--internal`). Policy agents keep them in step with the networks they see: created
 * when a network name is first learned, removed when no host has a network of that name.
 */
import type { KV, KVEntry } from '../lib/datastore/kv';
import type { EndpointRecord, NetworkRecord } from '../lib/datastore/records';
import { NotFoundError } from '../lib/errors';
import type { Rule } from './model';
import { quote } from './selector';

export interface ProfileRecord {
  name: string;
  internal: boolean;
  ingress: Rule[];
  egress: Rule[];
}

export const profileKeys = {
  profile: (name: string) => `profiles/${name}`,
  profiles: () => 'profiles/',
};

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
  return (await kv.list(profileKeys.profiles())).map((e) => JSON.parse(e.value) as ProfileRecord);
}

export async function getProfile(kv: KV, name: string): Promise<ProfileRecord> {
  const e = await kv.get(profileKeys.profile(name));
  if (!e) throw new NotFoundError(`no profile ${name}; profiles are named after Docker networks, see "calico profile ls"`);
  return JSON.parse(e.value) as ProfileRecord;
}

/**
 * Writes missing profiles, fixes ones whose internal flag no longer matches, and removes those no
 * network is named for any more. Guarded by revision, so agents on several hosts doing the same
 * at once cannot undo each other; the loser sees the change on its next pass. Returns the count
 * of changes made.
 */
export async function syncProfiles(kv: KV, networks: NetworkRecord[], stored: KVEntry[]): Promise<number> {
  const wanted = wantedProfiles(networks);
  const have = new Map(stored.map((e) => [(JSON.parse(e.value) as ProfileRecord).name, e]));
  let changes = 0;
  for (const [name, p] of wanted) {
    const e = have.get(name);
    if (e && (JSON.parse(e.value) as ProfileRecord).internal === p.internal) continue;
    const guard = e ? { key: e.key, mod: e.mod } : { key: profileKeys.profile(name), absent: true as const };
    if (await kv.txn([guard], [{ put: profileKeys.profile(name), value: JSON.stringify(p) }])) changes++;
  }
  for (const [name, e] of have) {
    if (wanted.has(name)) continue;
    if (await kv.txn([{ key: e.key, mod: e.mod }], [{ del: e.key }])) changes++;
  }
  return changes;
}
