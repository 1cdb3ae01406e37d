/**
 * Puts a rendered firewall into the kernel: ipsets first (each refilled through a temporary set
 * and swapped in, so a set is never seen half full), then our chains with one
 * `iptables-restore --noflush` per family (atomic, and it touches no chain it does not declare),
 * then the single jumps from FORWARD and INPUT, then stale chains and sets of ours are removed.
 * Programs run with argument vectors; rule text goes through their standard input.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { InternalError } from '../lib/errors';
import type { Family } from '../lib/ip';
import { type IpSet, PREFIX, type Rendered } from './render';

const run = promisify(execFile);

function feed(cmd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new InternalError(`${cmd} ${args.join(' ')} failed: ${err.trim()}`))));
    c.stdin.on('error', () => undefined);
    c.stdin.end(input);
  });
}

const tool = (f: Family) => (f === 4 ? 'iptables' : 'ip6tables');

async function ourChains(f: Family): Promise<string[]> {
  const { stdout } = await run(`${tool(f)}-save`, ['-t', 'filter'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout
    .split('\n')
    .filter((l) => l.startsWith(`:${PREFIX}`))
    .map((l) => l.slice(1).split(' ')[0]);
}

async function ensureJump(f: Family, from: string, to: string): Promise<void> {
  try {
    await run(tool(f), ['-w', '-C', from, '-j', to]);
  } catch {
    await run(tool(f), ['-w', '-I', from, '1', '-j', to]);
  }
}

async function removeJump(f: Family, from: string, to: string): Promise<void> {
  // -D removes one copy; more than one can only come from someone else's hand, so a few tries.
  for (let i = 0; i < 5; i++) {
    try {
      await run(tool(f), ['-w', '-D', from, '-j', to]);
    } catch {
      return;
    }
  }
}

/** Takes out everything of ours (CALICO_POLICY=off): the jumps, our chains, our sets. */
export async function removeFirewall(): Promise<void> {
  for (const f of [4, 6] as const) {
    await removeJump(f, 'FORWARD', `${PREFIX}FORWARD`);
    await removeJump(f, 'INPUT', `${PREFIX}INPUT`);
    const mine = await ourChains(f);
    if (mine.length)
      await feed(
        `${tool(f)}-restore`,
        ['-w', '--noflush'],
        ['*filter', ...mine.map((c) => `:${c} - [0:0]`), ...mine.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n'),
      );
  }
  await destroyStaleSets(new Set());
}

async function destroyStaleSets(wanted: Set<string>): Promise<void> {
  const { stdout } = await run('ipset', ['list', '-n']);
  for (const name of stdout.split('\n').map((s) => s.trim())) {
    if (/^cal[46][sn]-/.test(name) && !wanted.has(name)) await run('ipset', ['destroy', name]).catch(() => undefined);
  }
}

const setLines = (s: IpSet): string[] => {
  const tmp = `${s.name}-t`;
  const fam = s.family === 4 ? 'inet' : 'inet6';
  return [
    `create ${tmp} ${s.type} family ${fam} -exist`,
    `flush ${tmp}`,
    ...s.members.map((m) => `add ${tmp} ${m} -exist`),
    `create ${s.name} ${s.type} family ${fam} -exist`,
    `swap ${tmp} ${s.name}`,
    `destroy ${tmp}`,
  ];
};

/** A rendered table split into each chain's rule lines, in order. */
function byChain(r: Rendered, f: Family): Map<string, string> {
  const out = new Map<string, string[]>(r.chains[f].map((c) => [c, []]));
  for (const line of r.tables[f].split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const c = line.slice(3, line.indexOf(' ', 3));
    out.get(c)?.push(line);
  }
  return new Map([...out].map(([c, lines]) => [c, lines.join('\n')]));
}

interface Applied {
  chains: Record<Family, Map<string, string>>;
  sets: Map<string, string>;
}

/**
 * Keeps the kernel in step with successive renders. The first apply (and any after a failure,
 * or when asked for a full one) rewrites everything of ours and checks the jumps and stale
 * chains in the kernel; later ones rewrite only the chains and sets whose content changed, so a
 * one-rule edit on a host with a thousand endpoints touches a few chains, not thousands.
 */
export class Firewall {
  private last?: Applied;

  async apply(r: Rendered, full = false): Promise<{ chains: number; sets: number }> {
    const prev = full ? undefined : this.last;
    this.last = undefined; // a failure part-way leaves the kernel unknown: the next apply is full
    const sets = r.ipsets.filter((s) => prev?.sets.get(s.name) !== s.members.join(','));
    if (sets.length) await feed('ipset', ['restore'], sets.flatMap(setLines).join('\n') + '\n');
    const chains = {} as Record<Family, Map<string, string>>;
    let written = 0;
    // The families are independent tables: both restores run at once (a Join waits for them).
    await Promise.all(
      ([4, 6] as const).map(async (f) => {
        chains[f] = byChain(r, f);
        const old = prev?.chains[f];
        const changed = [...chains[f]].filter(([c, text]) => old?.get(c) !== text).map(([c]) => c);
        // Without a previous state the kernel is asked which of our chains exist.
        const stale = old ? [...old.keys()].filter((c) => !chains[f].has(c)) : (await ourChains(f)).filter((c) => !chains[f].has(c));
        written += changed.length;
        if (changed.length || stale.length) {
          // Declaring a chain flushes it; a stale chain is flushed before -X, and every chain that
          // referred to it changed too (it named it), so it is rewritten in the same transaction.
          const text = [
            '*filter',
            ...[...changed, ...stale].map((c) => `:${c} - [0:0]`),
            ...changed.map((c) => chains[f].get(c)!).filter(Boolean),
            ...stale.map((c) => `-X ${c}`),
            'COMMIT',
            '',
          ].join('\n');
          await feed(`${tool(f)}-restore`, ['-w', '--noflush'], text);
        }
        if (!prev) {
          await ensureJump(f, 'FORWARD', `${PREFIX}FORWARD`);
          await ensureJump(f, 'INPUT', `${PREFIX}INPUT`);
        }
      }),
    );
    const wanted = new Map(r.ipsets.map((s) => [s.name, s.members.join(',')]));
    if (!prev) await destroyStaleSets(new Set(wanted.keys()));
    else for (const name of prev.sets.keys()) if (!wanted.has(name)) await run('ipset', ['destroy', name]).catch(() => undefined);
    this.last = { chains, sets: wanted };
    return { chains: written, sets: sets.length };
  }
}

/** One full apply (tests, benchmarks): everything of ours rewritten, jumps and stale state checked. */
export async function applyFirewall(r: Rendered): Promise<void> {
  await new Firewall().apply(r, true);
}
