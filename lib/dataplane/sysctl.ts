/**
 * sysctl as plain file access under /proc/sys: no `sysctl` process per key, and the values are
 * those of the network namespace of the calling process. Writes are synchronous on purpose: a
 * /proc/sys write takes microseconds, far less than a hop through libuv's thread pool.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { BadRequestError } from '../errors';

export const PROC_SYS = '/proc/sys';

/** What the kernel accepts as an interface name (IFNAMSIZ - 1), minus anything odd in a path. */
const ifNamePattern = /^[A-Za-z0-9_.-]{1,15}$/;

/** True if `name` is a valid interface name that is also safe as one path segment. */
export function isValidIfName(name: string): boolean {
  return ifNamePattern.test(name) && name !== '.' && name !== '..';
}

/** Throws BadRequestError unless `name` is a valid interface name. */
export function assertIfName(name: string, what = 'interface name'): void {
  if (!isValidIfName(name)) {
    throw new BadRequestError(`invalid ${what} ${JSON.stringify(name)}: want 1-15 characters of [A-Za-z0-9_.-]`);
  }
}

const segmentPattern = /^[A-Za-z0-9_.-]+$/;

/**
 * Maps a slash-separated key (`net/ipv4/ip_forward`) to its file. Slashes, not dots, because
 * interface names may contain dots (`eth0.100`).
 */
export function sysctlPath(key: string, root = PROC_SYS): string {
  const segments = key.split('/');
  if (!segments.every((s) => segmentPattern.test(s) && s !== '.' && s !== '..')) {
    throw new BadRequestError(`invalid sysctl key ${JSON.stringify(key)}`);
  }
  return `${root}/${segments.join('/')}`;
}

/** Reads one value, without the trailing newline. */
export function readSysctl(key: string, root = PROC_SYS): string {
  return readFileSync(sysctlPath(key, root), 'utf8').trimEnd();
}

/** Writes one value. Filesystem errors (ENOENT for a missing interface, EACCES, ...) propagate. */
export function writeSysctl(key: string, value: string | number, root = PROC_SYS): void {
  writeFileSync(sysctlPath(key, root), `${value}\n`);
}

/** Key of a per-interface setting: `net/<family>/conf/<ifName>/<setting>`. */
export function confKey(family: 'ipv4' | 'ipv6', ifName: string, setting: string): string {
  assertIfName(ifName);
  return `net/${family}/conf/${ifName}/${setting}`;
}

/** Key of a per-interface neighbour setting: `net/<family>/neigh/<ifName>/<setting>`. */
export function neighKey(family: 'ipv4' | 'ipv6', ifName: string, setting: string): string {
  assertIfName(ifName);
  return `net/${family}/neigh/${ifName}/${setting}`;
}
