/**
 * A manifest file as calicoctl reads one: YAML (one or several documents) or JSON, each item a
 * resource, a `kind: List` of them, or an array. Checked whole before anything is written.
 */
import { parseAllDocuments } from 'yaml';
import { BadRequestError } from '../errors';
import { PolicySchema, normalise } from '../../policy/model';
import { type Resource, badItem, mapResource } from './v3';

/** One etcd transaction carries the whole file (etcd's default limit is 128 operations). */
const MAX_ITEMS = 128;

function documents(text: string, file: string): unknown[] {
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) return [JSON.parse(trimmed) as unknown];
    const all = parseAllDocuments(text);
    const bad = all.find((d) => d.errors.length);
    if (bad) throw new Error(bad.errors[0].message);
    return all.map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
  } catch (err) {
    throw new BadRequestError(`${file} is neither valid YAML nor JSON: ${(err as Error).message}`);
  }
}

const isList = (d: unknown): d is { items: unknown[] } =>
  typeof d === 'object' &&
  d !== null &&
  typeof (d as { kind?: unknown }).kind === 'string' &&
  /List$/.test((d as { kind: string }).kind) &&
  Array.isArray((d as { items?: unknown }).items);

export function parseManifest(text: string, file = 'manifest'): Resource[] {
  const items = documents(text, file).flatMap((d): unknown[] => (Array.isArray(d) ? d : isList(d) ? d.items : [d]));
  if (items.length === 0) throw new BadRequestError(`${file} holds no resource`);
  if (items.length > MAX_ITEMS) throw new BadRequestError(`${file} holds ${items.length} resources; give at most ${MAX_ITEMS} per file`);
  const out = items.map((item, i): Resource => {
    const fail = badItem(file, items.length, i, item);
    if ((item as { kind?: unknown })?.kind !== 'Policy') return mapResource(item, fail);
    // Our short shape (docs/policy.md) keeps working beside Calico's.
    const r = PolicySchema.safeParse(item);
    if (!r.success) fail(r.error.issues[0].path as Array<string | number>, r.error.issues[0].message);
    const policy = normalise(r.data!);
    return { kind: 'GlobalNetworkPolicy', name: policy.name, policy };
  });
  // Two items for one key would make the transaction fail (etcd refuses a key twice in one).
  const ids = [...out.map((r) => `${r.kind} ${r.name}`), ...out.flatMap((r) => (r.kind === 'IPPool' ? [`IPPool cidr ${r.pool.cidr}`] : []))];
  const dup = ids.find((n, i) => ids.indexOf(n) !== i);
  if (dup) throw new BadRequestError(`${file}: ${dup} appears twice`);
  return out;
}
