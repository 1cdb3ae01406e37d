/** The settings file (lib/env-file.ts): systemd's EnvironmentFile= syntax, refusals, and precedence. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadHostConfig } from '../../lib/config';
import { parseEnvFile, readConfigFile, withConfigFile } from '../../lib/env-file';
import { ConfigError } from '../../lib/errors';

const F = '/etc/calico/calico.env';

describe('parseEnvFile', () => {
  test('reads KEY=VALUE lines, skipping comments and blank lines, trimming around keys and values', () => {
    const text = ['# settings', '; also a comment', '', '  ETCD_ENDPOINTS = https://10.0.0.1:2379  ', 'CALICO_NODENAME=host-1', 'EMPTY='].join('\n');
    assert.deepEqual(parseEnvFile(text, F), { ETCD_ENDPOINTS: 'https://10.0.0.1:2379', CALICO_NODENAME: 'host-1', EMPTY: '' });
  });

  test('takes single quotes literally and unescapes \\" \\\\ \\` \\$ inside double quotes', () => {
    const text = ["A='it has # and \\n'", 'B="say \\"hi\\" \\\\ \\$HOME \\x"', 'C="  kept  "', "D='multi", "line'"].join('\n');
    assert.deepEqual(parseEnvFile(text, F), { A: 'it has # and \\n', B: 'say "hi" \\ $HOME \\x', C: '  kept  ', D: 'multi\nline' });
  });

  test('keeps # after a value and quotes inside it, as systemd does', () => {
    assert.deepEqual(parseEnvFile('A=x # not a comment\nB=a"b"c\n', F), { A: 'x # not a comment', B: 'a"b"c' });
  });

  test('joins a line ending in a backslash with the next, and reads CRLF files', () => {
    assert.deepEqual(parseEnvFile('A=one\\\n two\r\nB=three\r\n', F), { A: 'one two', B: 'three' });
  });

  test('a later line for the same key wins', () => {
    assert.deepEqual(parseEnvFile('A=1\nA=2\n', F), { A: '2' });
  });

  const refused: Array<[string, number, RegExp]> = [
    ['A=1\njust words\n', 2, /"just words" has no "="/],
    ['A=1\n\nexport B=2\n', 3, /"export" is shell syntax .* write B=\.\.\./],
    ['9LIVES=1\n', 1, /"9LIVES" is not a variable name/],
    ['A=1\nB="open\nC=2\n', 2, /double quote opened here is never closed/],
    ["# ok\nB='open", 2, /single quote opened here is never closed/],
  ];
  for (const [text, line, why] of refused) {
    test(`refuses ${JSON.stringify(text)} naming the file and line ${line}`, () => {
      assert.throws(
        () => parseEnvFile(text, F),
        (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${F} line ${line}: `) && why.test(e.message),
      );
    });
  }
});

describe('the settings file and the environment', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-env-test-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };

  test('the environment overrides the file, and the file fills in what the environment leaves unset', () => {
    const file = write('a.env', 'CALICO_NODENAME=from-file\nCALICO_AS=65001\nCALICO_IPV6POOL_CIDR=fd00::/64\n');
    const cfg = loadHostConfig({ CALICO_CONFIG: file, CALICO_NODENAME: 'from-env', CALICO_IPV6POOL_CIDR: '' });
    assert.equal(cfg.nodeName, 'from-env');
    assert.equal(cfg.asn, 65001);
    assert.equal(cfg.ipv6Pool, undefined, 'set to empty in the environment: no IPv6 pool, whatever the file says');
  });

  test('a bad value in the file is refused naming the variable', () => {
    const file = write('b.env', 'CALICO_AS=lots\n');
    assert.throws(() => loadHostConfig({ CALICO_CONFIG: file }), /CALICO_AS="lots" is not valid/);
  });

  test('a file named by CALICO_CONFIG must exist; the default may be absent', () => {
    assert.throws(
      () => readConfigFile({ CALICO_CONFIG: path.join(dir, 'missing.env') }),
      (e: unknown) => e instanceof ConfigError && /cannot read the settings file .*missing\.env \(CALICO_CONFIG or --config\): ENOENT/.test(e.message),
    );
    assert.equal(readConfigFile({}, path.join(dir, 'absent.env')), undefined);
    const env = { CALICO_NODENAME: 'x' };
    if (!fs.existsSync('/etc/calico/calico.env')) assert.equal(withConfigFile(env), env);
  });

  test('the default file existing but unreadable is refused naming it', () => {
    assert.throws(
      () => readConfigFile({}, dir),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(`cannot read the settings file ${dir}: `),
    );
  });

  test('an unreadable file is refused naming it', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, () => {
    const file = write('c.env', 'A=1\n');
    fs.chmodSync(file, 0o000);
    assert.throws(
      () => readConfigFile({ CALICO_CONFIG: file }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(file) && /permission denied/.test(e.message),
    );
  });

  test('a directory given as the file is refused naming it', () => {
    assert.throws(
      () => readConfigFile({ CALICO_CONFIG: dir }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(dir) && /EISDIR/.test(e.message),
    );
  });
});
