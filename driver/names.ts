/** Interface names derived from the endpoint ID: Linux allows 15 characters. */
import { BadRequestError } from '../lib/errors';

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

export function tempIfName(endpointId: string): string {
  return TEMP_IF_PREFIX + idPart(endpointId);
}
