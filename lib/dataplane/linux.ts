/**
 * The real dataplane: rtnetlink for links, addresses and routes, /proc/sys for per-interface
 * settings. It acts on the network namespace of the process that creates it.
 */
import { existsSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { BadRequestError, CalicoError, ConflictError, errorMessage, InternalError, NotFoundError, UnavailableError } from '../errors';
import {
  AF_INET,
  AF_INET6,
  isNetlinkCode,
  isUnicastMac,
  NetlinkError,
  RtNetlink,
  RT_SCOPE_LINK,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  type LinkInfo,
  type RouteInfo,
} from './netlink';
import { confKey, isValidIfName, neighKey, PROC_SYS, sysctlPath, writeSysctl } from './sysctl';
import { hostCidr as hostCidrOf, parseIP } from '../ip';
import { WORKLOAD_PREFIX } from './types';
import { LinkDeleter } from './link-deleter';
import { MTU_MAX, MTU_MIN, validMtu } from '../limits';
import type { Dataplane, EndpointWiring, WiringResult, WorkloadRoute } from './types';

/** Every host end gets this MAC: containers only ever talk to "the router", never to each other. */
export const HOST_MAC = 'ee:ee:ee:ee:ee:ee';
/** EUI-64 link-local of {@link HOST_MAC}; the kernel would derive the same one on carrier up. */
export const HOST_LINK_LOCAL = 'fe80::ecee:eeff:feee:eeee';
export { WORKLOAD_PREFIX } from './types';

/** Errnos that say "not now" rather than "never": the caller may retry. */
const transient = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ENOBUFS', 'ENODEV', 'ENOENT', 'ENOMEM', 'ETIMEDOUT']);

function codeOf(err: unknown): string | undefined {
  if (err instanceof NetlinkError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Wraps a kernel failure as "failed to <what>: <cause>", classified by errno. */
function kernelError(what: string, err: unknown): CalicoError {
  if (err instanceof CalicoError) return err;
  const message = `failed to ${what}: ${errorMessage(err)}`;
  const code = codeOf(err);
  if (code === 'EEXIST') return new ConflictError(message, { cause: err });
  if (code !== undefined && transient.has(code)) return new UnavailableError(message, { cause: err });
  return new InternalError(message, { cause: err });
}

async function attempt<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw kernelError(what, err);
  }
}

/**
 * What the dataplane logs through: a winston Logger fits, and so does the forwarder the worker
 * thread of ThreadedDataplane uses (a winston Logger cannot cross a thread boundary).
 */
export interface DataplaneLogger {
  debug(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
}

export interface LinuxDataplaneOptions {
  /**
   * Root of the sysctl tree written for this namespace, `/proc/sys` by default. A Docker managed
   * plugin has a read-only /proc/sys of its own and sees the host's under /host/proc/sys.
   */
  procSys?: string;
  /** Injectable for tests; by default one socket opened now and kept until close(). */
  netlink?: RtNetlink;
}

function setSysctl(root: string, key: string, value: string | number): void {
  try {
    writeSysctl(key, value, root);
  } catch (err) {
    // ENOENT is normally "the interface went away" (transient); a root without net/ is a
    // misconfiguration that no retry fixes, so name the root and the option.
    if (codeOf(err) === 'ENOENT' && !existsSync(`${root}/net`)) {
      throw new InternalError(
        `failed to set ${key}: ${sysctlPath(key, root)} does not exist: ${root} is not a sysctl tree (check the procSys setting, CALICO_PROC_SYS)`,
        { cause: err },
      );
    }
    throw kernelError(`set ${key}`, err);
  }
}

/** Waits for every operation (so a rollback never races one still in flight), then throws the first failure. */
async function allOrFirstError(ops: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(ops);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** A plain address as its host route's destination (a /32 or /128). */
function hostCidr(ip: string): string {
  return hostCidrOf(parseIP(ip));
}

/** Checks a wiring before anything touches the kernel; returns the de-duplicated addresses. */
function validateWiring(w: EndpointWiring): { ipv4: string[]; ipv6: string[] } {
  const fail = (problem: string): never => {
    throw new BadRequestError(`failed to wire endpoint ${JSON.stringify(w.hostIfName)}: ${problem}`);
  };
  if (!isValidIfName(w.hostIfName)) fail('invalid host interface name: want 1-15 characters of [A-Za-z0-9_.-]');
  // Wiring may delete a stale link of that name: never let it reach a link that is not ours.
  if (!w.hostIfName.startsWith(WORKLOAD_PREFIX)) fail(`host interface name must start with "${WORKLOAD_PREFIX}"`);
  if (!isValidIfName(w.tempIfName)) fail(`invalid temporary interface name ${JSON.stringify(w.tempIfName)}`);
  if (w.hostIfName === w.tempIfName) fail('host and temporary interface names are the same');
  if (!validMtu(w.mtu)) fail(`invalid MTU ${w.mtu}: want ${MTU_MIN}-${MTU_MAX}`);
  if (typeof w.containerMac !== 'string' || !isUnicastMac(w.containerMac)) {
    fail(`invalid container MAC ${JSON.stringify(w.containerMac)}: want a unicast colon-hex MAC`);
  }
  const ipv4 = [...new Set(w.ipv4 ?? [])];
  const ipv6 = [...new Set(w.ipv6 ?? [])];
  for (const ip of ipv4) if (!isIPv4(ip)) fail(`invalid IPv4 address ${JSON.stringify(ip)}`);
  for (const ip of ipv6) if (!isIPv6(ip) || ip.includes('%')) fail(`invalid IPv6 address ${JSON.stringify(ip)}`);
  // Below 1280 the kernel switches IPv6 off on the link and the gateway address cannot exist.
  if (ipv6.length > 0 && w.mtu < 1280) fail(`MTU ${w.mtu} is too small for IPv6 (minimum 1280)`);
  return { ipv4, ipv6 };
}

/** {@link Dataplane} on the real kernel, in the network namespace of this process. */
export class LinuxDataplane implements Dataplane {
  private readonly nl: RtNetlink;
  private readonly deleter: LinkDeleter;
  /** Root under which sysctls are written: `/proc/sys` unless told otherwise. */
  readonly procSys: string;

  /**
   * @param options `{ procSys, netlink }`; an RtNetlink in its place is accepted as the socket
   *   to use (the older signature).
   */
  constructor(
    private readonly logger?: DataplaneLogger,
    options: LinuxDataplaneOptions | RtNetlink = {},
  ) {
    const opts: LinuxDataplaneOptions = options instanceof RtNetlink ? { netlink: options } : options;
    this.procSys = opts.procSys ?? PROC_SYS;
    this.nl = opts.netlink ?? new RtNetlink({ onError: (err) => this.logger?.warn('netlink socket error', { err: err.message }) });
    this.deleter = new LinkDeleter(this.nl);
  }

  async wireEndpoint(w: EndpointWiring): Promise<WiringResult> {
    const { ipv4, ipv6 } = validateWiring(w);
    await this.deleter.idle(w.hostIfName);
    const { link, created } = await this.ensurePair(w);
    try {
      this.configureSysctls(w.hostIfName, ipv6.length > 0);
      const ops: Promise<void>[] = [];
      if (ipv6.length > 0) ops.push(this.addGatewayAddress(link));
      for (const ip of ipv4) ops.push(this.addHostRoute(link, ip));
      for (const ip of ipv6) ops.push(this.addHostRoute(link, ip));
      await allOrFirstError(ops);
    } catch (err) {
      if (created) await this.rollback(link, err);
      throw err;
    }
    return ipv6.length > 0 ? { ipv6Gateway: HOST_LINK_LOCAL } : {};
  }

  /**
   * Creates the pair, host end already up with its MAC and MTU (one request). On a name clash,
   * reuses a pair whose both ends are still here, and replaces anything else.
   */
  private async ensurePair(w: EndpointWiring): Promise<{ link: LinkInfo; created: boolean }> {
    const pair = `veth pair ${w.hostIfName}/${w.tempIfName}`;
    const spec = { name: w.hostIfName, peerName: w.tempIfName, mtu: w.mtu, mac: HOST_MAC, peerMac: w.containerMac, up: true };
    const first = await attempt(`create ${pair}`, () => this.nl.createVeth(spec));
    if (first !== 'exists') return { link: first, created: true };

    const [host, temp] = await attempt(`look up ${pair}`, () => Promise.all([this.nl.getLink(w.hostIfName), this.nl.getLink(w.tempIfName)]));
    const intact =
      host !== undefined &&
      temp !== undefined &&
      host.kind === 'veth' &&
      host.peerNetnsId === undefined &&
      host.peerIndex === temp.index &&
      temp.peerIndex === host.index;
    if (intact) {
      await attempt(`configure ${pair}`, async () => {
        const results = await Promise.all([
          this.nl.setLink(host.index, { mtu: w.mtu, mac: HOST_MAC, up: true }),
          this.nl.setLink(temp.index, { mtu: w.mtu, mac: w.containerMac }),
        ]);
        if (results.includes('no-link')) throw new NetlinkError('ENODEV');
      });
      return { link: { ...host, up: true }, created: false };
    }

    // The container end left with a sandbox that is gone (or never was ours): start over, but
    // only ever delete veths; a name clash with anything else is someone else's link.
    for (const l of [host, temp]) {
      if (l !== undefined && l.kind !== 'veth') throw new ConflictError(`failed to create ${pair}: ${l.name} exists and is not a veth`);
    }
    this.logger?.info('recreating stale veth pair', { hostIfName: w.hostIfName, tempIfName: w.tempIfName });
    await attempt(`delete stale ${pair}`, async () => {
      if (host) await this.nl.deleteLink(host.index);
      if (temp) await this.nl.deleteLink(temp.index);
    });
    const second = await attempt(`create ${pair}`, () => this.nl.createVeth(spec));
    if (second === 'exists') throw new ConflictError(`failed to create ${pair}: created concurrently by someone else`);
    return { link: second, created: true };
  }

  private configureSysctls(ifName: string, ipv6: boolean): void {
    // Answer ARP for any address (the gateway 169.254.1.1 included) with the host end's MAC, at once.
    setSysctl(this.procSys, confKey('ipv4', ifName, 'proxy_arp'), 1);
    setSysctl(this.procSys, neighKey('ipv4', ifName, 'proxy_delay'), 0);
    setSysctl(this.procSys, confKey('ipv4', ifName, 'forwarding'), 1);
    if (ipv6) {
      setSysctl(this.procSys, confKey('ipv6', ifName, 'disable_ipv6'), 0);
      // A container must not be able to steer the host's routing with router advertisements.
      setSysctl(this.procSys, confKey('ipv6', ifName, 'accept_ra'), 0);
      setSysctl(this.procSys, confKey('ipv6', ifName, 'forwarding'), 1);
    }
  }

  private async addGatewayAddress(link: LinkInfo): Promise<void> {
    const what = `add address ${HOST_LINK_LOCAL}/64 to ${link.name}`;
    const outcome = await attempt(what, () =>
      // NODAD: usable immediately, and DAD could not run anyway while the peer has no carrier.
      this.nl.addAddress({ index: link.index, ip: HOST_LINK_LOCAL, prefixLen: 64, nodad: true, scope: RT_SCOPE_LINK }),
    );
    if (outcome === 'no-link') throw new UnavailableError(`failed to ${what}: the link disappeared`);
  }

  /** Adds `ip/32` (`/128`) via the link; an identical route is fine, one via another device is not. */
  private async addHostRoute(link: LinkInfo, ip: string): Promise<void> {
    const cidr = hostCidr(ip);
    const what = `add route ${cidr} via ${link.name}`;
    const v4 = isIPv4(ip);
    // The kernel ignores the scope of IPv6 routes; `scope link` is what an IPv4 /32 onto a veth is.
    const scope = v4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    const outcome = await attempt(what, () => this.nl.addRoute({ dst: ip, oif: link.index, scope }));
    if (outcome === 'added') return;
    if (outcome === 'no-link') throw new UnavailableError(`failed to ${what}: the link disappeared`);
    const found = await attempt(`look up route ${cidr}`, () => this.nl.lookupRoute(ip));
    if (found?.oif === link.index && found.dstLen === (v4 ? 32 : 128)) return;
    const other = found?.oif !== undefined ? await this.nl.getLinkByIndex(found.oif).catch(() => undefined) : undefined;
    const where = other?.name ?? (found?.oif !== undefined ? `ifindex ${found.oif}` : 'another route');
    throw new ConflictError(`failed to ${what}: the address is already routed through ${where}`);
  }

  /** By ifindex: the name could have been taken by someone else's link in between. */
  private async rollback(link: LinkInfo, cause: unknown): Promise<void> {
    try {
      await this.nl.deleteLink(link.index);
      this.logger?.debug('rolled back veth pair', { hostIfName: link.name, err: errorMessage(cause) });
    } catch (err) {
      this.logger?.warn('failed to roll back veth pair', { hostIfName: link.name, err: errorMessage(err) });
    }
  }

  async unwireEndpoint(hostIfName: string): Promise<void> {
    if (!isValidIfName(hostIfName) || !hostIfName.startsWith(WORKLOAD_PREFIX)) {
      throw new BadRequestError(
        `failed to unwire endpoint: invalid interface name ${JSON.stringify(hostIfName)}: want "${WORKLOAD_PREFIX}" and at most 11 more of [A-Za-z0-9_.-]`,
      );
    }
    const what = `delete link ${hostIfName}`;
    // Deleting the host end deletes the peer, the addresses and the routes with it; deletions
    // asked for while one runs go together in the next request (link-deleter.ts).
    await attempt(what, () =>
      this.deleter.delete(hostIfName, (link) => {
        if (link.kind !== 'veth') throw new ConflictError(`failed to ${what}: it is not a veth, so not a workload's`);
      }),
    );
  }

  /** Whether a link of this name exists: one RTM_GETLINK, which the kernel answers without the rtnl lock that deletions hold. */
  async hasLink(name: string): Promise<boolean> {
    if (!isValidIfName(name)) throw new BadRequestError(`failed to look up link: invalid interface name ${JSON.stringify(name)}`);
    return (await attempt(`look up link ${name}`, () => this.nl.getLink(name))) !== undefined;
  }

  async ensureRoute(hostIfName: string, ip: string): Promise<void> {
    if (!isValidIfName(hostIfName)) {
      throw new BadRequestError(`failed to add route: invalid interface name ${JSON.stringify(hostIfName)}`);
    }
    if (!isIPv4(ip) && !(isIPv6(ip) && !ip.includes('%'))) {
      throw new BadRequestError(`failed to add route via ${hostIfName}: invalid IP address ${JSON.stringify(ip)}`);
    }
    await this.deleter.idle(hostIfName);
    const link = await attempt(`look up link ${hostIfName}`, () => this.nl.getLink(hostIfName));
    if (!link) throw new NotFoundError(`failed to add route ${hostCidr(ip)}: link ${hostIfName} not found`);
    await this.addHostRoute(link, ip);
  }

  async listWorkloadLinks(): Promise<string[]> {
    const links = await attempt('list links', () => this.nl.listLinks());
    return links.filter((l) => l.name.startsWith(WORKLOAD_PREFIX)).map((l) => l.name);
  }

  async listWorkloadRoutes(): Promise<WorkloadRoute[]> {
    const links = await attempt('list links', () => this.nl.listLinks());
    const names = new Map(links.filter((l) => l.name.startsWith(WORKLOAD_PREFIX)).map((l) => [l.index, l.name]));
    const v4 = await attempt('list IPv4 routes', () => this.nl.listRoutes(AF_INET));
    const v6 = await this.listIPv6Routes();
    const out: WorkloadRoute[] = [];
    for (const r of [...v4, ...v6]) {
      const ifName = r.oif !== undefined ? names.get(r.oif) : undefined;
      const hostLen = r.family === AF_INET ? 32 : 128;
      if (!ifName || r.dst === undefined || r.dstLen !== hostLen) continue;
      // Skips the local-table entry of the gateway address, multicast and anycast entries.
      if (r.table !== RT_TABLE_MAIN || r.type !== RTN_UNICAST) continue;
      out.push({ dst: `${r.dst}/${r.dstLen}`, ifName });
    }
    return out;
  }

  /** A kernel without IPv6 has no IPv6 routes, which is not an error. */
  private async listIPv6Routes(): Promise<RouteInfo[]> {
    try {
      return await this.nl.listRoutes(AF_INET6);
    } catch (err) {
      if (isNetlinkCode(err, 'EAFNOSUPPORT', 'EOPNOTSUPP')) return [];
      throw kernelError('list IPv6 routes', err);
    }
  }

  enableForwarding(ipv6: boolean): Promise<void> {
    setSysctl(this.procSys, 'net/ipv4/ip_forward', 1);
    if (ipv6) setSysctl(this.procSys, 'net/ipv6/conf/all/forwarding', 1);
    return Promise.resolve();
  }

  async uplinkMtu(): Promise<number | undefined> {
    const oif = (await this.defaultRouteOif(AF_INET)) ?? (await this.defaultRouteOif(AF_INET6));
    if (oif === undefined) return undefined;
    const link = await attempt(`look up link ${oif}`, () => this.nl.getLinkByIndex(oif));
    return link?.mtu;
  }

  async uplinkIPv4(): Promise<string | undefined> {
    const oif = await this.defaultRouteOif(AF_INET);
    if (oif === undefined) return undefined;
    const addrs = await attempt('list IPv4 addresses', () => this.nl.listAddresses(AF_INET));
    return addrs.find((a) => a.index === oif && a.scope === RT_SCOPE_UNIVERSE)?.ip;
  }

  /**
   * CALICO_IP6 unset: the first global IPv6 address of the interface holding the IPv6 default
   * route, as CALICO_IP is found for IPv4 (Calico's first-found on the route's device). Link-local
   * addresses and ones still under duplicate address detection or deprecated are passed over.
   */
  async uplinkIPv6(): Promise<string | undefined> {
    const oif = await this.defaultRouteOif(AF_INET6);
    if (oif === undefined) return undefined;
    const addrs = await attempt('list IPv6 addresses', () => this.nl.listAddresses(AF_INET6));
    return addrs.find((a) => a.index === oif && a.scope === RT_SCOPE_UNIVERSE && a.usable)?.ip;
  }

  /** Device of the preferred (lowest metric) default route in the main table. */
  private async defaultRouteOif(family: number): Promise<number | undefined> {
    const routes = family === AF_INET ? await attempt('list IPv4 routes', () => this.nl.listRoutes(AF_INET)) : await this.listIPv6Routes();
    const defaults = routes
      .filter((r) => r.dstLen === 0 && r.table === RT_TABLE_MAIN && r.type === RTN_UNICAST)
      .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0));
    for (const r of defaults) {
      const oif = r.oif ?? r.firstHopOif;
      if (oif !== undefined) return oif;
    }
    return undefined;
  }

  close(): void {
    this.nl.close();
  }
}

/** The dataplane of this process's network namespace. */
export function createLinuxDataplane(logger?: DataplaneLogger, opts: { procSys?: string } = {}): LinuxDataplane {
  return new LinuxDataplane(logger, { procSys: opts.procSys });
}
