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
import { PREFIX, type Rendered } from './render';

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
    if (mine.length) await feed(`${tool(f)}-restore`, ['-w', '--noflush'], ['*filter', ...mine.map((c) => `:${c} - [0:0]`), ...mine.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n'));
  }
  await destroyStaleSets(new Set());
}

async function destroyStaleSets(wanted: Set<string>): Promise<void> {
  const { stdout } = await run('ipset', ['list', '-n']);
  for (const name of stdout.split('\n').map((s) => s.trim())) {
    if (/^cal[46][sn]-/.test(name) && !wanted.has(name)) await run('ipset', ['destroy', name]).catch(() => undefined);
  }
}

export async function applyFirewall(r: Rendered): Promise<void> {
  const sets = r.ipsets
    .flatMap((s) => {
      const tmp = `${s.name}-t`;
      return [
        `create ${tmp} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} -exist`,
        `flush ${tmp}`,
        ...s.members.map((m) => `add ${tmp} ${m} -exist`),
        `create ${s.name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} -exist`,
        `swap ${tmp} ${s.name}`,
        `destroy ${tmp}`,
      ];
    })
    .join('\n');
  if (sets) await feed('ipset', ['restore'], sets + '\n');
  for (const f of [4, 6] as const) {
    const wanted = new Set(r.chains[f]);
    const stale = (await ourChains(f)).filter((c) => !wanted.has(c));
    // Declaring a stale chain flushes it, so the -X below cannot fail on its references.
    const text = r.tables[f].replace(/COMMIT\n$/, [...stale.map((c) => `:${c} - [0:0]`), ...stale.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n'));
    await feed(`${tool(f)}-restore`, ['-w', '--noflush'], text);
    await ensureJump(f, 'FORWARD', `${PREFIX}FORWARD`);
    await ensureJump(f, 'INPUT', `${PREFIX}INPUT`);
  }
  await destroyStaleSets(new Set(r.ipsets.map((s) => s.name)));
}
