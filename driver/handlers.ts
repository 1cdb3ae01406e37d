/** The NetworkDriver route table: one entry per method Docker's remote driver proxy calls. */
import type { NodeContext } from '../agent/context';
import type { Routes } from '../lib/server';
import { parseRequest } from '../lib/validate';
import { EndpointHandlers } from './endpoint';
import { JoinLeaveHandlers } from './joinleave';
import { NetworkHandlers } from './network';
import { PortHandlers } from './ports';
import type { Sandboxes } from './sandboxes';
import { DiscoveryRequest } from './protocol';

/**
 * Scope "local": networks belong to each Docker daemon (swarm services use --config-from).
 * ConnectivityScope "global": containers on different hosts reach each other (routed by BGP).
 * GwAllocChecker: Docker 28+ asks GwAllocCheck whether to reserve gateway addresses; engines
 * before 28 ignore the field.
 */
export const NETWORK_CAPABILITIES = { Scope: 'local', ConnectivityScope: 'global', GwAllocChecker: true };

export function networkDriverRoutes(ctx: NodeContext, sandboxes: Sandboxes): Routes {
  const net = new NetworkHandlers(ctx);
  const ports = new PortHandlers(ctx);
  const ep = new EndpointHandlers(ctx, sandboxes, ports);
  const jl = new JoinLeaveHandlers(ctx, sandboxes, ports);
  const ack = (schema: typeof DiscoveryRequest, method: string) => (b: unknown) => {
    parseRequest(schema, b, method);
    return {};
  };
  return {
    '/NetworkDriver.GetCapabilities': { hasBody: false, handler: () => NETWORK_CAPABILITIES },
    '/NetworkDriver.GwAllocCheck': { hasBody: true, handler: (b) => net.gwAllocCheck(b) },
    '/NetworkDriver.CreateNetwork': { hasBody: true, handler: (b) => net.createNetwork(b) },
    '/NetworkDriver.DeleteNetwork': { hasBody: true, handler: (b) => net.deleteNetwork(b) },
    '/NetworkDriver.AllocateNetwork': { hasBody: true, handler: (b) => net.allocateNetwork(b) },
    '/NetworkDriver.FreeNetwork': { hasBody: true, handler: (b) => net.freeNetwork(b) },
    '/NetworkDriver.CreateEndpoint': { hasBody: true, handler: (b) => ep.createEndpoint(b) },
    '/NetworkDriver.DeleteEndpoint': { hasBody: true, handler: (b) => ep.deleteEndpoint(b) },
    '/NetworkDriver.EndpointOperInfo': { hasBody: true, handler: (b) => ep.endpointOperInfo(b) },
    '/NetworkDriver.Join': { hasBody: true, handler: (b) => jl.join(b) },
    '/NetworkDriver.Leave': { hasBody: true, handler: (b) => jl.leave(b) },
    // Published ports (-p): Docker sends these for the container's gateway endpoint only.
    '/NetworkDriver.ProgramExternalConnectivity': { hasBody: true, handler: (b) => ports.program(b) },
    '/NetworkDriver.RevokeExternalConnectivity': { hasBody: true, handler: (b) => ports.revoke(b) },
    '/NetworkDriver.DiscoverNew': { hasBody: true, handler: ack(DiscoveryRequest, 'NetworkDriver.DiscoverNew') },
    '/NetworkDriver.DiscoverDelete': { hasBody: true, handler: ack(DiscoveryRequest, 'NetworkDriver.DiscoverDelete') },
  };
}
