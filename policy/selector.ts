/**
 * Calico's label selector language: `k == 'v'`, `k != 'v'` (true when k is absent), `has(k)`,
 * `!has(k)`, `k in {'a','b'}`, `k not in {...}`, `all()` (or empty), combined with `&&`, `||`,
 * `!` and parentheses. Parsed once into a tree; evaluated against an endpoint's labels.
 */
import { BadRequestError } from '../lib/errors';

export type Selector =
  | { op: 'all' }
  | { op: 'eq' | 'ne'; key: string; value: string }
  | { op: 'has'; key: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'not'; arg: Selector }
  | { op: 'and' | 'or'; args: Selector[] };

type Tok = { t: 'id' | 'str' | 'sym'; v: string; at: number };

const KEY = /[A-Za-z0-9_./-]/;

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (['==', '!=', '&&', '||'].includes(two)) {
      out.push({ t: 'sym', v: two, at: i });
      i += 2;
      continue;
    }
    if ('(){},!'.includes(c)) {
      out.push({ t: 'sym', v: c, at: i });
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new BadRequestError(`selector "${src}": unterminated string at position ${i}`);
      out.push({ t: 'str', v: src.slice(i + 1, end), at: i });
      i = end + 1;
      continue;
    }
    if (KEY.test(c)) {
      let j = i;
      while (j < src.length && KEY.test(src[j])) j++;
      out.push({ t: 'id', v: src.slice(i, j), at: i });
      i = j;
      continue;
    }
    throw new BadRequestError(`selector "${src}": unexpected "${c}" at position ${i}`);
  }
  return out;
}

export function parseSelector(src: string | undefined | null): Selector {
  const text = (src ?? '').trim();
  if (!text) return { op: 'all' };
  const toks = lex(text);
  let p = 0;
  const fail = (what: string): never => {
    const at = toks[p]?.at ?? text.length;
    throw new BadRequestError(`selector "${text}": ${what} at position ${at}; use e.g. role == 'db' && has(tier)`);
  };
  const peek = (v?: string) => (toks[p] && (v === undefined || toks[p].v === v) ? toks[p] : undefined);
  const take = (v: string) => (peek(v) && toks[p].t === 'sym' ? (p++, true) : false);
  const expect = (v: string) => take(v) || fail(`expected "${v}"`);
  const str = () => (toks[p]?.t === 'str' ? toks[p++].v : fail('expected a quoted value'));
  const values = () => {
    expect('{');
    const vs: string[] = [];
    if (!take('}')) {
      do vs.push(str());
      while (take(','));
      expect('}');
    }
    return vs;
  };
  const primary = (): Selector => {
    if (take('!')) return { op: 'not', arg: primary() };
    if (take('(')) {
      const e = or();
      expect(')');
      return e;
    }
    const id = toks[p]?.t === 'id' ? toks[p++].v : fail('expected a label key, has(), all(), ! or (');
    if (id === 'all' && peek('(')) {
      expect('(');
      expect(')');
      return { op: 'all' };
    }
    if (id === 'has' && peek('(')) {
      expect('(');
      const key = toks[p]?.t === 'id' ? toks[p++].v : fail('expected a label key');
      expect(')');
      return { op: 'has', key };
    }
    if (take('==')) return { op: 'eq', key: id, value: str() };
    if (take('!=')) return { op: 'ne', key: id, value: str() };
    if (peek('in') && toks[p].t === 'id') {
      p++;
      return { op: 'in', key: id, values: values() };
    }
    if (peek('not') && toks[p].t === 'id' && toks[p + 1]?.v === 'in') {
      p += 2;
      return { op: 'notin', key: id, values: values() };
    }
    return fail(`expected ==, !=, in or not in after "${id}"`);
  };
  const and = (): Selector => {
    const args = [primary()];
    while (take('&&')) args.push(primary());
    return args.length === 1 ? args[0] : { op: 'and', args };
  };
  const or = (): Selector => {
    const args = [and()];
    while (take('||')) args.push(and());
    return args.length === 1 ? args[0] : { op: 'or', args };
  };
  const e = or();
  if (p < toks.length) fail(`unexpected "${toks[p].v}"`);
  return e;
}

export function matches(s: Selector, labels: Record<string, string>): boolean {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(labels, k);
  switch (s.op) {
    case 'all':
      return true;
    case 'eq':
      return has(s.key) && labels[s.key] === s.value;
    case 'ne':
      return !has(s.key) || labels[s.key] !== s.value;
    case 'has':
      return has(s.key);
    case 'in':
      return has(s.key) && s.values.includes(labels[s.key]);
    case 'notin':
      return !has(s.key) || !s.values.includes(labels[s.key]);
    case 'not':
      return !matches(s.arg, labels);
    case 'and':
      return s.args.every((a) => matches(a, labels));
    case 'or':
      return s.args.some((a) => matches(a, labels));
  }
}

/**
 * A value as the language quotes it: in single quotes, or double ones when it holds a single
 * quote (there are no escapes), so the text parses back to the same value.
 */
export function quote(v: string): string {
  return v.includes("'") ? `"${v}"` : `'${v}'`;
}

/** A canonical text for a selector: equal selectors share one ipset (and different ones never do). */
export function canonical(s: Selector): string {
  switch (s.op) {
    case 'all':
      return 'all()';
    case 'eq':
      return `${s.key} == ${quote(s.value)}`;
    case 'ne':
      return `${s.key} != ${quote(s.value)}`;
    case 'has':
      return `has(${s.key})`;
    case 'in':
    case 'notin':
      return `${s.key} ${s.op === 'in' ? 'in' : 'not in'} {${s.values.map(quote).join(',')}}`;
    case 'not':
      return `!(${canonical(s.arg)})`;
    case 'and':
    case 'or':
      return `(${s.args.map(canonical).join(s.op === 'and' ? ' && ' : ' || ')})`;
  }
}
