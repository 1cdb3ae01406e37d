/** Policy files and their storage (policy/model.ts): parsing, defaults, field-naming errors, CRUD. */
import { describe, test } from 'node:test';
import { keys } from '../../lib/datastore/keys';
import assert from 'node:assert/strict';
import { MemoryKV } from '../../lib/datastore/memory';
import { BadRequestError, NotFoundError } from '../../lib/errors';
import { PolicySchema, type PolicyRecord, applyPolicies, getPolicy, listPolicies, normalise, parsePolicyFile, removePolicy } from '../../policy/model';

const bad = (re: RegExp) => (e: unknown) => e instanceof BadRequestError && re.test(e.message);
const json = (o: unknown) => JSON.stringify(o);
/** One policy with one ingress rule, as JSON text. */
const withRule = (rule: unknown) => json({ kind: 'Policy', name: 'p', ingress: [rule] });

describe('parsePolicyFile formats', () => {
  test('reads one YAML document and fills the defaults', () => {
    assert.deepEqual(parsePolicyFile('kind: Policy\nname: web\n'), [
      { name: 'web', order: 1000, selector: 'all()', types: ['ingress'], ingress: [], egress: [] },
    ]);
  });

  test('reads several YAML documents in order, skipping empty ones', () => {
    const text = '---\nkind: Policy\nname: a\n---\n# nothing here\n---\nkind: Policy\nname: b\norder: 5\n';
    assert.deepEqual(
      parsePolicyFile(text).map((p) => [p.name, p.order]),
      [
        ['a', 1000],
        ['b', 5],
      ],
    );
  });

  test('reads a YAML list', () => {
    assert.deepEqual(
      parsePolicyFile('- kind: Policy\n  name: a\n- kind: Policy\n  name: b\n').map((p) => p.name),
      ['a', 'b'],
    );
  });

  test('reads a JSON object and a JSON list, with blanks around them', () => {
    assert.deepEqual(
      parsePolicyFile(`\n  ${json({ kind: 'Policy', name: 'a' })}\n`).map((p) => p.name),
      ['a'],
    );
    assert.deepEqual(
      parsePolicyFile(
        json([
          { kind: 'Policy', name: 'a' },
          { kind: 'Policy', name: 'b' },
        ]),
      ).map((p) => p.name),
      ['a', 'b'],
    );
  });

  test('keeps rules as written, with numeric and string ports', () => {
    const rule = {
      action: 'allow',
      protocol: 'tcp',
      source: { selector: "role == 'web'", nets: ['10.0.0.0/8', 'fd00::/8'] },
      destination: { ports: [80, '8000:8080'], notPorts: ['9000'] },
    };
    const [p] = parsePolicyFile(
      json({ kind: 'Policy', name: 'p', order: 10.5, selector: 'has(db)', ingress: [rule], egress: [{ action: 'deny', protocol: 17 }] }),
    );
    assert.deepEqual(p, {
      name: 'p',
      order: 10.5,
      selector: 'has(db)',
      types: ['ingress', 'egress'],
      ingress: [rule],
      egress: [{ action: 'deny', protocol: 17 }],
    });
  });
});

describe('normalise', () => {
  test('defaults order to 1000 and selector to all()', () => {
    const p = normalise({ kind: 'Policy', name: 'x' });
    assert.equal(p.order, 1000);
    assert.equal(p.selector, 'all()');
  });

  test('derives types from the rules present, ingress when there are none', () => {
    const allow = { action: 'allow' as const };
    assert.deepEqual(normalise({ kind: 'Policy', name: 'x' }).types, ['ingress']);
    assert.deepEqual(normalise({ kind: 'Policy', name: 'x', ingress: [allow] }).types, ['ingress']);
    assert.deepEqual(normalise({ kind: 'Policy', name: 'x', egress: [allow] }).types, ['egress']);
    assert.deepEqual(normalise({ kind: 'Policy', name: 'x', ingress: [allow], egress: [allow] }).types, ['ingress', 'egress']);
    assert.deepEqual(normalise({ kind: 'Policy', name: 'x', ingress: [], egress: [] }).types, ['ingress']);
  });

  test('keeps explicit types, order 0 and an explicit selector', () => {
    const p = normalise({ kind: 'Policy', name: 'x', order: 0, selector: "a == 'b'", types: ['egress'], ingress: [{ action: 'allow' }] });
    assert.deepEqual([p.order, p.selector, p.types], [0, "a == 'b'", ['egress']]);
  });
});

describe('parsePolicyFile errors name the field', () => {
  test('names a bad action by its path', () => {
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'permit' })),
      bad(/^policy file: the policy \(p\), field ingress\.0\.action: .*"allow"\|"deny"\|"log"\|"pass"/),
    );
  });

  test('names the item and its name when the file holds several', () => {
    const text = json([
      { kind: 'Policy', name: 'a' },
      { kind: 'Policy', name: 'b', egress: [{ action: 'allow' }, { action: 'nope' }] },
    ]);
    assert.throws(() => parsePolicyFile(text, 'web.yaml'), bad(/^web\.yaml: item 2 \(b\), field egress\.1\.action: /));
  });

  test('names a bad selector, top-level or in a rule, with the position of the fault', () => {
    assert.throws(
      () => parsePolicyFile(json({ kind: 'Policy', name: 'p', selector: "role == 'db" })),
      bad(/field selector: is not a valid selector: .*unterminated string at position 8/),
    );
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', source: { notSelector: 'has(' } })),
      bad(/field ingress\.0\.source\.notSelector: is not a valid selector: .*at position 4/),
    );
  });

  test('names a bad CIDR in nets or notNets', () => {
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', source: { nets: ['10.0.0.0/8', '10.0.0.0/33'] } })),
      bad(/field ingress\.0\.source\.nets\.1: must be a CIDR like 10\.0\.0\.0\/8/),
    );
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', destination: { notNets: ['10.0.0.1'] } })),
      bad(/field ingress\.0\.destination\.notNets\.0: must be a CIDR/),
    );
  });

  test('refuses a port above 65535 naming the field', () => {
    for (const p of [65536, '65536', '80:65536'])
      assert.throws(
        () => parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [p] } })),
        bad(/field ingress\.0\.destination\.ports\.0: .*65535/),
      );
    assert.ok(parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [0, 65535, '1:65535'] } })));
  });

  test('refuses a malformed port or a range that does not go up', () => {
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: ['80-90'] } })),
      bad(/ports\.0: must be a port number or a range like "8000:8080"/),
    );
    assert.throws(() => parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [80.5] } })), bad(/ports\.0: /));
    for (const r of ['8080:8000', '8000:8000'])
      assert.throws(
        () => parsePolicyFile(withRule({ action: 'allow', protocol: 'udp', source: { notPorts: [r] } })),
        bad(/source\.notPorts\.0: a range goes from a lower port to a higher one/),
      );
  });

  test('refuses more than 15 ports, a range counting as two', () => {
    const fifteen = Array.from({ length: 15 }, (_, i) => 1000 + i);
    assert.ok(parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: fifteen } })));
    assert.ok(parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [...fifteen.slice(0, 13), '1:2'] } })));
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [...fifteen, 1] } })),
      bad(/destination\.ports: at most 15 ports/),
    );
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', protocol: 'tcp', destination: { ports: [...fifteen.slice(0, 14), '1:2'] } })),
      bad(/destination\.ports: at most 15 ports, a range counting as two/),
    );
  });

  test('refuses ports without protocol tcp, udp or sctp', () => {
    for (const protocol of [undefined, 'icmp', 'icmpv6', 6]) {
      assert.throws(
        () => parsePolicyFile(withRule({ action: 'allow', protocol, destination: { ports: [80] } })),
        bad(/field ingress\.0\.protocol: ports need protocol tcp, udp or sctp/),
      );
      assert.throws(() => parsePolicyFile(withRule({ action: 'allow', protocol, source: { notPorts: [80] } })), bad(/field ingress\.0\.protocol: ports need/));
    }
    for (const protocol of ['tcp', 'udp', 'sctp']) assert.ok(parsePolicyFile(withRule({ action: 'allow', protocol, destination: { ports: [80] } })));
  });

  test('refuses an unknown protocol name or number', () => {
    for (const protocol of ['gre', 0, 256]) assert.throws(() => parsePolicyFile(withRule({ action: 'allow', protocol })), bad(/field ingress\.0\.protocol: /));
  });

  test('refuses unknown fields at every level (strict)', () => {
    assert.throws(() => parsePolicyFile(json({ kind: 'Policy', name: 'p', spec: {} })), bad(/the policy \(p\): Unrecognized key: "spec"/));
    assert.throws(() => parsePolicyFile(withRule({ action: 'allow', dest: {} })), bad(/field ingress\.0: Unrecognized key: "dest"/));
    assert.throws(() => parsePolicyFile(withRule({ action: 'allow', source: { port: [80] } })), bad(/field ingress\.0\.source: Unrecognized key: "port"/));
  });

  test('refuses a name that is not a DNS label', () => {
    for (const name of ['Web', 'web_1', '-web', 'web-', '', 'a'.repeat(64), 7])
      assert.throws(() => parsePolicyFile(json({ kind: 'Policy', name })), bad(/field name: /));
    assert.ok(parsePolicyFile(json({ kind: 'Policy', name: 'a'.repeat(63) })));
  });

  test('refuses a wrong kind, empty types or a bad order', () => {
    assert.throws(() => parsePolicyFile(json({ kind: 'NetworkPolicy', name: 'p' })), bad(/field kind: /));
    assert.throws(() => parsePolicyFile(json({ name: 'p' })), bad(/field kind: /));
    assert.throws(() => parsePolicyFile(json({ kind: 'Policy', name: 'p', types: [] })), bad(/field types: /));
    assert.throws(() => parsePolicyFile(json({ kind: 'Policy', name: 'p', types: ['forward'] })), bad(/field types\.0: /));
    assert.throws(() => parsePolicyFile(json({ kind: 'Policy', name: 'p', order: '1' })), bad(/field order: /));
  });

  test('refuses a network name that no selector could quote', () => {
    assert.throws(
      () => parsePolicyFile(withRule({ action: 'allow', source: { network: `a'b"c` } })),
      bad(/field ingress\.0\.source\.network: cannot hold both/),
    );
    assert.throws(() => parsePolicyFile(withRule({ action: 'allow', source: { network: '' } })), bad(/field ingress\.0\.source\.network: /));
    assert.ok(parsePolicyFile(withRule({ action: 'allow', source: { network: "it's" } })));
  });

  test('refuses a document that is not an object', () => {
    assert.throws(() => parsePolicyFile('just text'), bad(/the policy: .*object/));
    assert.throws(() => parsePolicyFile('[1]'), bad(/the policy: .*object/));
  });

  test('refuses duplicate names across the file', () => {
    assert.throws(
      () => parsePolicyFile('kind: Policy\nname: a\n---\nkind: Policy\nname: b\n---\nkind: Policy\nname: a\n', 'f.yaml'),
      bad(/^f\.yaml: policy a appears twice$/),
    );
  });

  test('refuses a file that holds no policy', () => {
    for (const text of ['', '  \n', '# just a comment\n', '---\n---\n', '[]', 'null\n'])
      assert.throws(() => parsePolicyFile(text, 'f.yaml'), bad(/^f\.yaml holds no policy$/), JSON.stringify(text));
  });

  test('refuses more than 128 policies in one file and accepts 128', () => {
    const many = (n: number) => json(Array.from({ length: n }, (_, i) => ({ kind: 'Policy', name: `p${i}` })));
    assert.equal(parsePolicyFile(many(128)).length, 128);
    assert.throws(() => parsePolicyFile(many(129), 'big.json'), bad(/^big\.json holds 129 policies; apply at most 128 per file$/));
  });

  test('refuses invalid YAML and invalid JSON naming the file', () => {
    assert.throws(() => parsePolicyFile('kind: Policy\nname: [a\n', 'bad.yaml'), bad(/^bad\.yaml is neither valid YAML nor JSON: /));
    assert.throws(() => parsePolicyFile('{"kind": "Policy",}', 'bad.json'), bad(/^bad\.json is neither valid YAML nor JSON: /));
  });

  test('PolicySchema alone accepts a full policy and refuses a bad one', () => {
    assert.equal(
      PolicySchema.safeParse({ kind: 'Policy', name: 'p', types: ['ingress', 'egress'], ingress: [{ action: 'log' }], egress: [{ action: 'pass' }] }).success,
      true,
    );
    const r = PolicySchema.safeParse({ kind: 'Policy', name: 'p', egress: [{ action: 'allow', destination: { nets: ['x'] } }] });
    assert.equal(r.success, false);
    assert.deepEqual(r.error?.issues[0].path, ['egress', 0, 'destination', 'nets', 0]);
  });
});

describe('policy storage', () => {
  const pol = (name: string, order = 1000): PolicyRecord => ({
    name,
    order,
    selector: 'all()',
    types: ['ingress'],
    ingress: [{ action: 'allow' }],
    egress: [],
  });

  test('applies a file in one write and lists by order, then name', async () => {
    const kv = new MemoryKV();
    let txns = 0;
    kv.beforeTxn = () => txns++;
    await applyPolicies(kv, [pol('b', 10), pol('a', 10), pol('c', 5), pol('z', 1000)]);
    assert.equal(txns, 1);
    assert.deepEqual(
      (await listPolicies(kv)).map((p) => p.name),
      ['c', 'a', 'b', 'z'],
    );
    assert.deepEqual(await getPolicy(kv, 'c'), pol('c', 5));
    assert.ok(await kv.get(keys.policy('c')));
  });

  test('replaces a policy applied again under the same name', async () => {
    const kv = new MemoryKV();
    await applyPolicies(kv, [pol('a', 1)]);
    await applyPolicies(kv, [pol('a', 2)]);
    assert.deepEqual(
      (await listPolicies(kv)).map((p) => [p.name, p.order]),
      [['a', 2]],
    );
  });

  test('lists nothing from an empty store', async () => {
    assert.deepEqual(await listPolicies(new MemoryKV()), []);
  });

  test('removes a policy and then no longer finds it', async () => {
    const kv = new MemoryKV();
    await applyPolicies(kv, [pol('a'), pol('b')]);
    await removePolicy(kv, 'a');
    assert.deepEqual(
      (await listPolicies(kv)).map((p) => p.name),
      ['b'],
    );
    await assert.rejects(getPolicy(kv, 'a'), (e: unknown) => e instanceof NotFoundError && /no policy a; see "calico policy ls"/.test(e.message));
  });

  test('get and rm of a missing policy are NotFoundError and change nothing', async () => {
    const kv = new MemoryKV();
    await applyPolicies(kv, [pol('a')]);
    await assert.rejects(getPolicy(kv, 'nope'), NotFoundError);
    await assert.rejects(removePolicy(kv, 'nope'), (e: unknown) => e instanceof NotFoundError && /no policy nope/.test(e.message));
    assert.deepEqual(
      (await listPolicies(kv)).map((p) => p.name),
      ['a'],
    );
  });

  test('reports a failed write as a BadRequestError asking to try again', async () => {
    const kv = new MemoryKV();
    kv.txn = async () => undefined;
    await assert.rejects(applyPolicies(kv, [pol('a')]), bad(/could not be written; try again/));
  });
});
