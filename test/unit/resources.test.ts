/** v3 manifests (lib/resources): parsing, refusals naming item and field, mapping onto our records, and the write verbs. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { codecs } from '../../lib/datastore/codec';
import { keys } from '../../lib/datastore/keys';
import { MemoryKV } from '../../lib/datastore/memory';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors';
import { parseManifest } from '../../lib/resources/manifest';
import { deleteResources, getResources, kindOf, writeResources } from '../../lib/resources/store';
import { POOL_FIELD_SUPPORT, policyToV3 } from '../../lib/resources/v3';
import { Pools } from '../../ipam/pools';
import { getSettings, listPeers } from '../../routing/model';

const bad = (re: RegExp) => (e: unknown) => e instanceof BadRequestError && re.test(e.message);
const V = 'apiVersion: projectcalico.org/v3\n';
const pool = (name: string, spec: string) => `${V}kind: IPPool\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

const GNP = `${V}kind: GlobalNetworkPolicy
metadata:
  name: allow-web
spec:
  order: 100
  selector: role == 'web'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
        notNets: [10.9.0.0/16]
      destination:
        ports: [80, "8000:8080"]
        notPorts: [8081]
  egress:
    - action: Deny
      protocol: ICMP
      destination:
        nets: [192.0.2.0/24]
`;

describe('parseManifest', () => {
  test('maps a GlobalNetworkPolicy onto the policy record calico policy apply writes', () => {
    const [r] = parseManifest(GNP);
    assert.equal(r.kind, 'GlobalNetworkPolicy');
    assert.deepEqual(r.kind === 'GlobalNetworkPolicy' && r.policy, {
      name: 'allow-web',
      order: 100,
      selector: "role == 'web'",
      types: ['ingress', 'egress'],
      ingress: [
        {
          action: 'allow',
          protocol: 'tcp',
          source: { selector: "role == 'frontend'", notNets: ['10.9.0.0/16'] },
          destination: { ports: [80, '8000:8080'], notPorts: [8081] },
        },
      ],
      egress: [{ action: 'deny', protocol: 'icmp', destination: { nets: ['192.0.2.0/24'] } }],
    });
  });

  test('a GlobalNetworkPolicy read back with get applies again to the same record', () => {
    const [r] = parseManifest(GNP);
    const again = parseManifest(JSON.stringify(policyToV3(r.kind === 'GlobalNetworkPolicy' ? r.policy : (undefined as never))));
    assert.deepEqual(again, [r]);
  });

  test("without types a GlobalNetworkPolicy gets Calico's default: Ingress, and Egress when it has egress rules", () => {
    const types = (spec: string) => {
      const [r] = parseManifest(`${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n${spec}`);
      return r.kind === 'GlobalNetworkPolicy' ? r.policy.types : [];
    };
    assert.deepEqual(types('  egress: [{action: Allow}]\n'), ['ingress', 'egress']);
    assert.deepEqual(types('  selector: all()\n'), ['ingress']);
  });

  test('reads several documents, a List and a JSON array, and our short kind: Policy beside v3 kinds', () => {
    const list = JSON.stringify({
      apiVersion: 'projectcalico.org/v3',
      kind: 'IPPoolList',
      items: [{ apiVersion: 'projectcalico.org/v3', kind: 'IPPool', metadata: { name: 'a' }, spec: { cidr: '10.1.0.0/16' } }],
    });
    assert.deepEqual(
      parseManifest(list).map((r) => r.name),
      ['a'],
    );
    const docs = `${pool('a', '  cidr: 10.1.0.0/16\n')}\n---\nkind: Policy\nname: short\n---\n${V}kind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 192.0.2.1, asNumber: 65001, node: h1}\n`;
    assert.deepEqual(
      parseManifest(docs).map((r) => `${r.kind} ${r.name}`),
      ['IPPool a', 'GlobalNetworkPolicy short', 'BGPPeer tor'],
    );
    const arr = JSON.stringify([
      { apiVersion: 'projectcalico.org/v3', kind: 'BGPConfiguration', metadata: { name: 'default' }, spec: { asNumber: 65010, nodeToNodeMeshEnabled: false } },
    ]);
    const [c] = parseManifest(arr);
    assert.deepEqual(c.kind === 'BGPConfiguration' && c.settings, { asn: 65010, nodeMesh: false });
  });

  test('pool settings map onto the record; fields left out take Calico defaults; unsupported values are refused by name', () => {
    const ok = parseManifest(
      pool('p', '  cidr: 10.2.0.0/16\n  blockSize: 28\n  natOutgoing: true\n  ipipMode: Never\n  vxlanMode: CrossSubnet\n  nodeSelector: all()\n'),
    );
    assert.deepEqual(ok[0].kind === 'IPPool' && ok[0].pool, {
      name: 'p',
      cidr: '10.2.0.0/16',
      blockSize: 28,
      disabled: false,
      natOutgoing: true,
      vxlanMode: 'CrossSubnet',
      ipipMode: 'Never',
    });
    const bare = parseManifest(pool('q', '  cidr: 10.3.0.0/16\n'));
    assert.deepEqual(bare[0].kind === 'IPPool' && [bare[0].pool.natOutgoing, bare[0].pool.vxlanMode, bare[0].pool.ipipMode], [false, 'Never', 'Never']);
    assert.ok('nodeSelector' in POOL_FIELD_SUPPORT);
    assert.throws(
      () => parseManifest(pool('p', `  cidr: 10.2.0.0/16\n  nodeSelector: "rack == 'a'"\n`)),
      bad(/the resource \(IPPool p\), field spec\.nodeSelector: .*not supported yet/),
    );
    assert.throws(() => parseManifest(pool('p', '  cidr: 10.2.0.0/16\n  vxlanMode: Sometimes\n')), bad(/field spec\.vxlanMode/));
    assert.throws(
      () => parseManifest(pool('p', '  cidr: 10.2.0.0/16\n  vxlanMode: Always\n  ipipMode: CrossSubnet\n')),
      bad(/field spec\.ipipMode: .*spec\.vxlanMode Always and spec\.ipipMode CrossSubnet are both set/),
    );
    assert.throws(() => parseManifest(pool('p', '  cidr: fd00:5::/64\n  ipipMode: Always\n')), bad(/IP-in-IP carries IPv4 only/));
  });

  test('errors name the item and the field', () => {
    const cases: Array<[string, RegExp]> = [
      [`${V}kind: Frobnicator\nmetadata: {name: x}\n`, /the resource \(Frobnicator x\), field kind: unknown kind "Frobnicator"/],
      [`apiVersion: projectcalico.org/v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.0.0.0/8}\n`, /field apiVersion: must be projectcalico.org\/v3/],
      [pool('x', '  cidr: 10.0.0.0/8\n  ipv6: true\n'), /field spec: unknown field "ipv6"/],
      [pool('x', '  cidr: 10.0.0.1/8\n'), /field spec\.cidr: .*host bits/],
      [`${V}kind: BGPPeer\nmetadata: {name: t}\nspec: {peerIP: nope, asNumber: 1}\n`, /field spec\.peerIP/],
      [`${V}kind: BGPPeer\nmetadata: {name: t}\nspec: {peerIP: 192.0.2.1, asNumber: 0}\n`, /field spec\.asNumber: must be an AS number/],
      [`${V}kind: BGPConfiguration\nmetadata: {name: node.h1}\nspec: {}\n`, /field metadata\.name/],
      [`${V}kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Debug}\n`, /field spec\.logSeverityScreen: only Info/],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{action: Allow, source: {namespaceSelector: "x == 'y'"}}]\n`,
        /field spec\.ingress\.0\.source\.namespaceSelector: namespaces are a Kubernetes notion/,
      ],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{action: Allow, icmp: {type: 8}}]\n`,
        /field spec\.ingress\.0\.protocol: icmp needs protocol icmp or icmpv6/,
      ],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  egress: [{action: Allow, protocol: ICMP, notICMP: {code: 0}}]\n`,
        /field spec\.egress\.0\.notICMP\.code: a code needs a type/,
      ],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{action: Allow, protocol: ICMP, icmp: {type: 255}}]\n`,
        /field spec\.ingress\.0\.icmp\.type: .*254/,
      ],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{action: Allow, ipVersion: 4}]\n`,
        /field spec\.ingress\.0\.ipVersion: ipVersion .*is not supported yet/,
      ],
      [
        `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{action: Allow, destination: {ports: [80]}}]\n`,
        /field spec\.ingress\.0\.protocol: ports need protocol/,
      ],
      [`${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  selector: "role =="\n`, /field spec\.selector: is not a valid selector/],
      [`${V}kind: Profile\nmetadata: {name: p}\nspec: {}\n`, /field kind: profiles are kept by calico node/],
      [`${V}kind: NetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/8]}\n`, /NetworkSet is not supported yet/],
      [
        `${V}kind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/8, nope]}\n`,
        /\(GlobalNetworkSet s\), field spec\.nets\.1: net "nope" is not a CIDR/,
      ],
      [
        `${V}kind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {allowedEgressDomains: [example.com]}\n`,
        /field spec\.allowedEgressDomains: allowedEgressDomains .*is not supported yet/,
      ],
      [`kind: Policy\nname: p\nbogus: 1\n`, /the resource \(Policy p\)/],
      ['kind: [unclosed\n', /neither valid YAML nor JSON/],
      ['', /holds no resource/],
      [`${pool('a', '  cidr: 10.1.0.0/16\n')}\n---\n${pool('a', '  cidr: 10.1.0.0/16\n')}`, /IPPool a appears twice/],
      [`${pool('a', '  cidr: 10.1.0.0/16\n')}\n---\n${V}kind: BGPPeer\nmetadata: {name: t}\nspec: {asNumber: 1}\n`, /item 2 \(BGPPeer t\), field spec\.peerIP/],
    ];
    for (const [text, re] of cases) assert.throws(() => parseManifest(text, 'f.yaml'), bad(re), text);
  });
});

describe('writeResources, deleteResources, getResources', () => {
  test('apply writes the records calico pool and calico bgp keep; get reads them back as v3', async () => {
    const kv = new MemoryKV();
    await writeResources(
      kv,
      parseManifest(
        `${pool('a', '  cidr: 10.1.0.0/16\n  blockSize: 28\n')}\n---\n${V}kind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 192.0.2.1, asNumber: 65001}\n---\n${V}kind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n`,
      ),
      'apply',
    );
    const [p] = await new Pools(kv, 0).list();
    assert.deepEqual([p.cidr, p.blockSize, p.disabled, p.name], ['10.1.0.0/16', 28, false, 'a']);
    assert.deepEqual(await listPeers(kv), [{ name: 'tor', ip: '192.0.2.1', asn: 65001 }]);
    assert.deepEqual(await getSettings(kv), { asn: 64512, nodeMesh: false });
    const [got] = await getResources(kv, kindOf('ippools'), 'a');
    assert.deepEqual(got.spec, {
      cidr: '10.1.0.0/16',
      blockSize: 28,
      disabled: false,
      natOutgoing: false,
      ipipMode: 'Never',
      vxlanMode: 'Never',
      nodeSelector: 'all()',
    });
    // A pool made by `calico pool add` has a name derived from its CIDR.
    await new Pools(kv).add('10.5.0.0/16');
    assert.ok((await getResources(kv, 'IPPool')).some((r) => r.metadata.name === '10-5-0-0-16'));
  });

  test('create refuses what exists and replace what does not, writing nothing of the file', async () => {
    const kv = new MemoryKV();
    await writeResources(kv, parseManifest(pool('a', '  cidr: 10.1.0.0/16\n')), 'create');
    const two = parseManifest(`${pool('b', '  cidr: 10.2.0.0/16\n')}\n---\n${pool('a', '  cidr: 10.1.0.0/16\n')}`);
    await assert.rejects(writeResources(kv, two, 'create'), (e) => e instanceof ConflictError && /IPPool a already exists/.test(e.message));
    await assert.rejects(writeResources(kv, two, 'replace'), (e) => e instanceof NotFoundError && /IPPool b does not exist/.test(e.message));
    assert.deepEqual(
      (await new Pools(kv, 0).list()).map((p) => p.cidr),
      ['10.1.0.0/16'],
    );
    await writeResources(kv, parseManifest(pool('a', '  cidr: 10.1.0.0/16\n  disabled: true\n')), 'replace');
    assert.equal((await new Pools(kv, 0).get('10.1.0.0/16')).disabled, true);
  });

  test('a pool overlapping another, or changing its block size, is refused', async () => {
    const kv = new MemoryKV();
    await writeResources(kv, parseManifest(pool('a', '  cidr: 10.1.0.0/16\n')), 'apply');
    await assert.rejects(writeResources(kv, parseManifest(pool('b', '  cidr: 10.1.4.0/24\n')), 'apply'), /overlaps pool 10\.1\.0\.0\/16/);
    await assert.rejects(
      writeResources(kv, parseManifest(pool('a', '  cidr: 10.1.0.0/16\n  blockSize: 30\n')), 'apply'),
      /field spec\.blockSize: .*cannot change/,
    );
    await assert.rejects(
      writeResources(kv, parseManifest(pool('c', '  cidr: 10.3.0.0/16\n  blockSize: 8\n')), 'apply'),
      /field spec\.blockSize: 8 is out of range/,
    );
  });

  test('delete removes every resource or none', async () => {
    const kv = new MemoryKV();
    await writeResources(kv, parseManifest(`${pool('a', '  cidr: 10.1.0.0/16\n')}\n---\n${GNP}`), 'apply');
    await assert.rejects(
      deleteResources(kv, [
        { kind: 'GlobalNetworkPolicy', name: 'allow-web' },
        { kind: 'BGPPeer', name: 'nope' },
      ]),
      NotFoundError,
    );
    assert.ok(await kv.get(keys.policy('allow-web')));
    await deleteResources(kv, [
      { kind: 'GlobalNetworkPolicy', name: 'allow-web' },
      { kind: 'IPPool', name: 'a' },
    ]);
    assert.equal(await kv.get(keys.policy('allow-web')), undefined);
    assert.deepEqual(await new Pools(kv, 0).list(), []);
  });

  test('the short kind: Policy and a GlobalNetworkPolicy write the same record', async () => {
    const kv = new MemoryKV();
    await writeResources(kv, parseManifest('kind: Policy\nname: p\norder: 5\n'), 'apply');
    const [r] = await getResources(kv, 'GlobalNetworkPolicy', 'p');
    assert.deepEqual(r.spec, { order: 5, selector: 'all()', types: ['Ingress'] });
    assert.deepEqual(codecs.policy.decode((await kv.get(keys.policy('p')))!).types, ['ingress']);
  });
});

test("a short policy's network: reads back as a selector on the calico/network label that selects the same", () => {
  const [r] = parseManifest('kind: Policy\nname: p\ningress: [{action: allow, source: {network: "net1", selector: "a == \'b\'"}}]\n');
  const v3 = policyToV3(r.kind === 'GlobalNetworkPolicy' ? r.policy : (undefined as never));
  assert.deepEqual((v3.spec.ingress as Array<{ source: unknown }>)[0].source, { selector: "(a == 'b') && calico/network == 'net1'" });
  const [again] = parseManifest(JSON.stringify(v3));
  assert.ok(again.kind === 'GlobalNetworkPolicy' && again.policy.ingress[0].source?.selector);
});

describe('GlobalNetworkSet', () => {
  const gns = `${V}kind: GlobalNetworkSet\nmetadata:\n  name: partners\n  labels: {role: partner}\nspec:\n  nets: [192.0.2.7, 198.51.100.0/24, "2001:db8:0::/32", 198.51.100.0/24]\n`;

  test('apply stores its labels and canonical nets (a bare address as its /32 or /128); get reads it back as v3 that applies again', async () => {
    const kv = new MemoryKV();
    await writeResources(kv, parseManifest(gns), 'apply');
    assert.deepEqual(codecs.networkSet.decode((await kv.get(keys.networkSet('partners')))!), {
      name: 'partners',
      labels: { role: 'partner' },
      nets: ['192.0.2.7/32', '198.51.100.0/24', '2001:db8::/32'],
    });
    const got = await getResources(kv, kindOf('gns'), 'partners');
    assert.deepEqual(got[0], {
      apiVersion: 'projectcalico.org/v3',
      kind: 'GlobalNetworkSet',
      metadata: { name: 'partners', labels: { role: 'partner' } },
      spec: { nets: ['192.0.2.7/32', '198.51.100.0/24', '2001:db8::/32'] },
    });
    await writeResources(kv, parseManifest(JSON.stringify(got[0])), 'replace');
    await deleteResources(kv, [{ kind: 'GlobalNetworkSet', name: 'partners' }]);
    assert.equal(await kv.get(keys.networkSet('partners')), undefined);
    await assert.rejects(deleteResources(kv, [{ kind: 'GlobalNetworkSet', name: 'partners' }]), NotFoundError);
  });
});

describe('GlobalNetworkPolicy ICMP and notProtocol', () => {
  test('icmp, notICMP and notProtocol map onto the rule record and read back as given', () => {
    const text = `${V}kind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress:\n  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}, notICMP: {type: 3}}\n  - {action: Deny, notProtocol: TCP}\n  - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}\n`;
    const [r] = parseManifest(text);
    assert.ok(r.kind === 'GlobalNetworkPolicy');
    assert.deepEqual(r.policy.ingress, [
      { action: 'allow', protocol: 'icmp', icmp: { type: 8, code: 0 }, notICMP: { type: 3 } },
      { action: 'deny', notProtocol: 'tcp' },
      { action: 'allow', protocol: 'icmpv6', icmp: { type: 128 } },
    ]);
    assert.deepEqual(policyToV3(r.policy).spec.ingress, [
      { action: 'Allow', protocol: 'ICMP', icmp: { type: 8, code: 0 }, notICMP: { type: 3 } },
      { action: 'Deny', notProtocol: 'TCP' },
      { action: 'Allow', protocol: 'ICMPv6', icmp: { type: 128 } },
    ]);
  });
});
