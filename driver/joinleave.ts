/**
 * Join wires the container: Docker moves the temporary veth end into the sandbox, names it
 * ethN, applies the IPAM address and the routes answered here. The container's only routes
 * are a connected /32 to 169.254.1.1 and a default through it; the host answers for that
 * address by proxy ARP and routes back through a /32 on its veth end, so the subnet plays no
 * part in forwarding and every host is a router. Leave (sent twice on some rollbacks) removes
 * the veth; a missing veth is success.
 */
import type { NodeContext } from '../agent/context';
import { ConflictError, NotFoundError, UnavailableError, errorMessage } from '../lib/errors';
import { parseRequest } from '../lib/validate';
import { containsIP, parseCidr, parseIP } from '../lib/ip';
import { type Encapsulation, encapsulationOf } from '../ipam/pool-settings';
import { OVERHEAD } from '../encap/plan';
import { CONTAINER_IF_PREFIX, hostIfName, tempIfName } from './names';
import { claimInterface, mayRemoveInterface } from './ownership';
import { DeleteEndpointRequest, JoinRequest, type JoinResponse } from './protocol';
import type { Sandboxes } from './sandboxes';
import type { PortHandlers } from './ports';

export const IPV4_GATEWAY = '169.254.1.1';
const FIREWALL_WAIT_MS = 3000;

export class JoinLeaveHandlers {
  constructor(
    private ctx: NodeContext,
    private sandboxes: Sandboxes,
    private ports: PortHandlers,
  ) {}

  async join(body: unknown): Promise<JoinResponse> {
    const req = parseRequest(JoinRequest, body, 'NetworkDriver.Join');
    await this.ctx.ready();
    // Taken first: CreateEndpoint may have answered while its record was still being written.
    const recorded = this.ctx.records.written(req.EndpointID);
    recorded.catch(() => undefined);
    const ep = await this.ctx.records.getEndpoint(req.EndpointID);
    if (!ep) throw new NotFoundError(`endpoint ${req.EndpointID.slice(0, 12)} is not known to calico on host ${this.ctx.host}; CreateEndpoint must come first`);
    // Routes go on the veth only for the endpoint that owns it, by record.
    if (ep.ifName !== hostIfName(req.EndpointID)) {
      throw new ConflictError(
        `endpoint ${ep.id.slice(0, 12)} is recorded with host interface ${ep.ifName}, not ${hostIfName(req.EndpointID)}; remove and recreate it`,
      );
    }
    await claimInterface(this.ctx, ep.id, ep.ifName);
    const network = await this.ctx.records.getNetwork(req.NetworkID);
    const mtu = network?.mtu ?? (await this.ctx.defaultMtu(await this.encapsulationFor([...ep.ipv4, ...ep.ipv6])));
    const ipv4 = ep.ipv4.map((c) => c.split('/')[0]);
    const ipv6 = ep.ipv6.map((c) => c.split('/')[0]);
    const [wiring, record] = await Promise.allSettled([
      this.ctx.dataplane.wireEndpoint({
        hostIfName: hostIfName(req.EndpointID),
        tempIfName: tempIfName(req.EndpointID),
        mtu,
        containerMac: ep.mac,
        ipv4,
        ipv6,
      }),
      recorded,
    ]);
    if (record.status === 'rejected') {
      // No container may run on an endpoint etcd does not know: it would be invisible to
      // policy, to other hosts and to reconciliation.
      if (wiring.status === 'fulfilled') await this.ctx.dataplane.unwireEndpoint(hostIfName(req.EndpointID));
      throw new UnavailableError(
        `endpoint ${ep.id.slice(0, 12)} could not be recorded in etcd (${errorMessage(record.reason)}); Docker removes it, start the container again once etcd answers`,
      );
    }
    if (wiring.status === 'rejected') throw wiring.reason;
    const wired = wiring.value;
    const sandbox = req.SandboxKey ?? '';
    // Only a container's first calico interface carries the gateway (see sandboxes.ts).
    const first = !this.sandboxes.hasOthers(sandbox, ep.id);
    this.sandboxes.joined(sandbox, ep.id);
    if (sandbox && ep.sandbox !== sandbox) {
      // Remembered in etcd for a restart of calico node; the answer does not wait for it.
      this.ctx.records
        .modifyEndpoint(ep.id, (cur) => (cur.sandbox === sandbox ? undefined : { ...cur, sandbox }))
        .catch((err) => this.ctx.log.warn("could not record the endpoint's sandbox", { endpoint: ep.id, error: errorMessage(err) }));
    }
    // Unknown interfaces are dropped by the firewall, so without this wait a container's first
    // packets would be lost; the policy agent usually has the rules from CreateEndpoint already.
    if (this.ctx.firewall && !(await this.ctx.firewall.covers(ep.ifName, FIREWALL_WAIT_MS))) {
      this.ctx.log.warn('the firewall has no rules for this endpoint yet; its traffic is dropped until they are applied', {
        endpoint: ep.id,
        interface: ep.ifName,
      });
    }
    this.ctx.log.info('endpoint joined', { endpoint: ep.id, interface: ep.ifName, mtu, gateway: first });
    const res: JoinResponse = {
      InterfaceName: { SrcName: tempIfName(req.EndpointID), DstPrefix: CONTAINER_IF_PREFIX, ...(ep.dstName ? { DstName: ep.dstName } : {}) },
      Gateway: first && ipv4.length ? IPV4_GATEWAY : '',
      StaticRoutes: first && ipv4.length ? [{ Destination: `${IPV4_GATEWAY}/32`, RouteType: 1 }] : [],
      // A second interface needs no gateway service: the container's first one routes.
      DisableGatewayService: !first,
    };
    // Only endpoints with an IPv6 address get an IPv6 gateway: Docker disables IPv6 inside
    // IPv4-only containers and would fail to install the route (libnetwork-plugin#192).
    if (first && ipv6.length && wired.ipv6Gateway) res.GatewayIPv6 = wired.ipv6Gateway;
    return res;
  }

  /** The encapsulation of the endpoint's pools that costs the most bytes: its veth must fit inside that tunnel. */
  private async encapsulationFor(cidrs: string[]): Promise<Encapsulation> {
    let worst: Encapsulation = 'none';
    const pools = await this.ctx.pools.list();
    for (const c of cidrs) {
      const ip = parseIP(c.split('/')[0]);
      const pool = pools.find((p) => containsIP(parseCidr(p.cidr), ip));
      const kind = pool ? encapsulationOf(pool).kind : 'none';
      if (OVERHEAD[kind] > OVERHEAD[worst]) worst = kind;
    }
    return worst;
  }

  async leave(body: unknown) {
    const req = parseRequest(DeleteEndpointRequest, body, 'NetworkDriver.Leave');
    const ifName = hostIfName(req.EndpointID);
    // Docker 29 sends no Revoke for an endpoint it did not program; 20.10 may skip it on errors.
    await this.ports.clearQuietly(req.EndpointID);
    if (await mayRemoveInterface(this.ctx, req.EndpointID, ifName, 'Leave')) await this.ctx.dataplane.unwireEndpoint(ifName);
    this.sandboxes.left(req.EndpointID);
    this.ctx.log.info('endpoint left', { endpoint: req.EndpointID });
    return {};
  }
}
