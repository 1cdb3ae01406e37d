/**
 * Pure allocation inside one host-affine block (Calico's AllocationBlock, simplified): no I/O,
 * every function returns a new record so a failed compare-and-swap leaves nothing to undo.
 */
import type { BlockRecord, Owner } from '../lib/datastore/records';
import { type Cidr, type IP, cidrSize, containsIP, formatCidr } from '../lib/ip';

export function newBlock(cidr: Cidr, affinity: string | null): BlockRecord {
  const size = Number(cidrSize(cidr));
  return { cidr: formatCidr(cidr), affinity, allocations: {}, unallocated: Array.from({ length: size }, (_, i) => i) };
}

export function ipAt(block: Cidr, ordinal: number): IP {
  return { family: block.family, value: block.base + BigInt(ordinal) };
}

export function ordinalOf(block: Cidr, ip: IP): number {
  if (!containsIP(block, ip)) throw new RangeError(`address is outside block ${formatCidr(block)}`);
  return Number(ip.value - block.base);
}

export function isEmpty(rec: BlockRecord): boolean {
  return Object.keys(rec.allocations).length === 0;
}

function inside(ip: IP, within: Cidr[] | undefined): boolean {
  return !within || within.some((c) => containsIP(c, ip));
}

/** The address already held under `handle`, if any: one request never gets two addresses. */
export function heldBy(rec: BlockRecord, block: Cidr, handle: string): IP | undefined {
  for (const [o, owner] of Object.entries(rec.allocations)) if (owner.handle === handle) return ipAt(block, Number(o));
  return undefined;
}

/**
 * Takes the first free ordinal, in reuse order, whose address lies inside `within` (a
 * network's subnet or ip-range). Returns undefined when the block has none. Idempotent per
 * owner handle: a request whose earlier write landed although its reply was lost (an etcd
 * member failing mid-call) gets the address it already holds, unchanged.
 */
export function allocate(rec: BlockRecord, block: Cidr, owner: Owner, within?: Cidr[]): { rec: BlockRecord; ip: IP } | undefined {
  const already = heldBy(rec, block, owner.handle);
  if (already) return { rec, ip: already };
  const idx = rec.unallocated.findIndex((o) => inside(ipAt(block, o), within));
  if (idx < 0) return undefined;
  const ordinal = rec.unallocated[idx];
  return {
    ip: ipAt(block, ordinal),
    rec: {
      ...rec,
      allocations: { ...rec.allocations, [ordinal]: owner },
      unallocated: [...rec.unallocated.slice(0, idx), ...rec.unallocated.slice(idx + 1)],
    },
  };
}

/** Marks one chosen address as taken, or reports who already holds it. */
export function assign(rec: BlockRecord, block: Cidr, ip: IP, owner: Owner): { rec: BlockRecord } | { heldBy: Owner } {
  const ordinal = ordinalOf(block, ip);
  const held = rec.allocations[ordinal];
  // Our own earlier write (a replay after a lost reply) is success, not a clash.
  if (held) return held.handle === owner.handle ? { rec } : { heldBy: held };
  return {
    rec: {
      ...rec,
      allocations: { ...rec.allocations, [ordinal]: owner },
      unallocated: rec.unallocated.filter((o) => o !== ordinal),
    },
  };
}

/** Frees one address; released ordinals go to the tail so they are reused last. */
export function release(rec: BlockRecord, block: Cidr, ip: IP): BlockRecord | undefined {
  const ordinal = ordinalOf(block, ip);
  if (!rec.allocations[ordinal]) return undefined;
  const allocations = { ...rec.allocations };
  delete allocations[ordinal];
  return { ...rec, allocations, unallocated: [...rec.unallocated, ordinal] };
}

export function setOwner(rec: BlockRecord, block: Cidr, ip: IP, owner: Owner): BlockRecord {
  const ordinal = ordinalOf(block, ip);
  return { ...rec, allocations: { ...rec.allocations, [ordinal]: owner } };
}

export function ownerOf(rec: BlockRecord, block: Cidr, ip: IP): Owner | undefined {
  return rec.allocations[ordinalOf(block, ip)];
}

/** Every allocated address with its owner, in address order. */
export function allocations(rec: BlockRecord, block: Cidr): Array<{ ip: IP; owner: Owner }> {
  return Object.entries(rec.allocations)
    .map(([o, owner]) => ({ ip: ipAt(block, Number(o)), owner }))
    .sort((a, b) => (a.ip.value < b.ip.value ? -1 : 1));
}
