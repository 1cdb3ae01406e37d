/**
 * Request validation with zod, turning the first problem into a message that names the field,
 * and the bounds every request body and ID must meet before any handler sees it.
 */
import { z } from 'zod';
import { BadRequestError } from './errors';

export function parseRequest<S extends z.ZodType>(schema: S, body: unknown, method: string): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : '(body)';
  throw new BadRequestError(`invalid ${method} request: field "${cut(field)}": ${issue.message}`);
}

const cut = (s: string, n = 120) => (s.length > n ? `${s.slice(0, n)}...` : s);

/**
 * Docker's IDs: 64 hex characters for networks and endpoints, 25 letters and digits for swarm
 * networks. They become etcd key segments, interface names and firewall identifiers, so
 * anything else (a slash, a quote, a control character, a megabyte) is refused at the edge.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const dockerId = z
  .string()
  .min(1, 'must be a non-empty ID')
  .regex(ID_PATTERN, "must be a Docker ID: up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit");

/** No control characters (and, with `quotes`, no quote or backslash): safe in keys, logs and rules. */
export function printable(s: string, quotes = false): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return false;
    if (quotes && (c === 0x22 || c === 0x27 || c === 0x60 || c === 0x5c)) return false;
  }
  return true;
}

/** Free text that ends up in records (paths, names): printable, no quotes, bounded. */
export function safeText(max: number) {
  return z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine((s) => printable(s, true), 'must not contain quotes, backslashes or control characters');
}

/** How deep a request body may nest: Docker's deepest (port maps in options) is 4 levels. */
export const MAX_BODY_DEPTH = 32;

/**
 * Where a decoded body nests deeper than `max`, as a dotted path (cut short), or undefined.
 * Iterative, so a body nested 100,000 deep costs a walk, not the stack.
 */
export function tooDeep(body: unknown, max = MAX_BODY_DEPTH): string | undefined {
  interface Node {
    v: unknown;
    depth: number;
    key: string;
    parent?: Node;
  }
  const stack: Node[] = [{ v: body, depth: 0, key: '' }];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.v === null || typeof n.v !== 'object') continue;
    if (n.depth >= max) {
      const parts: string[] = [];
      for (let p: Node | undefined = n; p && p.key !== ''; p = p.parent) parts.unshift(p.key);
      return cut(parts.join('.'));
    }
    const entries = Array.isArray(n.v) ? n.v.map((v, i) => [String(i), v] as const) : Object.entries(n.v as Record<string, unknown>);
    for (const [k, v] of entries) if (v !== null && typeof v === 'object') stack.push({ v, depth: n.depth + 1, key: k, parent: n });
  }
  return undefined;
}
