/**
 * Certificates for a test etcd served over TLS with client certificates, made with openssl in a
 * temp dir that destroy() removes. A second CA signs the "wrong" client certificate, and is
 * itself the wrong CA for a client to trust.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestPki {
  dir: string;
  /** The CA that signed the server's and the good client's certificates. */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed neither: trusting it must fail. */
  otherCa: string;
  /** A client certificate from otherCa: etcd must refuse it. */
  otherClientCert: string;
  otherClientKey: string;
  destroy(): void;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`]);
}

function issue(dir: string, ca: string, name: string, usage: string, san?: string): void {
  const ext = ['-addext', 'basicConstraints=critical,CA:FALSE', '-addext', `extendedKeyUsage=${usage}`, ...(san ? ['-addext', `subjectAltName=${san}`] : [])];
  openssl(dir, ['req', '-new', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, ...ext, '-subj', `/CN=${name}`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-copy_extensions',
    'copyall',
    '-out',
    `${name}.crt`,
  ]);
}

export function makeTestPki(): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-test-pki-'));
  try {
    makeCa(dir, 'ca');
    makeCa(dir, 'other-ca');
    issue(dir, 'ca', 'server', 'serverAuth', 'IP:127.0.0.1,DNS:localhost');
    issue(dir, 'ca', 'client', 'clientAuth');
    issue(dir, 'other-ca', 'other-client', 'clientAuth');
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const f = (n: string) => path.join(dir, n);
  return {
    dir,
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    otherCa: f('other-ca.crt'),
    otherClientCert: f('other-client.crt'),
    otherClientKey: f('other-client.key'),
    destroy: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
