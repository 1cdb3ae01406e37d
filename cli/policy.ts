/** `calico policy apply|ls|get|rm` and `calico profile ls|get`. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { BadRequestError, errorMessage } from '../lib/errors';
import { applyPolicies, getPolicy, listPolicies, parsePolicyFile, type PolicyRecord, removePolicy } from '../policy/model';
import { getProfile, listProfiles, type ProfileRecord } from '../policy/profiles';
import { withKv } from './connect';
import { print, table } from './output';
import { run } from './run';

export async function readInput(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new BadRequestError(`cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** The resource as a user writes it, so `get` output can be edited and applied again. */
export function policyResource(p: PolicyRecord): Record<string, unknown> {
  return {
    kind: 'Policy',
    name: p.name,
    order: p.order,
    selector: p.selector,
    types: p.types,
    ...(p.ingress.length ? { ingress: p.ingress } : {}),
    ...(p.egress.length ? { egress: p.egress } : {}),
  };
}

const profileResource = (p: ProfileRecord) => ({ kind: 'Profile', name: p.name, internal: p.internal, ingress: p.ingress, egress: p.egress });

function show(json: boolean, resource: unknown): void {
  process.stdout.write(json ? JSON.stringify(resource, null, 2) + '\n' : stringify(resource));
}

export function policyCommands(program: Command): void {
  const policy = program.command('policy').description('label-selector policies: which endpoints may talk to which, enforced on every host');
  policy
    .command('apply')
    .description('create or replace the policies in a YAML or JSON file (one, a list, or several YAML documents)')
    .requiredOption('-f, --filename <file>', 'the file, or - for standard input')
    .action((o: { filename: string }) =>
      run(async () => {
        // Validated whole before anything is written: a bad file changes nothing.
        const policies = parsePolicyFile(await readInput(o.filename), o.filename);
        await withKv(async (kv) => {
          await applyPolicies(kv, policies);
        });
        for (const p of policies) process.stdout.write(`applied policy ${p.name}\n`);
      }),
    );
  policy
    .command('ls')
    .description('list policies in the order they apply')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        await withKv(async (kv) => {
          const ps = await listPolicies(kv);
          print(!!o.json, ps.map(policyResource), () =>
            table(
              ['NAME', 'ORDER', 'SELECTOR', 'TYPES', 'INGRESS', 'EGRESS'],
              ps.map((p) => [p.name, p.order, p.selector, p.types.join(','), p.ingress.length, p.egress.length]),
            ),
          );
        });
      }),
    );
  policy
    .command('get <name>')
    .description('print one policy as YAML (or JSON), ready to edit and apply again')
    .option('--json', 'print JSON')
    .action((name: string, o: { json?: boolean }) =>
      run(async () => {
        await withKv(async (kv) => {
          show(!!o.json, policyResource(await getPolicy(kv, name)));
        });
      }),
    );
  policy
    .command('rm <name>')
    .description('remove a policy; endpoints it selected fall back to other policies or their profile')
    .action((name: string) =>
      run(async () => {
        await withKv(async (kv) => {
          await removePolicy(kv, name);
          process.stdout.write(`removed policy ${name}\n`);
        });
      }),
    );

  const profile = program.command('profile').description('per-network profiles (kept by calico node): same network in, everything out');
  profile
    .command('ls')
    .description('list profiles, one per Calico network name')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async () => {
        await withKv(async (kv) => {
          const ps = (await listProfiles(kv)).sort((a, b) => a.name.localeCompare(b.name));
          print(!!o.json, ps.map(profileResource), () =>
            table(
              ['NAME', 'INTERNAL', 'INGRESS', 'EGRESS'],
              ps.map((p) => [p.name, p.internal ? 'yes' : 'no', p.ingress.length, p.egress.length]),
            ),
          );
        });
      }),
    );
  profile
    .command('get <name>')
    .description("print one profile's rules as YAML (or JSON)")
    .option('--json', 'print JSON')
    .action((name: string, o: { json?: boolean }) =>
      run(async () => {
        await withKv(async (kv) => {
          show(!!o.json, profileResource(await getProfile(kv, name)));
        });
      }),
    );
}
