/**
 * The host interface is `cali` + the first 11 characters of the endpoint ID, so two IDs can
 * map to one name. The endpoint records say who owns an interface: nothing deletes a veth or
 * routes through it for an endpoint that is not its owner, and CreateEndpoint refuses an ID
 * whose interface another endpoint already holds.
 */
import type { NodeContext } from '../agent/context';
import type { EndpointRecord } from '../lib/datastore/records';
import { ConflictError } from '../lib/errors';

/** Who else holds `ifName`, by record. */
export async function otherUsers(ctx: NodeContext, endpointId: string, ifName: string): Promise<EndpointRecord[]> {
  // Before start-up listed this host's endpoints, the answer needs etcd.
  await ctx.ready();
  return (await ctx.records.endpointsUsing(ifName)).filter((e) => e.id !== endpointId);
}

export function describeHolder(e: EndpointRecord): string {
  return `endpoint ${e.id.slice(0, 12)}${e.containerName ? ` (container ${e.containerName})` : ''}`;
}

/** CreateEndpoint and Join: refuse an endpoint whose interface another endpoint holds. */
export async function claimInterface(ctx: NodeContext, endpointId: string, ifName: string): Promise<void> {
  const others = await otherUsers(ctx, endpointId, ifName);
  if (others.length) {
    throw new ConflictError(
      `endpoint ${endpointId.slice(0, 12)} would use host interface ${ifName}, which ${describeHolder(others[0])} already uses ` +
        `(their IDs share the first 11 characters); Docker's endpoint IDs are random, so retry the container start to get another ID`,
    );
  }
}

/**
 * Leave and DeleteEndpoint: may this endpoint delete the interface? Yes if no other endpoint
 * holds it (its own, or an orphan veth nobody owns); otherwise it is left alone and logged.
 */
export async function mayRemoveInterface(ctx: NodeContext, endpointId: string, ifName: string, what: string): Promise<boolean> {
  const others = await otherUsers(ctx, endpointId, ifName);
  if (!others.length) return true;
  ctx.log.warn(`${what}: left host interface ${ifName} in place, it belongs to another endpoint`, {
    endpoint: endpointId,
    interface: ifName,
    owner: others[0].id,
  });
  return false;
}
