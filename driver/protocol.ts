/**
 * Wire types of Docker's remote NetworkDriver protocol (libnetwork drivers/remote/api), as zod
 * schemas. Docker sends `null` for nil maps and slices, so every optional collection is nullish.
 */
import { z } from 'zod';
import { dockerId, printable, safeText } from '../lib/validate';

const id = dockerId;
/**
 * Deletions also take IDs that an older version stored unchecked (not a slash or a control
 * character, which no key could hold), so such a record can still be removed by Docker.
 */
const storedId = z
  .string()
  .min(1, 'must be a non-empty ID')
  .max(256, 'must be at most 256 characters')
  .refine((s) => !s.includes('/') && printable(s), 'must be an ID without slashes or control characters');
const options = z.record(z.string(), z.unknown()).nullish();

export const IPAMData = z.object({
  AddressSpace: z.string().nullish(),
  Pool: z.string().nullish(),
  Gateway: z.string().nullish(),
  AuxAddresses: z.record(z.string(), z.string()).nullish(),
});

export const CreateNetworkRequest = z.object({
  NetworkID: id,
  Options: options,
  IPv4Data: z.array(IPAMData).max(64, 'must have at most 64 subnets').nullish(),
  IPv6Data: z.array(IPAMData).max(64, 'must have at most 64 subnets').nullish(),
});
export type CreateNetworkRequest = z.infer<typeof CreateNetworkRequest>;

export const NetworkRequest = z.object({ NetworkID: id });
export const GwAllocCheckRequest = z.object({ Options: options });
export const DeleteNetworkRequest = z.object({ NetworkID: storedId });

export const AllocateNetworkRequest = z.object({
  NetworkID: id,
  Options: z.record(z.string(), z.string()).nullish(),
  IPv4Data: z.array(IPAMData).nullish(),
  IPv6Data: z.array(IPAMData).nullish(),
});

export const EndpointInterface = z.object({
  Address: z.string().nullish(),
  AddressIPv6: z.string().nullish(),
  MacAddress: z.string().nullish(),
});

export const CreateEndpointRequest = z.object({
  NetworkID: id,
  EndpointID: id,
  Interface: EndpointInterface.nullish(),
  Options: options,
});
export type CreateEndpointRequest = z.infer<typeof CreateEndpointRequest>;

export const EndpointRequest = z.object({ NetworkID: id, EndpointID: id });
/** Options: the sandbox's (the port map on Docker 20.10; on 29 it may be absent). */
export const ProgramExternalConnectivityRequest = z.object({ NetworkID: id, EndpointID: id, Options: options });
export const DeleteEndpointRequest = z.object({ NetworkID: storedId, EndpointID: storedId });

export const JoinRequest = z.object({
  NetworkID: id,
  EndpointID: id,
  SandboxKey: safeText(4096).nullish(),
  Options: options,
});

export const DiscoveryRequest = z.object({
  DiscoveryType: z.number().int(),
  DiscoveryData: z.unknown(),
});

/** Join's answer: what Docker moves into the sandbox and how the container routes. */
export interface JoinResponse {
  /** DstName: the name asked for with `--driver-opt com.docker.network.endpoint.ifname=NAME`. */
  InterfaceName: { SrcName: string; DstPrefix: string; DstName?: string };
  Gateway: string;
  GatewayIPv6?: string;
  StaticRoutes: Array<{ Destination: string; RouteType: 0 | 1; NextHop?: string }>;
  DisableGatewayService: boolean;
}
