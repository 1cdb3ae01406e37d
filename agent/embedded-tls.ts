/**
 * The embedded etcd's credentials. Loopback is shared by every local user, so the embedded etcd
 * serves only TLS clients holding a certificate from its own CA: made with openssl at first
 * start in CALICO_DATA_DIR/etcd-tls (directory 0700, files 0600, owned by root), which only root
 * can read. `calico` run as root finds the same files there (cli/connect.ts).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { UnavailableError, errorMessage } from '../lib/errors';

const run = promisify(execFile);

export interface EmbeddedTls {
  caFile: string;
  /** The member's certificate and key, for its client and peer listeners. */
  serverCertFile: string;
  serverKeyFile: string;
  /** What `calico node` and the CLI present. */
  certFile: string;
  keyFile: string;
}

export function embeddedTlsDir(dataDir: string): string {
  return path.join(dataDir, 'etcd-tls');
}

export function embeddedTlsFiles(dataDir: string): EmbeddedTls {
  const d = embeddedTlsDir(dataDir);
  return {
    caFile: path.join(d, 'ca.crt'),
    serverCertFile: path.join(d, 'server.crt'),
    serverKeyFile: path.join(d, 'server.key'),
    certFile: path.join(d, 'client.crt'),
    keyFile: path.join(d, 'client.key'),
  };
}

/** The files etcd3's client takes, read now (an unreadable file fails here, with its name). */
export function readCredentials(t: EmbeddedTls): { rootCertificate: Buffer; certChain: Buffer; privateKey: Buffer } {
  return { rootCertificate: fs.readFileSync(t.caFile), certChain: fs.readFileSync(t.certFile), privateKey: fs.readFileSync(t.keyFile) };
}

// P-256 keys: quick to make and accepted by etcd's Go TLS and by Node's.
const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
// No operator renews these: valid for a century.
const DAYS = '36500';

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (err) {
    throw new UnavailableError(
      `could not make the embedded etcd's certificates with openssl (${errorMessage(err)}): install openssl (Debian: openssl), or set ETCD_ENDPOINTS`,
    );
  }
}

/**
 * Makes the CA, the member's and the client's certificates unless they exist. They are made in
 * a private temporary directory and renamed into place, so a start that is interrupted leaves
 * either a complete set or none.
 */
export async function ensureEmbeddedTls(dataDir: string): Promise<EmbeddedTls> {
  const files = embeddedTlsFiles(dataDir);
  const dir = embeddedTlsDir(dataDir);
  const all = [files.caFile, files.serverCertFile, files.serverKeyFile, files.certFile, files.keyFile];
  if (all.every((f) => fs.existsSync(f))) {
    // Tighten what an operator's copy or restore may have loosened.
    fs.chmodSync(dir, 0o700);
    for (const f of all) fs.chmodSync(f, 0o600);
    return files;
  }
  const tmp = `${dir}.new`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
  fs.chmodSync(tmp, 0o700);
  const ext = (name: string, usage: string, san?: string) => [
    '-addext',
    'basicConstraints=critical,CA:FALSE',
    '-addext',
    `extendedKeyUsage=${usage}`,
    ...(san ? ['-addext', `subjectAltName=${san}`] : []),
    '-subj',
    `/CN=${name}`,
  ];
  const sign = (name: string) => [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    DAYS,
    '-copy_extensions',
    'copyall',
    '-out',
    `${name}.crt`,
  ];
  try {
    await openssl(['req', '-x509', ...KEY, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', DAYS, '-subj', '/CN=calico embedded etcd CA'], tmp);
    // The member's certificate serves its client and peer listeners (a peer is also a client).
    await openssl(
      [
        'req',
        '-new',
        ...KEY,
        '-keyout',
        'server.key',
        '-out',
        'server.csr',
        ...ext('calico-embedded-etcd', 'serverAuth,clientAuth', 'IP:127.0.0.1,DNS:localhost'),
      ],
      tmp,
    );
    await openssl(sign('server'), tmp);
    await openssl(['req', '-new', ...KEY, '-keyout', 'client.key', '-out', 'client.csr', ...ext('root', 'clientAuth')], tmp);
    await openssl(sign('client'), tmp);
    for (const f of fs.readdirSync(tmp)) {
      if (f.endsWith('.csr')) fs.rmSync(path.join(tmp, f));
      else fs.chmodSync(path.join(tmp, f), 0o600);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return files;
}
