/**
 * Published ports (`docker run -p`) at the driver: the port map is checked and recorded on the
 * endpoint at CreateEndpoint (where Docker 29 sends it), taken again from the options of
 * ProgramExternalConnectivity where Docker sends them there (20.10), and marked published (host
 * ports chosen, conflicts refused) at ProgramExternalConnectivity, which Docker sends only for the
 * container's gateway endpoint: a container on two calico networks publishes once. Revoke, Leave
 * and DeleteEndpoint clear it. Every step is idempotent; the ports agent (ports/agent.ts) turns
 * what the records say into DNAT.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { NodeContext } from '../agent/context';
import type { EndpointRecord, PortBindingRecord } from '../lib/datastore/records';
import { NotFoundError, errorMessage } from '../lib/errors';
import { KeyedMutex } from '../lib/retry';
import { parseRequest } from '../lib/validate';
import { type HostFree, type Holder, choosePorts, parseEphemeralRange } from '../ports/allocate';
import { PORTMAP_OPTION, describeBinding, parsePortMap, sameRequest } from '../ports/request';
import { EndpointRequest, ProgramExternalConnectivityRequest } from './protocol';

/** How long ProgramExternalConnectivity waits for the kernel to hold the new rules. */
const RULES_WAIT_MS = 3000;

/** This host's own addresses, as the kernel lists them in calico node's namespace (the host's). */
export function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).filter((a) => !(a.family === 'IPv6' && a.scopeid)).map((a) => a.address));
}

function ephemeralRange(): readonly [number, number] {
  try {
    return parseEphemeralRange(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'));
  } catch {
    return parseEphemeralRange(undefined);
  }
}

/** Binds the port for a moment: taken means a process, or Docker's proxy for a bridge container, holds it. */
function canBind(protocol: 'tcp' | 'udp', host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean, close: () => void) => {
      try {
        close();
      } catch {
        // a socket whose bind failed may not be closable; it holds nothing
      }
      resolve(ok);
    };
    if (protocol === 'tcp') {
      const s = net.createServer();
      s.once('error', () => done(false, () => undefined));
      s.listen({ host, port, exclusive: true, ipv6Only: host === '::' }, () => done(true, () => s.close()));
    } else {
      const s = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: host === '::' });
      s.once('error', () => done(false, () => s.close()));
      s.bind({ address: host, port, exclusive: true }, () => done(true, () => s.close()));
    }
  });
}

/**
 * The bind probe for choosePorts. SCTP is not probed (Node has no SCTP sockets). An address of
 * the family not on this host any more counts as free: no packet can reach it.
 */
const portFree: HostFree = async (b, port, fams) => {
  if (b.protocol === 'sctp') return true;
  const specific = b.hostIp !== undefined && b.hostIp !== '0.0.0.0' && b.hostIp !== '::';
  const hosts = specific ? [b.hostIp!] : fams.map((f) => (f === 4 ? '0.0.0.0' : '::'));
  for (const h of hosts) if (!(await canBind(b.protocol, h, port).catch(() => true))) return false;
  return true;
};

const families = (ep: EndpointRecord) => new Set<4 | 6>([...(ep.ipv4.length ? [4 as const] : []), ...(ep.ipv6.length ? [6 as const] : [])]);
const isPublished = (ep: EndpointRecord) => (ep.ports ?? []).some((b) => b.published !== undefined);
const unpublished = (ports: readonly PortBindingRecord[]) => ports.map(({ published: _p, ...b }) => b);

export class PortHandlers {
  /** Choosing host ports and claiming them is one step per host. */
  private lock = new KeyedMutex();

  constructor(private ctx: NodeContext) {}

  /** CreateEndpoint: the bindings asked for, checked (a bad one refuses the endpoint before anything is written). */
  requested(options: Record<string, unknown> | null | undefined): PortBindingRecord[] | undefined {
    const ports = parsePortMap(options?.[PORTMAP_OPTION], hostAddresses());
    return ports.length ? ports : undefined;
  }

  async program(body: unknown): Promise<Record<string, never>> {
    const req = parseRequest(ProgramExternalConnectivityRequest, body, 'NetworkDriver.ProgramExternalConnectivity');
    // Checked before the lock and any read: a bad port map changes nothing.
    const given = req.Options && PORTMAP_OPTION in req.Options ? parsePortMap(req.Options[PORTMAP_OPTION], hostAddresses()) : undefined;
    await this.ctx.ready();
    const ep = await this.lock.run('ports', () => this.publish(req.EndpointID, given));
    if (ep && isPublished(ep) && this.ctx.ports && !(await this.ctx.ports.covers(ep, RULES_WAIT_MS))) {
      this.ctx.log.warn('the published ports are recorded but not in the kernel yet; they work once the ports agent applies them', { endpoint: ep.id });
    }
    return {};
  }

  private async publish(id: string, given: PortBindingRecord[] | undefined): Promise<EndpointRecord | undefined> {
    const { records } = this.ctx;
    await records.written(id).catch(() => undefined);
    const ep = await records.getEndpoint(id);
    if (!ep) throw new NotFoundError(`endpoint ${id.slice(0, 12)} is not known to calico on host ${this.ctx.host}; CreateEndpoint must come first`);
    const want = given ?? ep.ports ?? [];
    if (!want.length) {
      // Nothing to publish (no -p): only a port map recorded earlier has to go.
      return ep.ports?.length ? records.modifyEndpoint(id, ({ ports: _p, ...rec }) => rec) : ep;
    }
    // A replay of a call that published already answers the same ports.
    if (isPublished(ep) && sameRequest(want, ep.ports)) return ep;
    const all = await records.hostEndpoints();
    // The container's other calico endpoints give way: it publishes through one, its gateway.
    const siblings = all.filter((o) => o.id !== id && ep.sandbox && o.sandbox === ep.sandbox && isPublished(o));
    const holders: Holder[] = all
      .filter((o) => o.id !== id && !siblings.includes(o) && isPublished(o))
      .map((o) => ({ endpoint: o.id, containerName: o.containerName, families: families(o), bindings: o.ports ?? [] }));
    const chosen = await choosePorts(want, families(ep), holders, ephemeralRange(), this.ctx.host, portFree);
    for (const s of siblings) await this.clear(s.id, 'another endpoint of the container publishes its ports');
    const now = await records.modifyEndpoint(id, (rec) => ({ ...rec, ports: chosen }));
    if (!now) throw new NotFoundError(`endpoint ${id.slice(0, 12)} was removed while its ports were being published`);
    this.ctx.log.info('ports published', { endpoint: id, ports: chosen.map(describeBinding) });
    return now;
  }

  async revoke(body: unknown): Promise<Record<string, never>> {
    const req = parseRequest(EndpointRequest, body, 'NetworkDriver.RevokeExternalConnectivity');
    if (!this.mayBePublished(req.EndpointID)) return {};
    await this.ctx.ready();
    await this.clear(req.EndpointID, 'RevokeExternalConnectivity');
    return {};
  }

  /**
   * From memory: once start-up listed this host's endpoints every one is cached, so an endpoint
   * not cached, or cached unpublished, has nothing to clear, and Revoke and Leave answer without
   * waiting on etcd (as before ports existed). Before that listing, a Leave skips this and the
   * DeleteEndpoint that follows removes the record with its ports.
   */
  private mayBePublished(id: string): boolean {
    const cached = this.ctx.records.cachedEndpoint(id);
    return !!cached && isPublished(cached);
  }

  /** Unpublishes the endpoint's bindings (keeping what was asked for); nothing published, or no endpoint, is success. */
  async clear(id: string, why: string): Promise<void> {
    if (!this.mayBePublished(id)) return;
    const now = await this.ctx.records.modifyEndpoint(id, (rec) => (isPublished(rec) ? { ...rec, ports: unpublished(rec.ports ?? []) } : undefined));
    if (now) this.ctx.log.info('ports unpublished', { endpoint: id, why });
  }

  /** Leave: never fails (Docker only logs it); a record left published goes with DeleteEndpoint or reconciliation. */
  async clearQuietly(id: string): Promise<void> {
    if (!this.mayBePublished(id)) return;
    try {
      await this.ctx.ready();
      await this.clear(id, 'Leave');
    } catch (err) {
      this.ctx.log.warn('could not unpublish the ports of a leaving endpoint; they go when the endpoint is deleted', {
        endpoint: id,
        error: errorMessage(err),
      });
    }
  }
}
