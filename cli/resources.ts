/** `calico apply|create|replace|delete -f FILE` and `calico get KIND [NAME]`: calicoctl's verbs over v3 manifests. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { BadRequestError } from '../lib/errors';
import { parseManifest } from '../lib/resources/manifest';
import { type GetKind, type WriteMode, deleteResources, getResources, kindOf, writeResources } from '../lib/resources/store';
import { API_VERSION } from '../lib/resources/v3';
import { withKv } from './connect';
import { readInput } from './policy';
import { table } from './output';
import { run } from './run';

const VERBS: Record<WriteMode, [string, string]> = {
  apply: ['create or replace the resources in a file', 'applied'],
  create: ['create the resources in a file; fails if any exists', 'created'],
  replace: ['replace the resources in a file; fails if any does not exist', 'replaced'],
};

type V3 = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };

/** The `wide` (and default) table per kind; the default leaves out the widest columns. */
function tableOf(kind: GetKind, rs: V3[], wide: boolean): string {
  const s = (r: V3) => r.spec;
  const count = (v: unknown) => (Array.isArray(v) ? v.length : 0);
  switch (kind) {
    case 'IPPool':
      return table(
        ['NAME', 'CIDR', 'SELECTOR', ...(wide ? ['BLOCKSIZE', 'NAT', 'IPIPMODE', 'VXLANMODE', 'DISABLED'] : [])],
        rs.map((r) => [
          r.metadata.name,
          String(s(r).cidr),
          String(s(r).nodeSelector),
          ...(wide ? [String(s(r).blockSize), 'false', 'Never', 'Never', String(s(r).disabled)] : []),
        ]),
      );
    case 'BGPConfiguration':
      return table(
        ['NAME', 'LOGSEVERITY', 'MESHENABLED', 'ASNUMBER'],
        rs.map((r) => [r.metadata.name, 'Info', String(s(r).nodeToNodeMeshEnabled), String(s(r).asNumber)]),
      );
    case 'BGPPeer':
      return table(
        ['NAME', 'PEERIP', 'NODE', 'ASN'],
        rs.map((r) => [r.metadata.name, String(s(r).peerIP), s(r).node ? String(s(r).node) : '(global)', String(s(r).asNumber)]),
      );
    case 'GlobalNetworkPolicy':
      return table(
        ['NAME', ...(wide ? ['ORDER', 'SELECTOR', 'TYPES', 'INGRESS', 'EGRESS'] : [])],
        rs.map((r) => [
          r.metadata.name,
          ...(wide ? [String(s(r).order), String(s(r).selector), (s(r).types as string[]).join(','), count(s(r).ingress), count(s(r).egress)] : []),
        ]),
      );
    case 'GlobalNetworkSet':
      return table(
        ['NAME', 'NETS', ...(wide ? ['LABELS'] : [])],
        rs.map((r) => {
          const labels = (r.metadata as { labels?: Record<string, string> }).labels ?? {};
          const nets = (s(r).nets as string[]).join(',');
          return [
            r.metadata.name,
            nets,
            ...(wide
              ? [
                  Object.entries(labels)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(','),
                ]
              : []),
          ];
        }),
      );
    case 'Profile':
      return table(
        ['NAME', ...(wide ? ['INGRESS', 'EGRESS'] : [])],
        rs.map((r) => [r.metadata.name, ...(wide ? [count(s(r).ingress), count(s(r).egress)] : [])]),
      );
  }
}

export function resourceCommands(program: Command): void {
  for (const verb of Object.keys(VERBS) as WriteMode[]) {
    program
      .command(verb)
      .description(
        `${VERBS[verb][0]} (projectcalico.org/v3 IPPool, BGPConfiguration, BGPPeer, GlobalNetworkPolicy, GlobalNetworkSet, or our kind: Policy), all or none`,
      )
      .requiredOption('-f, --filename <file>', 'a YAML or JSON file, or - for standard input')
      .action((o: { filename: string }) =>
        run(async () => {
          // The whole file is checked before anything is written, and written in one transaction.
          const items = parseManifest(await readInput(o.filename), o.filename);
          await withKv((kv) => writeResources(kv, items, verb));
          process.stdout.write(`${VERBS[verb][1]} ${items.length} resource(s): ${items.map((r) => `${r.kind} ${r.name}`).join(', ')}\n`);
        }),
      );
  }
  program
    .command('delete [kind] [name]')
    .description('delete the resources in a file (-f), or one by kind and name; all or none')
    .option('-f, --filename <file>', 'a YAML or JSON file, or - for standard input')
    .action((kind: string | undefined, name: string | undefined, o: { filename?: string }) =>
      run(async () => {
        let items: Array<{ kind: Exclude<GetKind, 'Profile'>; name: string }>;
        if (o.filename !== undefined) {
          if (kind !== undefined) throw new BadRequestError('give either -f FILE or KIND NAME, not both');
          items = parseManifest(await readInput(o.filename), o.filename);
        } else {
          if (kind === undefined || name === undefined) throw new BadRequestError('give -f FILE, or a kind and a name like "calico delete ippool my-pool"');
          const k = kindOf(kind);
          if (k === 'Profile') throw new BadRequestError('profiles are kept by calico node, one per network; they go when the network does');
          items = [{ kind: k, name }];
        }
        await withKv((kv) => deleteResources(kv, items));
        process.stdout.write(`deleted ${items.length} resource(s): ${items.map((r) => `${r.kind} ${r.name}`).join(', ')}\n`);
      }),
    );
  program
    .command('get <kind> [name]')
    .description('print resources of a kind (ippool, bgpconfiguration, bgppeer, globalnetworkpolicy, globalnetworkset, profile)')
    .option('-o, --output <format>', 'yaml, json, wide, or a table by default')
    .action((kindText: string, name: string | undefined, o: { output?: string }) =>
      run(async () => {
        const format = o.output ?? 'table';
        if (!['table', 'wide', 'yaml', 'json'].includes(format)) throw new BadRequestError(`-o ${format}: use yaml, json or wide`);
        const kind = kindOf(kindText);
        const rs = (await withKv((kv) => getResources(kv, kind, name))) as V3[];
        if (format === 'table' || format === 'wide') return void process.stdout.write(tableOf(kind, rs, format === 'wide') + '\n');
        // One named resource prints as itself; a listing as calicoctl's List, which apply reads back.
        const doc = name !== undefined ? rs[0] : { apiVersion: API_VERSION, kind: `${kind}List`, items: rs };
        process.stdout.write(format === 'json' ? JSON.stringify(doc, null, 2) + '\n' : stringify(doc));
      }),
    );
}
