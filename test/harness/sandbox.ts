/**
 * Does what Docker does after Join: moves the temporary veth end into the container's
 * namespace, names it ethN, applies the IPAM address, the MAC and the routes Join answered.
 */
import type { Netns } from './netns';

export interface JoinAnswer {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway: string;
  GatewayIPv6?: string;
  StaticRoutes: Array<{ Destination: string; RouteType: number; NextHop?: string }>;
}

export async function plugIntoSandbox(host: Netns, sandbox: Netns, join: JoinAnswer, addrs: { v4?: string; v6?: string }, index = 0): Promise<string> {
  const name = `${join.InterfaceName.DstPrefix}${index}`;
  await host.ip(['link', 'set', join.InterfaceName.SrcName, 'netns', sandbox.name]);
  await sandbox.ip(['link', 'set', join.InterfaceName.SrcName, 'name', name]);
  if (addrs.v4) await sandbox.ip(['addr', 'add', addrs.v4, 'dev', name]);
  if (addrs.v6) await sandbox.ip(['-6', 'addr', 'add', addrs.v6, 'dev', name, 'nodad']);
  await sandbox.ip(['link', 'set', name, 'up']);
  for (const r of join.StaticRoutes) {
    if (r.RouteType === 1) await sandbox.ip(['route', 'add', r.Destination, 'dev', name, 'scope', 'link']);
    else await sandbox.ip(['route', 'add', r.Destination, 'via', r.NextHop!]);
  }
  if (join.Gateway) await sandbox.ip(['route', 'add', 'default', 'via', join.Gateway, 'dev', name]);
  if (join.GatewayIPv6) await sandbox.ip(['-6', 'route', 'add', 'default', 'via', join.GatewayIPv6, 'dev', name]);
  return name;
}

/** A host namespace as on a real machine: an uplink to a router namespace holding its default route. */
export async function giveUplink(host: Netns, router: Netns, hostAddr = '172.31.0.1/24', routerAddr = '172.31.0.254/24'): Promise<void> {
  await host.ip(['link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'down0', 'netns', router.name]);
  await host.ip(['addr', 'add', hostAddr, 'dev', 'uplink']);
  await router.ip(['addr', 'add', routerAddr, 'dev', 'down0']);
  await host.ip(['link', 'set', 'uplink', 'up']);
  await router.ip(['link', 'set', 'down0', 'up']);
  await host.ip(['route', 'add', 'default', 'via', routerAddr.split('/')[0]]);
}
