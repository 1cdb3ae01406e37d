/** etcd failures caused by this host's settings (lib/datastore/etcd-misconfig.ts), from the messages grpc and etcd really give. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyFault } from '../../lib/datastore/etcd-members';
import { misconfiguration } from '../../lib/datastore/etcd-misconfig';
import { ConfigError } from '../../lib/errors';

const s = { endpoints: ['https://127.0.0.1:2379'], caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem', username: 'calico' };
const cases: Array<[string, string, RegExp]> = [
  [
    'a CA that did not sign etcd',
    '14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ',
    /ETCD_CA_CERT_FILE \(\/ca\.pem\)/,
  ],
  [
    'a client certificate etcd refuses',
    '14 UNAVAILABLE: No connection established. Last error: 80:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:rec_layer_s3.c:1601:SSL alert number 42\n (2026-12-03T08:19:14.200Z). Resolution note: ',
    /set ETCD_CERT_FILE and ETCD_KEY_FILE/,
  ],
  ['a wrong password', '3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password', /check ETCD_USERNAME and ETCD_PASSWORD/],
  [
    'a user without rights',
    '7 PERMISSION_DENIED: etcdserver: permission denied',
    /user "calico" \(ETCD_USERNAME\).*readwrite on the prefix \/calico-libnetwork\//,
  ],
  ['no user where etcd needs one', '3 INVALID_ARGUMENT: etcdserver: user name is empty', /set ETCD_USERNAME and ETCD_PASSWORD/],
  ['TLS to a plain HTTP port', 'Last error: 80:error:0A00010B:SSL routines:ssl3_get_record:wrong version number', /use http:\/\/ in ETCD_ENDPOINTS/],
];
for (const [what, message, advice] of cases) {
  test(`${what} is a configuration fault whose message names the setting to fix`, () => {
    assert.equal(classifyFault(new Error(message)), 'config');
    const e = misconfiguration(new Error(message), s);
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^etcd at https:\/\/127\.0\.0\.1:2379: /);
    assert.match(e.message, advice);
    assert.doesNotMatch(e.message, /Resolution note|\(2026-/);
  });
}

test('a member that is down, a file not found and a compaction are not configuration faults', () => {
  assert.equal(classifyFault(new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379')), 'member');
  assert.equal(misconfiguration(new Error('ENOENT: no such file or directory'), s), undefined);
  assert.equal(classifyFault(new Error('etcdserver: mvcc: required revision has been compacted')), 'final');
});
