/** Ranges checked in more than one place (configuration, CLI, requests), defined once. */

export const ASN_MIN = 1;
export const ASN_MAX = 4294967295;
export const ASN_RANGE = `${ASN_MIN} to ${ASN_MAX}`;

export function validAsn(n: number): boolean {
  return Number.isInteger(n) && n >= ASN_MIN && n <= ASN_MAX;
}

/** The smallest MTU the kernel takes for IPv4; IPv6 needs 1280. */
export const MTU_MIN = 68;
export const MTU_MIN_IPV6 = 1280;
export const MTU_MAX = 65535;

export function validMtu(n: number, ipv6 = false): boolean {
  return Number.isInteger(n) && n >= (ipv6 ? MTU_MIN_IPV6 : MTU_MIN) && n <= MTU_MAX;
}
