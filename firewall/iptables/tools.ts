/**
 * The programs the iptables backend drives: iptables-restore and ipset restore fed on standard
 * input (rule text never goes through a shell or an argument built from data), iptables-save to
 * look at the kernel, and single iptables calls for the hook jumps.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { InternalError } from '../../lib/errors';
import type { Family } from '../desired';
import { PREFIX, SET_NAME } from './compile';

const run = promisify(execFile);

export function feed(cmd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += String(d)));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new InternalError(`${cmd} ${args.join(' ')} failed: ${err.trim()}`))));
    c.stdin.on('error', () => undefined);
    c.stdin.end(input);
  });
}

export const tool = (f: Family) => (f === 4 ? 'iptables' : 'ip6tables');

/** iptables-restore --noflush: only the chains the text declares are flushed and rewritten. */
export const restore = (f: Family, text: string) => feed(`${tool(f)}-restore`, ['-w', '--noflush'], text);

export async function saveFilter(f: Family): Promise<string> {
  return (await run(`${tool(f)}-save`, ['-t', 'filter'], { maxBuffer: 256 * 1024 * 1024 })).stdout;
}

/** Our chains in the kernel with their rule counts. */
export function ourChainsIn(saved: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of saved.split('\n')) {
    if (l.startsWith(`:${PREFIX}`)) out.set(l.slice(1).split(' ')[0], 0);
    else if (l.startsWith(`-A ${PREFIX}`)) {
      const c = l.slice(3, l.indexOf(' ', 3));
      out.set(c, (out.get(c) ?? 0) + 1);
    }
  }
  return out;
}

export async function hasJump(f: Family, from: string, to: string): Promise<boolean> {
  try {
    await run(tool(f), ['-w', '-C', from, '-j', to]);
    return true;
  } catch {
    return false;
  }
}

export async function ensureJump(f: Family, from: string, to: string): Promise<void> {
  if (!(await hasJump(f, from, to))) await run(tool(f), ['-w', '-I', from, '1', '-j', to]);
}

export async function removeJump(f: Family, from: string, to: string): Promise<void> {
  // -D removes one copy; more than one can only come from someone else's hand, so a few tries.
  for (let i = 0; i < 5; i++) {
    try {
      await run(tool(f), ['-w', '-D', from, '-j', to]);
    } catch {
      return;
    }
  }
}

/** Our ipsets in the kernel with their member counts. */
export async function ourSets(): Promise<Map<string, number>> {
  const { stdout } = await run('ipset', ['list', '-t'], { maxBuffer: 64 * 1024 * 1024 });
  const out = new Map<string, number>();
  let name: string | undefined;
  for (const l of stdout.split('\n')) {
    const n = /^Name: (\S+)/.exec(l);
    if (n) name = SET_NAME.test(n[1]) ? n[1] : undefined;
    const c = /^Number of entries: (\d+)/.exec(l);
    if (c && name) out.set(name, Number(c[1]));
  }
  return out;
}

export const ipsetRestore = (lines: string[]) => (lines.length ? feed('ipset', ['restore'], lines.join('\n') + '\n') : Promise.resolve());
