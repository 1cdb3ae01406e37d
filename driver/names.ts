/** Interface names derived from the endpoint ID: Linux allows 15 characters. */
import { BadRequestError } from '../lib/errors';
import { shown } from '../lib/ip';

export const HOST_IF_PREFIX = 'cali';
export const TEMP_IF_PREFIX = 'tmp';
export const CONTAINER_IF_PREFIX = 'eth';

function idPart(endpointId: string): string {
  if (!/^[A-Za-z0-9]{11,}/.test(endpointId)) {
    throw new BadRequestError(`invalid EndpointID "${endpointId}": expected Docker's hexadecimal endpoint ID (at least 11 letters or digits)`);
  }
  return endpointId.slice(0, 11);
}

export function hostIfName(endpointId: string): string {
  return HOST_IF_PREFIX + idPart(endpointId);
}

/** The Docker-reserved CreateEndpoint option naming the container's interface (Docker 28+). */
export const IFNAME_OPTION = 'com.docker.network.endpoint.ifname';

/**
 * A container interface name as the kernel takes it (dev_valid_name): 1 to 15 bytes, not "."
 * or "..", no slash, colon or whitespace. Checked here so a bad name fails CreateEndpoint with
 * its reason rather than Docker's rename failing after Join.
 */
export function containerIfName(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const bad = (why: string) => new BadRequestError(`invalid --driver-opt ${IFNAME_OPTION}=${shown(value)}: ${why}`);
  if (typeof value !== 'string') throw bad('the interface name must be a string');
  if (Buffer.byteLength(value) > 15) throw bad('an interface name has at most 15 characters');
  if (value === '.' || value === '..') throw bad('"." and ".." are no interface names');
  if (/[/:\s]/.test(value) || [...value].some((c) => c.charCodeAt(0) < 0x21 || c.charCodeAt(0) === 0x7f))
    throw bad('an interface name has no slash, colon, space or control character');
  return value;
}

export function tempIfName(endpointId: string): string {
  return TEMP_IF_PREFIX + idPart(endpointId);
}
