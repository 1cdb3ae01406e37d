/** Owners for tests: the union's fields by kind, and the endpoint or network an owner names. */
import type { Owner } from '../../lib/datastore/records';

export interface OwnerFields {
  host?: string;
  pool?: string;
  handle?: string;
  since?: string;
  network?: string;
  endpoint?: string;
}

/** An owner of `kind`; `network`/`endpoint` are used where the kind has them. */
export function makeOwner(kind: Owner['kind'], f: OwnerFields = {}): Owner {
  const base = { host: f.host ?? 'h1', pool: f.pool ?? 'CalicoPoolIPv4', handle: f.handle ?? 'x', since: f.since ?? new Date().toISOString() };
  if (kind === 'endpoint') return { kind, ...base, network: f.network ?? 'n1', endpoint: f.endpoint ?? 'ep1' };
  if (kind === 'aux') return { kind, ...base, network: f.network ?? 'n1' };
  return { kind, ...base };
}

export const endpointOf = (o: Owner | undefined): string | undefined => (o?.kind === 'endpoint' ? o.endpoint : undefined);
export const networkOf = (o: Owner | undefined): string | undefined => (o && o.kind !== 'pending' ? o.network : undefined);
