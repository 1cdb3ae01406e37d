/**
 * The Delta between two desired states, computed by comparing them whole. The policy calculator
 * produces deltas incrementally without this; it serves where only states are at hand (a
 * backend's tests, a resync that rebuilt the state) and as the reference the calculator's
 * deltas are checked against.
 */
import { type Delta, type Desired, type SetSpec, emptyDelta } from './desired';

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function changes<T>(prev: ReadonlyMap<string, T>, next: ReadonlyMap<string, T>): { upsert: T[]; remove: string[] } {
  const upsert: T[] = [];
  for (const [k, v] of next) if (!prev.has(k) || !same(prev.get(k), v)) upsert.push(v);
  return { upsert, remove: [...prev.keys()].filter((k) => !next.has(k)) };
}

export function diffDesired(prev: Desired, next: Desired): Delta {
  const d = emptyDelta();
  for (const [name, s] of next.sets) {
    const old = prev.sets.get(name);
    if (!old) d.sets.upsert.push(s);
    else {
      const add = [...s.members].filter((m) => !old.members.has(m));
      const del = [...old.members].filter((m) => !s.members.has(m));
      if (add.length || del.length) d.sets.members.push({ name, add, del });
    }
  }
  d.sets.remove = [...prev.sets.keys()].filter((k) => !next.sets.has(k));
  d.policies = changes(prev.policies, next.policies);
  d.profiles = changes(prev.profiles, next.profiles);
  d.groups = changes(prev.groups, next.groups);
  d.endpoints = changes(prev.endpoints, next.endpoints);
  return d;
}

/** A desired state as plain JSON (sets' members and the maps as arrays), and back. */
export function desiredToJSON(d: Desired): unknown {
  return {
    endpointToHost: d.endpointToHost,
    sets: [...d.sets.values()].map((s) => ({ ...s, members: [...s.members] })),
    policies: [...d.policies.values()],
    profiles: [...d.profiles.values()],
    groups: [...d.groups.values()],
    endpoints: [...d.endpoints.values()],
  };
}

export function desiredFromJSON(j: unknown): Desired {
  const o = j as {
    endpointToHost: 'drop' | 'accept';
    sets: Array<Omit<SetSpec, 'members'> & { members: string[] }>;
    policies: Desired['policies'] extends ReadonlyMap<string, infer T> ? T[] : never;
    profiles: Desired['profiles'] extends ReadonlyMap<string, infer T> ? T[] : never;
    groups: Desired['groups'] extends ReadonlyMap<string, infer T> ? T[] : never;
    endpoints: Desired['endpoints'] extends ReadonlyMap<string, infer T> ? T[] : never;
  };
  return {
    endpointToHost: o.endpointToHost,
    sets: new Map(o.sets.map((s) => [s.name, { ...s, members: new Set(s.members) }])),
    policies: new Map(o.policies.map((p) => [p.name, p])),
    profiles: new Map(o.profiles.map((p) => [p.name, p])),
    groups: new Map(o.groups.map((g) => [g.id, g])),
    endpoints: new Map(o.endpoints.map((e) => [e.ifName, e])),
  };
}

export function deltaToJSON(d: Delta): unknown {
  return { ...d, sets: { ...d.sets, upsert: d.sets.upsert.map((s) => ({ ...s, members: [...s.members] })) } };
}

export function deltaFromJSON(j: unknown): Delta {
  const d = j as Delta & { sets: { upsert: Array<Omit<SetSpec, 'members'> & { members: string[] }> } };
  return { ...d, sets: { ...d.sets, upsert: d.sets.upsert.map((s) => ({ ...s, members: new Set(s.members) })) } };
}
