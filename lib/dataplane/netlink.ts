/**
 * A small typed wrapper over the `netlink` package's rtnetlink socket: just the link, address
 * and route operations the Calico dataplane needs, with errno failures that callers must be
 * able to shrug off (EEXIST, ENODEV) turned into plain results instead of exceptions.
 *
 * Requests travel on one long-lived socket so they can be pipelined. Dumps use a second socket,
 * one at a time: the package groups multipart replies per socket, so an ACK landing between two
 * parts of a dump would cut the dump short, and the kernel refuses a second dump (EBUSY) while
 * one is running on the same socket.
 *
 * The kernel executes an rtnetlink request inside sendmsg(), and the package calls sendmsg() on
 * the main thread, draining its whole write queue in one go. So each request blocks the event
 * loop for its kernel time (about 1 ms to create a veth, 20-40 ms to delete one), and a burst of
 * queued requests would block it for their sum, long enough for the package's timeouts (which
 * run before the replies are read) to fire although the kernel has answered. Hence a small cap
 * on requests in flight.
 */
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AttrStream, createRtNetlink, getU32, ifla, rt, type RtNetlinkSocket, type StreamData } from 'netlink';

export const AF_INET = 2;
export const AF_INET6 = 10;
/** `proto static`: anything but `kernel` (2) so BIRD exports the route. */
export const RTPROT_STATIC = 4;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_TABLE_MAIN = 254;

const NLM_F_ECHO = 0x8;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
/** The package only reads `flags` as a number; an object of booleans is silently dropped. */
const CREATE_EXCL = NLM_F_CREATE | NLM_F_EXCL;
export const RTN_UNICAST = 1;
/** Enough to pipeline one endpoint's address and routes; few enough that a burst stays short. */
const MAX_IN_FLIGHT = 4;

const causes: Record<string, string> = {
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'cannot assign requested address',
  EAFNOSUPPORT: 'address family not supported by protocol',
  EBUSY: 'device or resource busy',
  EEXIST: 'file exists',
  EINVAL: 'invalid argument',
  ENETDOWN: 'network is down',
  ENETUNREACH: 'network is unreachable',
  ENOBUFS: 'no buffer space available',
  ENODEV: 'no such device',
  ENOENT: 'no such file or directory',
  ENOMEM: 'cannot allocate memory',
  EOPNOTSUPP: 'operation not supported',
  EPERM: 'operation not permitted',
  ERANGE: 'numerical result out of range',
  ESRCH: 'no such process',
  ETIMEDOUT: 'no answer from the kernel in time',
};

/** A request the kernel refused (or never answered); `code` is the errno name, e.g. `EPERM`. */
export class NetlinkError extends Error {
  constructor(
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(`${causes[code] ?? 'netlink error'} (${code})`, options);
    this.name = 'NetlinkError';
  }
}

/** True when `err` is a kernel refusal with one of the given errno names. */
export function isNetlinkCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof NetlinkError && codes.includes(err.code);
}

/** The package rejects with `Error("Request rejected: ENODEV")`; recover the errno name. */
function toNetlinkError(err: unknown): NetlinkError {
  if (err instanceof NetlinkError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const rejected = /Request rejected: (\w+)/.exec(message);
  if (rejected) return new NetlinkError(rejected[1], { cause: err });
  if (/Timeout has been reached/.test(message)) return new NetlinkError('ETIMEDOUT', { cause: err });
  const code = (err as { code?: unknown } | null)?.code;
  return new NetlinkError(typeof code === 'string' ? code : 'EIO', { cause: err });
}

export interface LinkInfo {
  index: number;
  name: string;
  mtu?: number;
  /** Colon hex, lower case. */
  mac?: string;
  /** IFF_UP (administratively up), not carrier. */
  up: boolean;
  /** `IFLA_INFO_KIND`, e.g. `veth`; undefined for links without a driver kind (lo, physical). */
  kind?: string;
  /** `IFLA_LINK`: for a veth, the peer's ifindex (in `peerNetnsId`'s namespace when that is set). */
  peerIndex?: number;
  /** Set when the peer lives in another namespace. */
  peerNetnsId?: number;
}

export interface VethSpec {
  name: string;
  peerName: string;
  mtu?: number;
  mac?: string;
  peerMac?: string;
  /** Bring `name` (not the peer) up in the same request. */
  up?: boolean;
}

export interface LinkChange {
  mtu?: number;
  mac?: string;
  up?: boolean;
}

export interface AddressSpec {
  index: number;
  /** Plain address; the family follows from it. */
  ip: string;
  prefixLen: number;
  /** IFA_F_NODAD: usable at once (IPv6), no duplicate address detection. */
  nodad?: boolean;
  scope?: number;
}

export interface AddressInfo {
  family: number;
  index: number;
  ip: string;
  prefixLen: number;
  scope: number;
  /** False while duplicate address detection runs or failed, or once the address is deprecated. */
  usable: boolean;
}

export interface RouteSpec {
  /** Plain destination address; the family follows from it. */
  dst: string;
  /** Defaults to a host route (32 or 128). */
  dstLen?: number;
  oif: number;
  scope?: number;
  protocol?: number;
  table?: number;
}

export interface RouteInfo {
  family: number;
  /** Undefined for a default route. */
  dst?: string;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  oif?: number;
  gateway?: string;
  priority?: number;
  /** First hop of a multipath route, which has no `oif` of its own. */
  firstHopOif?: number;
}

export type AddOutcome = 'added' | 'exists' | 'no-link';

/** Bytes of a plain IPv4/IPv6 address; throws on anything else (zones and CIDRs included). */
export function ipBytes(ip: string): { family: number; bytes: Buffer } {
  if (isIPv4(ip)) return { family: AF_INET, bytes: Buffer.from(ipaddr.IPv4.parse(ip).toByteArray()) };
  if (isIPv6(ip) && !ip.includes('%')) return { family: AF_INET6, bytes: Buffer.from(ipaddr.IPv6.parse(ip).toByteArray()) };
  throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
}

/** Canonical text of an address in a netlink attribute (RFC 5952 for IPv6). */
export function ipString(bytes: Buffer): string {
  return ipaddr.fromByteArray([...bytes]).toString();
}

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** True for a colon-hex unicast MAC: the kernel refuses group addresses on Ethernet links. */
export function isUnicastMac(mac: string): boolean {
  return macPattern.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

export function macBytes(mac: string): Buffer {
  if (!macPattern.test(mac)) throw new TypeError(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

function macString(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function serialize(data: StreamData): Buffer {
  const out = new AttrStream();
  out.emit(data);
  return Buffer.concat(out.bufs);
}

/** Parsed enums come back as key names when known ('STATIC'), numbers otherwise. */
function enumValue(mapping: object, v: unknown): number {
  if (typeof v === 'number') return v;
  const n = (mapping as Record<string, unknown>)[String(v)];
  return typeof n === 'number' ? n : -1;
}

function toLinkInfo(msg: rt.LinkMessage): LinkInfo {
  const a = msg.attrs;
  let kind: string | undefined;
  if (a.linkinfo) {
    try {
      kind = ifla.parseInfo(a.linkinfo).kind;
    } catch {
      kind = undefined; // a kind-specific blob the package cannot parse; the kind is optional
    }
  }
  return {
    index: msg.data.index ?? 0,
    name: a.ifname ?? '',
    mtu: a.mtu,
    mac: a.address ? macString(a.address) : undefined,
    up: msg.data.flags?.up === true,
    kind,
    peerIndex: a.link && a.link.length >= 4 ? getU32(a.link) : undefined,
    peerNetnsId: a.linkNetnsid,
  };
}

function toRouteInfo(msg: rt.RouteMessage): RouteInfo {
  const { data: d, attrs: a } = msg;
  return {
    family: d.family ?? 0,
    dst: a.dst ? ipString(a.dst) : undefined,
    dstLen: d.dstLen ?? 0,
    // rtm_table is a u8; tables above 255 only appear in RTA_TABLE.
    table: a.table ?? d.table ?? 0,
    protocol: enumValue(rt.RouteProtocol, d.protocol),
    scope: enumValue(rt.RouteScope, d.scope),
    type: enumValue(rt.RouteType, d.type),
    oif: a.oif,
    gateway: a.gateway ? ipString(a.gateway) : undefined,
    priority: a.priority,
    // struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; }
    firstHopOif: a.multipath && a.multipath.length >= 8 ? getU32(a.multipath.subarray(4, 8)) : undefined,
  };
}

function toAddressInfo(msg: rt.AddressMessage): AddressInfo | undefined {
  // For IPv4, IFA_ADDRESS is the peer on point-to-point links; IFA_LOCAL is ours.
  const bytes = msg.attrs.local ?? msg.attrs.address;
  if (!bytes) return undefined;
  const f = msg.attrs.flags ?? msg.data.flags;
  return {
    family: msg.data.family ?? 0,
    index: msg.data.index ?? 0,
    ip: ipString(bytes),
    prefixLen: msg.data.prefixlen ?? 0,
    scope: msg.data.scope ?? 0,
    usable: !(f?.tentative || f?.dadfailed || f?.deprecated),
  };
}

export interface RtNetlinkOptions {
  /** Per-request limit; a socket that lost a reply must not hang a Join forever. */
  timeoutMs?: number;
  /** Socket-level errors (the package throws from an EventEmitter without a listener). */
  onError?: (err: Error) => void;
}

/** One rtnetlink connection in the namespace of the process that opens it. */
export class RtNetlink {
  private readonly sock: RtNetlinkSocket;
  private dumpSock?: RtNetlinkSocket;
  private dumpChain: Promise<unknown> = Promise.resolve();
  private readonly timeout: number;
  private closed = false;
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly options: RtNetlinkOptions = {}) {
    this.timeout = options.timeoutMs ?? 5000;
    this.sock = this.openSocket();
  }

  private openSocket(): RtNetlinkSocket {
    const s = createRtNetlink();
    s.socket.on('error', (err) => this.options.onError?.(err));
    return s;
  }

  private async call<T>(fn: (s: RtNetlinkSocket, opts: { timeout: number }) => Promise<T>): Promise<T> {
    if (this.closed) throw new NetlinkError('EBADF');
    if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inFlight++;
    try {
      return await fn(this.sock, { timeout: this.timeout });
    } catch (err) {
      throw toNetlinkError(err);
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  private dump<T>(fn: (s: RtNetlinkSocket, opts: { timeout: number }) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new NetlinkError('EBADF'));
    const run = async (): Promise<T> => {
      this.dumpSock ??= this.openSocket();
      try {
        return await fn(this.dumpSock, { timeout: this.timeout });
      } catch (err) {
        throw toNetlinkError(err);
      }
    };
    const result = this.dumpChain.then(run, run);
    this.dumpChain = result.catch(() => undefined);
    return result;
  }

  /**
   * Creates a veth pair in one request. Returns the new `name` end, or 'exists' when either
   * name is taken. Both ends get their MAC and MTU at creation, so there is nothing to undo
   * but the pair itself.
   */
  async createVeth(spec: VethSpec): Promise<LinkInfo | 'exists'> {
    const peerAttrs: ifla.LinkAttrs = { ifname: spec.peerName };
    if (spec.peerMac) peerAttrs.address = macBytes(spec.peerMac);
    if (spec.mtu) peerAttrs.mtu = spec.mtu;
    // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's link attributes.
    const peer = Buffer.concat([rt.formatLink({}), serialize(ifla.formatLinkAttrs(peerAttrs))]);
    const linkinfo = serialize(ifla.formatInfo({ kind: 'veth', data: serialize(ifla.formatVethInfo({ peer })) }));
    const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo };
    if (spec.mac) attrs.address = macBytes(spec.mac);
    if (spec.mtu) attrs.mtu = spec.mtu;
    const header: rt.Link = spec.up ? { flags: { up: true }, change: { up: true } } : {};
    try {
      // NLM_F_ECHO returns the new link (kernel >= 6.3), saving a lookup for its ifindex.
      const reply = await this.call((s, o) => s.newLink(header, attrs, { ...o, flags: CREATE_EXCL | NLM_F_ECHO }));
      const echoed = reply.find((m) => m.attrs.ifname === spec.name);
      if (echoed) return toLinkInfo(echoed);
    } catch (err) {
      if (isNetlinkCode(err, 'EEXIST')) return 'exists';
      throw err;
    }
    const link = await this.getLink(spec.name);
    if (!link) throw new NetlinkError('ENODEV'); // deleted by someone else in between
    return link;
  }

  /** Looks a link up by name (RTM_GETLINK with IFLA_IFNAME, no dump). */
  async getLink(name: string): Promise<LinkInfo | undefined> {
    try {
      const reply = await this.call((s, o) => s.getLink({}, { ifname: name }, o));
      return reply[0] ? toLinkInfo(reply[0]) : undefined;
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return undefined;
      throw err;
    }
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | undefined> {
    try {
      const reply = await this.call((s, o) => s.getLink({ index }, {}, o));
      return reply[0] ? toLinkInfo(reply[0]) : undefined;
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return undefined;
      throw err;
    }
  }

  async listLinks(): Promise<LinkInfo[]> {
    const msgs = await this.dump((s, o) => s.getLinks({}, {}, o));
    return msgs.map(toLinkInfo);
  }

  /** Changes MTU, MAC and/or IFF_UP of an existing link. */
  async setLink(index: number, change: LinkChange): Promise<'ok' | 'no-link'> {
    const attrs: ifla.LinkAttrs = {};
    if (change.mtu) attrs.mtu = change.mtu;
    if (change.mac) attrs.address = macBytes(change.mac);
    const header: rt.Link = { index };
    if (change.up !== undefined) {
      header.flags = change.up ? { up: true } : {};
      header.change = { up: true };
    }
    try {
      await this.call((s, o) => s.setLink(header, attrs, o));
      return 'ok';
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return 'no-link';
      throw err;
    }
  }

  /** Deletes a link by name or ifindex; deleting one end of a veth deletes both. */
  async deleteLink(link: string | number): Promise<'deleted' | 'missing'> {
    const [header, attrs]: [rt.Link, ifla.LinkAttrs] = typeof link === 'number' ? [{ index: link }, {}] : [{}, { ifname: link }];
    try {
      await this.call((s, o) => s.delLink(header, attrs, o));
      return 'deleted';
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return 'missing';
      throw err;
    }
  }

  /** Puts a link in device group `group` (IFLA_GROUP), which {@link deleteGroup} deletes at once. */
  async setLinkGroup(index: number, group: number): Promise<'ok' | 'no-link'> {
    try {
      await this.call((s, o) => s.setLink({ index }, { group }, o));
      return 'ok';
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return 'no-link';
      throw err;
    }
  }

  /**
   * Deletes every link of device group `group` in one RTM_DELLINK (no index, no name): the
   * kernel unregisters them as one batch, paying its RCU grace periods once for all of them.
   */
  async deleteGroup(group: number): Promise<'deleted' | 'missing'> {
    try {
      await this.call((s, o) => s.delLink({}, { group }, o));
      return 'deleted';
    } catch (err) {
      if (isNetlinkCode(err, 'ENODEV')) return 'missing';
      throw err;
    }
  }

  async addAddress(spec: AddressSpec): Promise<AddOutcome> {
    const { family, bytes } = ipBytes(spec.ip);
    const flags: rt.AddressFlags = spec.nodad ? { nodad: true } : {};
    const data: rt.Address = { family, prefixlen: spec.prefixLen, index: spec.index, scope: spec.scope ?? 0, flags };
    try {
      await this.call((s, o) => s.newAddress(data, { local: bytes, address: bytes, flags }, { ...o, flags: CREATE_EXCL }));
      return 'added';
    } catch (err) {
      if (isNetlinkCode(err, 'EEXIST')) return 'exists';
      if (isNetlinkCode(err, 'ENODEV')) return 'no-link';
      throw err;
    }
  }

  async listAddresses(family?: number): Promise<AddressInfo[]> {
    const msgs = await this.dump((s, o) => s.getAddresses(family ? { family } : {}, {}, o));
    return msgs.map(toAddressInfo).filter((a): a is AddressInfo => a !== undefined && (family === undefined || a.family === family));
  }

  /**
   * Adds a unicast route through a device. 'exists' means some route for the same prefix and
   * metric is already in the table, not necessarily through `oif` (see {@link lookupRoute}).
   */
  async addRoute(spec: RouteSpec): Promise<AddOutcome> {
    const { family, bytes } = ipBytes(spec.dst);
    const data: rt.Route = {
      family,
      dstLen: spec.dstLen ?? bytes.length * 8,
      table: spec.table ?? RT_TABLE_MAIN,
      protocol: spec.protocol ?? RTPROT_STATIC,
      scope: spec.scope ?? RT_SCOPE_UNIVERSE,
      type: RTN_UNICAST,
    };
    try {
      await this.call((s, o) => s.newRoute(data, { dst: bytes, oif: spec.oif }, { ...o, flags: CREATE_EXCL }));
      return 'added';
    } catch (err) {
      if (isNetlinkCode(err, 'EEXIST')) return 'exists';
      if (isNetlinkCode(err, 'ENODEV')) return 'no-link';
      throw err;
    }
  }

  /** The FIB entry the kernel would use for `ip` (RTM_F_FIB_MATCH), or undefined if unroutable. */
  async lookupRoute(ip: string): Promise<RouteInfo | undefined> {
    const { family, bytes } = ipBytes(ip);
    try {
      const reply = await this.call((s, o) => s.getRoute({ family, dstLen: bytes.length * 8, flags: { fibMatch: true } }, { dst: bytes }, o));
      return reply[0] ? toRouteInfo(reply[0]) : undefined;
    } catch (err) {
      if (isNetlinkCode(err, 'ENETUNREACH', 'EHOSTUNREACH', 'ENOENT', 'ESRCH')) return undefined;
      throw err;
    }
  }

  /** Every route of one family in every table (filter by `table` yourself). */
  async listRoutes(family: number): Promise<RouteInfo[]> {
    const msgs = await this.dump((s, o) => s.getRoutes({ family }, {}, o));
    return msgs.map(toRouteInfo).filter((r) => r.family === family);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
    this.dumpSock?.socket.close();
  }
}
