/**
 * Configuration from the environment (docs/configuration.md's table). Parsed once at start; a bad value
 * stops `calico node` with a message naming the variable rather than failing later.
 */
import os from 'node:os';
import path from 'node:path';
import { BadRequestError } from './errors';
import { withConfigFile } from './env-file';
import { parseCidr, parseIP } from './ip';
import { LOG_FORMATS, type LogFormatSetting, type LogLevel, isLogFormatSetting, isLogLevel } from './log';
import { validHostName } from './datastore/keys';
import { type PoolSettings, checkSettings, parseBool, parseEncapMode } from '../ipam/pool-settings';
import { ASN_RANGE, MTU_MAX, MTU_MIN, validAsn, validMtu } from './limits';

export interface Config {
  /** Unset: `calico node` runs a private etcd. */
  etcdEndpoints?: string[];
  etcdCaFile?: string;
  etcdCertFile?: string;
  etcdKeyFile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
  nodeName: string;
  ip?: string;
  /** CALICO_IP6: this host's IPv6 address, the next hop it gives for IPv6 routes over BGP. */
  ip6?: string;
  /** CALICO_AS; unset: the host uses the global default AS kept in etcd (64512 unless changed). */
  asn?: number;
  pluginDir: string;
  dataDir: string;
  ipv4Pool?: string;
  ipv6Pool?: string;
  /** Settings of the default pools, from CALICO_IPV4POOL_NAT_OUTGOING, _VXLAN, _IPIP (and IPv6's). */
  ipv4PoolSettings: PoolSettings;
  ipv6PoolSettings: PoolSettings;
  mtu?: number;
  logLevel: LogLevel;
  /** CALICO_LOG_FORMAT: `auto` (text on a terminal, JSON otherwise), `text` or `json`. */
  logFormat: LogFormatSetting;
  dockerHost: string;
  /** Binary for the embedded etcd. */
  etcdBinary: string;
  /** `legacy`: calico.sock + calico-ipam.sock; `managed`: one calico.sock serving both. */
  pluginMode: 'legacy' | 'managed';
  /** Where sysctls are written; a managed plugin sees the host's under /host/proc/sys. */
  procSys: string;
  /** Reconciliation period, and how old an unattached allocation or endpoint must be to repair. */
  reconcileIntervalMs: number;
  reconcileGraceMs: number;
  /** TTL of this host's liveness key, seconds. */
  livenessTtl: number;
  /** `managed`: calico node runs BIRD; `external`: another BIRD uses our configuration; `off`: no BGP. */
  bird: 'managed' | 'external' | 'off';
  /** Enforce policy (on by default). */
  policy: boolean;
  /** Which firewall enforces it: `auto` picks nftables where the kernel and `nft` support it. */
  firewall: 'auto' | 'nftables' | 'iptables';
  /** What containers may send to their own host beyond replies. */
  endpointToHost: 'drop' | 'accept';
  /** CALICO_METRICS_ADDR: where /metrics, /healthz and /readyz are served over HTTP; unset: not served. */
  metricsAddr?: MetricsAddr;
}

export interface MetricsAddr {
  host: string;
  port: number;
  /** As given, for messages. */
  text: string;
}

/** `HOST:PORT` with HOST an IPv4 address, a bracketed IPv6 address or a host name. */
export function parseMetricsAddr(text: string): MetricsAddr {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) fail('CALICO_METRICS_ADDR', text, 'give HOST:PORT, like 127.0.0.1:9091 or [::1]:9091, with a port from 1 to 65535');
  const host = m[1] ?? m[2];
  if (m[1] !== undefined) {
    let ok = false;
    try {
      ok = parseIP(host).family === 6;
    } catch {
      ok = false;
    }
    if (!ok) fail('CALICO_METRICS_ADDR', text, `"${host}" in brackets is not an IPv6 address`);
  } else if (/^[\d.]+$/.test(host)) {
    try {
      parseIP(host);
    } catch {
      fail('CALICO_METRICS_ADDR', text, `"${host}" is not an IPv4 address`);
    }
  } else if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$/.test(host)) {
    fail('CALICO_METRICS_ADDR', text, `"${host}" is not a host name or address`);
  }
  return { host, port, text };
}

type Env = Record<string, string | undefined>;

function fail(variable: string, value: string, what: string): never {
  throw new BadRequestError(`${variable}="${value}" is not valid: ${what}`);
}

function nonEmpty(env: Env, k: string): string | undefined {
  const v = env[k]?.trim();
  return v ? v : undefined;
}

/** As Calico's node: the IPv4 default pool NATs outgoing traffic unless told not to; IPv6's does not. */
function defaultPoolSettings(env: Env, family: 4 | 6): PoolSettings {
  const v = (k: string) => nonEmpty(env, `CALICO_IPV${family}POOL_${k}`);
  const asFail = <T>(k: string, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      return fail(`CALICO_IPV${family}POOL_${k}`, v(k) ?? '', (err as Error).message.replace(/^.*?: /, ''));
    }
  };
  const nat = v('NAT_OUTGOING');
  const vx = v('VXLAN');
  const ipip = v('IPIP');
  const s: PoolSettings = {
    natOutgoing: nat === undefined ? family === 4 : asFail('NAT_OUTGOING', () => parseBool('nat', nat)),
    vxlanMode: vx === undefined ? 'Never' : asFail('VXLAN', () => parseEncapMode('mode', vx)),
    ipipMode: ipip === undefined ? 'Never' : asFail('IPIP', () => parseEncapMode('mode', ipip)),
  };
  checkSettings(family, s, { vxlanMode: `CALICO_IPV${family}POOL_VXLAN`, ipipMode: `CALICO_IPV${family}POOL_IPIP` });
  return s;
}

export function loadConfig(env: Env = process.env): Config {
  const endpoints = nonEmpty(env, 'ETCD_ENDPOINTS')
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of endpoints ?? []) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(e)) fail('ETCD_ENDPOINTS', env.ETCD_ENDPOINTS ?? '', `"${e}" is not an http(s)://host:port URL`);
  }
  if (endpoints && new Set(endpoints.map((e) => e.split(':')[0])).size > 1) {
    fail('ETCD_ENDPOINTS', env.ETCD_ENDPOINTS ?? '', 'mixes http and https endpoints');
  }
  const nodeName = nonEmpty(env, 'CALICO_NODENAME') ?? os.hostname();
  if (!validHostName(nodeName)) fail('CALICO_NODENAME', nodeName, 'use letters, digits, dots, dashes and underscores');
  const ip = nonEmpty(env, 'CALICO_IP');
  if (ip) {
    try {
      if (parseIP(ip).family !== 4) throw new Error('not IPv4');
    } catch {
      fail('CALICO_IP', ip, "give this host's IPv4 address, like 172.31.0.1");
    }
  }
  const asText = nonEmpty(env, 'CALICO_AS');
  const asn = asText === undefined ? undefined : Number(asText);
  if (asText !== undefined && (!/^\d+$/.test(asText) || !validAsn(asn!))) fail('CALICO_AS', asText, `give an AS number from ${ASN_RANGE}`);
  const pool = (k: string, def: string, family: 4 | 6): string | undefined => {
    const v = env[k] === undefined ? def : env[k].trim();
    if (!v) return undefined; // set to empty: create no default pool of this family
    try {
      const c = parseCidr(v, k, true);
      if (c.family !== family) throw new Error(`not IPv${family}`);
    } catch (err) {
      fail(k, v, `give an IPv${family} network like ${def} (${(err as Error).message})`);
    }
    return v;
  };
  const mtuText = nonEmpty(env, 'CALICO_MTU');
  let mtu: number | undefined;
  if (mtuText) {
    mtu = Number(mtuText);
    if (!/^\d+$/.test(mtuText) || !validMtu(mtu)) fail('CALICO_MTU', mtuText, `give a whole number from ${MTU_MIN} to ${MTU_MAX}`);
  }
  const level = (nonEmpty(env, 'CALICO_LOG_LEVEL') ?? 'info').toLowerCase();
  if (!isLogLevel(level)) fail('CALICO_LOG_LEVEL', level, 'use error, warn, info or debug');
  const logFormat = (nonEmpty(env, 'CALICO_LOG_FORMAT') ?? 'auto').toLowerCase();
  if (!isLogFormatSetting(logFormat)) fail('CALICO_LOG_FORMAT', logFormat, `use ${LOG_FORMATS.join(', ')}`);
  const cfg: Config = {
    nodeName,
    pluginDir: path.resolve(nonEmpty(env, 'CALICO_PLUGIN_DIR') ?? '/run/docker/plugins'),
    dataDir: path.resolve(nonEmpty(env, 'CALICO_DATA_DIR') ?? '/var/lib/calico'),
    logLevel: level,
    logFormat,
    dockerHost: nonEmpty(env, 'DOCKER_HOST') ?? 'unix:///var/run/docker.sock',
    etcdBinary: nonEmpty(env, 'CALICO_ETCD_BINARY') ?? 'etcd',
    pluginMode: 'legacy',
    procSys: path.resolve(nonEmpty(env, 'CALICO_PROC_SYS') ?? '/proc/sys'),
    reconcileIntervalMs: 30_000,
    reconcileGraceMs: 60_000,
    livenessTtl: 30,
    bird: 'managed',
    policy: true,
    firewall: 'auto',
    ipv4PoolSettings: defaultPoolSettings(env, 4),
    ipv6PoolSettings: defaultPoolSettings(env, 6),
    endpointToHost: 'drop',
  };
  const pol = (nonEmpty(env, 'CALICO_POLICY') ?? 'on').toLowerCase();
  if (pol !== 'on' && pol !== 'off') fail('CALICO_POLICY', pol, 'use on or off');
  cfg.policy = pol === 'on';
  const fw = (nonEmpty(env, 'CALICO_FIREWALL') ?? 'auto').toLowerCase();
  if (fw !== 'auto' && fw !== 'nftables' && fw !== 'iptables') fail('CALICO_FIREWALL', fw, 'use auto, nftables or iptables');
  cfg.firewall = fw;
  const e2h = (nonEmpty(env, 'CALICO_ENDPOINT_TO_HOST') ?? 'drop').toLowerCase();
  if (e2h !== 'drop' && e2h !== 'accept') fail('CALICO_ENDPOINT_TO_HOST', e2h, 'use drop or accept');
  cfg.endpointToHost = e2h;
  const bird = (nonEmpty(env, 'CALICO_BIRD') ?? 'managed').toLowerCase();
  if (bird !== 'managed' && bird !== 'external' && bird !== 'off') fail('CALICO_BIRD', bird, 'use managed, external or off');
  cfg.bird = bird;
  const ttl = nonEmpty(env, 'CALICO_LIVENESS_TTL') ?? '30';
  if (!/^\d+$/.test(ttl) || Number(ttl) < 2 || Number(ttl) > 3600) fail('CALICO_LIVENESS_TTL', ttl, 'give whole seconds from 2 to 3600');
  cfg.livenessTtl = Number(ttl);
  for (const [k, def, field] of [
    ['CALICO_RECONCILE_INTERVAL', 30, 'reconcileIntervalMs'],
    ['CALICO_RECONCILE_GRACE', 60, 'reconcileGraceMs'],
  ] as const) {
    const t = nonEmpty(env, k) ?? String(def);
    if (!/^\d+(\.\d+)?$/.test(t) || Number(t) <= 0) fail(k, t, 'give a number of seconds greater than 0');
    cfg[field] = Number(t) * 1000;
  }
  const mode = (nonEmpty(env, 'CALICO_PLUGIN_MODE') ?? 'legacy').toLowerCase();
  if (mode !== 'legacy' && mode !== 'managed') fail('CALICO_PLUGIN_MODE', mode, 'use legacy or managed');
  cfg.pluginMode = mode;
  const v4 = pool('CALICO_IPV4POOL_CIDR', '192.168.0.0/16', 4);
  const v6 = pool('CALICO_IPV6POOL_CIDR', 'fd80:24e2:f998:72d6::/64', 6);
  if (v4) cfg.ipv4Pool = v4;
  if (v6) cfg.ipv6Pool = v6;
  if (endpoints) cfg.etcdEndpoints = endpoints;
  if (asn !== undefined) cfg.asn = asn;
  if (ip) cfg.ip = ip;
  const ip6 = nonEmpty(env, 'CALICO_IP6');
  if (ip6) {
    let ok = false;
    try {
      ok = parseIP(ip6).family === 6;
    } catch {
      ok = false;
    }
    if (!ok) fail('CALICO_IP6', ip6, "give this host's global IPv6 address, like fd31::1");
    cfg.ip6 = ip6;
  }
  if (mtu) cfg.mtu = mtu;
  const opt = (k: string) => nonEmpty(env, k);
  const metrics = opt('CALICO_METRICS_ADDR');
  if (metrics) cfg.metricsAddr = parseMetricsAddr(metrics);
  if (opt('ETCD_CA_CERT_FILE')) cfg.etcdCaFile = opt('ETCD_CA_CERT_FILE');
  if (opt('ETCD_CERT_FILE')) cfg.etcdCertFile = opt('ETCD_CERT_FILE');
  if (opt('ETCD_KEY_FILE')) cfg.etcdKeyFile = opt('ETCD_KEY_FILE');
  if (opt('ETCD_USERNAME')) cfg.etcdUsername = opt('ETCD_USERNAME');
  if (opt('ETCD_PASSWORD')) cfg.etcdPassword = opt('ETCD_PASSWORD');
  // Half a pair would be dropped or fail later as an etcd error; say which half is missing now.
  if (!!cfg.etcdCertFile !== !!cfg.etcdKeyFile) {
    const [set, unset] = cfg.etcdCertFile ? ['ETCD_CERT_FILE', 'ETCD_KEY_FILE'] : ['ETCD_KEY_FILE', 'ETCD_CERT_FILE'];
    fail(set, opt(set) ?? '', `${unset} is not set: give both the client certificate and its key`);
  }
  if (cfg.etcdPassword && !cfg.etcdUsername) fail('ETCD_PASSWORD', '***', 'ETCD_USERNAME is not set: give the user the password is for');
  const tlsFile = ['ETCD_CA_CERT_FILE', 'ETCD_CERT_FILE'].find((k) => opt(k));
  if (tlsFile && endpoints?.[0]?.startsWith('http:')) {
    fail('ETCD_ENDPOINTS', env.ETCD_ENDPOINTS ?? '', `${tlsFile} is set but the endpoints are http://: use https:// to reach etcd over TLS`);
  }
  return cfg;
}

/**
 * This host's configuration as `calico node` and the CLI use it: the settings file
 * (CALICO_CONFIG, default /etc/calico/calico.env; env-file.ts) overridden by the environment.
 */
export function loadHostConfig(env: Env = process.env): Config {
  return loadConfig(withConfigFile(env));
}

/** Where `calico node` records its embedded etcd's URL, so the CLI on the same host finds it. */
export function embeddedEndpointFile(cfg: Pick<Config, 'dataDir'>): string {
  return path.join(cfg.dataDir, 'etcd.endpoint');
}
