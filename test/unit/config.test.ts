/** Configuration from the environment (lib/config.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { embeddedEndpointFile, loadConfig } from '../../lib/config';
import { BadRequestError } from '../../lib/errors';

/** Asserts loadConfig(env) throws a BadRequestError that names `variable`. */
function refuses(env: Record<string, string>, variable: string, extra?: RegExp) {
  assert.throws(
    () => loadConfig(env),
    (e: unknown) => {
      assert.ok(e instanceof BadRequestError, `expected BadRequestError, got ${String(e)}`);
      assert.ok(e.message.startsWith(`${variable}=`), e.message);
      if (extra) assert.match(e.message, extra);
      return true;
    },
    `${variable} ${JSON.stringify(env)}`,
  );
}

describe('loadConfig defaults', () => {
  test('match the documented table', () => {
    const cfg = loadConfig({});
    assert.equal(cfg.etcdEndpoints, undefined);
    assert.equal(cfg.asn, undefined, 'unset: the global default AS in etcd applies');
    assert.equal(cfg.pluginDir, '/run/docker/plugins');
    assert.equal(cfg.dataDir, '/var/lib/calico');
    assert.equal(cfg.ipv4Pool, '192.168.0.0/16');
    assert.equal(cfg.ipv6Pool, 'fd80:24e2:f998:72d6::/64');
    assert.equal(cfg.logLevel, 'info');
    assert.equal(cfg.dockerHost, 'unix:///var/run/docker.sock');
    assert.equal(cfg.etcdBinary, 'etcd');
    assert.equal(cfg.ip, undefined);
    assert.equal(cfg.mtu, undefined);
    assert.equal(cfg.nodeName, os.hostname());
    assert.equal(cfg.policy, true);
    assert.equal(cfg.firewall, 'auto', 'nftables where the kernel and nft support it');
    for (const k of ['etcdCaFile', 'etcdCertFile', 'etcdKeyFile', 'etcdUsername', 'etcdPassword'] as const) assert.equal(cfg[k], undefined);
  });

  test('treat empty and blank values as unset', () => {
    const cfg = loadConfig({ ETCD_ENDPOINTS: '', CALICO_AS: '  ', CALICO_LOG_LEVEL: '', CALICO_NODENAME: ' ', CALICO_MTU: '' });
    assert.equal(cfg.etcdEndpoints, undefined);
    assert.equal(cfg.asn, undefined);
    assert.equal(cfg.logLevel, 'info');
    assert.equal(cfg.nodeName, os.hostname());
    assert.equal(cfg.mtu, undefined);
  });

  test('an empty CALICO_IPV6POOL_CIDR disables the default IPv6 pool', () => {
    const cfg = loadConfig({ CALICO_IPV6POOL_CIDR: '' });
    assert.equal(cfg.ipv6Pool, undefined);
    assert.equal(cfg.ipv4Pool, '192.168.0.0/16');
    assert.equal(loadConfig({ CALICO_IPV4POOL_CIDR: '' }).ipv4Pool, undefined);
  });
});

describe('loadConfig values', () => {
  test('reads every variable', () => {
    const cfg = loadConfig({
      ETCD_ENDPOINTS: 'https://10.0.0.1:2379, https://10.0.0.2:2379/',
      ETCD_CA_CERT_FILE: '/ca.pem',
      ETCD_CERT_FILE: '/cert.pem',
      ETCD_KEY_FILE: '/key.pem',
      ETCD_USERNAME: 'u',
      ETCD_PASSWORD: 'p',
      CALICO_NODENAME: 'node-1.example',
      CALICO_IP: '172.31.0.1',
      CALICO_AS: '65001',
      CALICO_PLUGIN_DIR: '/tmp/plugins/',
      CALICO_DATA_DIR: '/tmp/data',
      CALICO_IPV4POOL_CIDR: '10.20.0.0/16',
      CALICO_IPV6POOL_CIDR: 'fd00:1::/64',
      CALICO_MTU: '1400',
      CALICO_LOG_LEVEL: 'DEBUG',
      DOCKER_HOST: 'tcp://127.0.0.1:2375',
      CALICO_ETCD_BINARY: '/usr/local/bin/etcd',
    });
    assert.deepEqual(cfg.etcdEndpoints, ['https://10.0.0.1:2379', 'https://10.0.0.2:2379/']);
    assert.equal(cfg.etcdCaFile, '/ca.pem');
    assert.equal(cfg.etcdCertFile, '/cert.pem');
    assert.equal(cfg.etcdKeyFile, '/key.pem');
    assert.equal(cfg.etcdUsername, 'u');
    assert.equal(cfg.etcdPassword, 'p');
    assert.equal(cfg.nodeName, 'node-1.example');
    assert.equal(cfg.ip, '172.31.0.1');
    assert.equal(cfg.asn, 65001);
    assert.equal(cfg.pluginDir, '/tmp/plugins');
    assert.equal(cfg.dataDir, '/tmp/data');
    assert.equal(cfg.ipv4Pool, '10.20.0.0/16');
    assert.equal(cfg.ipv6Pool, 'fd00:1::/64');
    assert.equal(cfg.mtu, 1400);
    assert.equal(cfg.logLevel, 'debug');
    assert.equal(cfg.dockerHost, 'tcp://127.0.0.1:2375');
    assert.equal(cfg.etcdBinary, '/usr/local/bin/etcd');
    assert.equal(embeddedEndpointFile(cfg), '/tmp/data/etcd.endpoint');
  });

  test('accepts the AS number limits', () => {
    assert.equal(loadConfig({ CALICO_AS: '1' }).asn, 1);
    assert.equal(loadConfig({ CALICO_AS: '4294967295' }).asn, 4294967295);
  });
});

describe('loadConfig refuses bad values, naming the variable', () => {
  for (const v of ['10.0.0.1:2379', 'etcd', 'ftp://10.0.0.1:2379', 'http://', 'http://a:1/path', 'http://a:1,b:2']) {
    test(`ETCD_ENDPOINTS=${v}`, () => refuses({ ETCD_ENDPOINTS: v }, 'ETCD_ENDPOINTS', /http\(s\):\/\/host:port URL/));
  }
  test('ETCD_ENDPOINTS mixing http and https', () => refuses({ ETCD_ENDPOINTS: 'http://a:2379,https://b:2379' }, 'ETCD_ENDPOINTS', /mixes http and https/));

  for (const v of ['0', '4294967296', '-1', '64512.5', 'AS64512', '1e3']) {
    test(`CALICO_AS=${v}`, () => refuses({ CALICO_AS: v }, 'CALICO_AS', /1 to 4294967295/));
  }
  for (const v of ['67', '65536', 'jumbo', '1500.0', '-1']) {
    test(`CALICO_MTU=${v}`, () => refuses({ CALICO_MTU: v }, 'CALICO_MTU', /68 to 65535/));
  }
  for (const v of ['verbose', 'trace', 'warning']) {
    test(`CALICO_LOG_LEVEL=${v}`, () => refuses({ CALICO_LOG_LEVEL: v }, 'CALICO_LOG_LEVEL', /error, warn, info or debug/));
  }
  for (const v of ['fd00::1', 'not-an-ip', '10.0.0.0/8', '300.1.1.1']) {
    test(`CALICO_IP=${v}`, () => refuses({ CALICO_IP: v }, 'CALICO_IP', /IPv4 address/));
  }
  for (const v of ['a/b', '-leading', 'has space', 'trailing-', 'x'.repeat(254)]) {
    test(`CALICO_NODENAME=${v.length > 20 ? 'a 254-character name' : v}`, () => refuses({ CALICO_NODENAME: v }, 'CALICO_NODENAME'));
  }
  test('CALICO_IPV4POOL_CIDR of the wrong family', () => refuses({ CALICO_IPV4POOL_CIDR: 'fd00::/64' }, 'CALICO_IPV4POOL_CIDR', /IPv4 network/));
  test('CALICO_IPV6POOL_CIDR of the wrong family', () => refuses({ CALICO_IPV6POOL_CIDR: '10.0.0.0/8' }, 'CALICO_IPV6POOL_CIDR', /IPv6 network/));
  test('a pool CIDR with host bits', () => refuses({ CALICO_IPV4POOL_CIDR: '10.0.0.1/8' }, 'CALICO_IPV4POOL_CIDR', /host bits/));
  test('a pool CIDR that is not a CIDR', () => refuses({ CALICO_IPV6POOL_CIDR: 'fd00::' }, 'CALICO_IPV6POOL_CIDR'));
  test('an unknown firewall backend', () => refuses({ CALICO_FIREWALL: 'pf' }, 'CALICO_FIREWALL', /auto, nftables or iptables/));
});

describe('CALICO_FIREWALL', () => {
  for (const v of ['auto', 'nftables', 'iptables', 'NFTables'] as const)
    test(`takes ${v}`, () => assert.equal(loadConfig({ CALICO_FIREWALL: v }).firewall, v.toLowerCase()));
});

describe('etcd TLS and authentication settings', () => {
  test('a client certificate without its key, or a key without its certificate, is refused naming both', () => {
    refuses({ ETCD_ENDPOINTS: 'https://10.0.0.1:2379', ETCD_CERT_FILE: '/c.pem' }, 'ETCD_CERT_FILE', /ETCD_KEY_FILE is not set/);
    refuses({ ETCD_ENDPOINTS: 'https://10.0.0.1:2379', ETCD_KEY_FILE: '/k.pem' }, 'ETCD_KEY_FILE', /ETCD_CERT_FILE is not set/);
  });

  test('a password without a user is refused without echoing the password', () => {
    assert.throws(
      () => loadConfig({ ETCD_PASSWORD: 'hunter2' }),
      (e: unknown) => e instanceof BadRequestError && /ETCD_USERNAME is not set/.test(e.message) && !e.message.includes('hunter2'),
    );
  });

  test('TLS files with http:// endpoints are refused, https:// with all of them accepted', () => {
    refuses({ ETCD_ENDPOINTS: 'http://10.0.0.1:2379', ETCD_CA_CERT_FILE: '/ca.pem' }, 'ETCD_ENDPOINTS', /use https:\/\//);
    const cfg = loadConfig({
      ETCD_ENDPOINTS: 'https://10.0.0.1:2379',
      ETCD_CA_CERT_FILE: '/ca.pem',
      ETCD_CERT_FILE: '/c.pem',
      ETCD_KEY_FILE: '/k.pem',
      ETCD_USERNAME: 'u',
      ETCD_PASSWORD: 'p',
    });
    assert.deepEqual([cfg.etcdCaFile, cfg.etcdCertFile, cfg.etcdKeyFile, cfg.etcdUsername, cfg.etcdPassword], ['/ca.pem', '/c.pem', '/k.pem', 'u', 'p']);
  });
});

describe('CALICO_METRICS_ADDR', () => {
  test('is off when unset', () => {
    assert.equal(loadConfig({}).metricsAddr, undefined);
  });

  test('takes an IPv4 address, a bracketed IPv6 address or a host name with a port', () => {
    assert.deepEqual(loadConfig({ CALICO_METRICS_ADDR: '127.0.0.1:9091' }).metricsAddr, { host: '127.0.0.1', port: 9091, text: '127.0.0.1:9091' });
    assert.deepEqual(loadConfig({ CALICO_METRICS_ADDR: '[::1]:9091' }).metricsAddr, { host: '::1', port: 9091, text: '[::1]:9091' });
    assert.equal(loadConfig({ CALICO_METRICS_ADDR: 'localhost:80' }).metricsAddr?.host, 'localhost');
  });

  test('refuses a malformed address, naming the variable', () => {
    for (const bad of ['9091', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '1.2.3:80', '300.1.1.1:80', '[zz]:80', '::1:80', 'http://x:80', 'a b:80']) {
      refuses({ CALICO_METRICS_ADDR: bad }, 'CALICO_METRICS_ADDR', /HOST:PORT|address|host name/);
    }
  });
});
