/**
 * A pool's dataplane settings, with Calico's names: `natOutgoing`, and `vxlanMode` / `ipipMode`
 * of Always, CrossSubnet or Never. Records written before these existed carry none of them, so
 * every reader goes through `settingsOf` and sees Calico's defaults (false, Never, Never).
 */
import { EncapModeSchema, type PoolRecord } from '../lib/datastore/records';
import { BadRequestError } from '../lib/errors';
import type { Family } from '../lib/ip';

export const ENCAP_MODES = EncapModeSchema.options;
export type EncapMode = (typeof ENCAP_MODES)[number];

export interface PoolSettings {
  natOutgoing: boolean;
  vxlanMode: EncapMode;
  ipipMode: EncapMode;
}

export type Encapsulation = 'vxlan' | 'ipip' | 'none';

/** How the caller's user spells the two mode fields (flags, manifest fields or variables). */
export interface SettingNames {
  vxlanMode: string;
  ipipMode: string;
}

export function settingsOf(p: Pick<PoolRecord, 'natOutgoing' | 'vxlanMode' | 'ipipMode'>): PoolSettings {
  return { natOutgoing: p.natOutgoing ?? false, vxlanMode: p.vxlanMode ?? 'Never', ipipMode: p.ipipMode ?? 'Never' };
}

/** The one encapsulation a pool uses and when: both at once is refused where pools are written. */
export function encapsulationOf(p: Pick<PoolRecord, 'vxlanMode' | 'ipipMode'>): { kind: Encapsulation; mode: EncapMode } {
  const s = settingsOf(p);
  if (s.vxlanMode !== 'Never') return { kind: 'vxlan', mode: s.vxlanMode };
  if (s.ipipMode !== 'Never') return { kind: 'ipip', mode: s.ipipMode };
  return { kind: 'none', mode: 'Never' };
}

/** Accepts Calico's spelling in any case ("crosssubnet" too), since users type it on a command line. */
export function parseEncapMode(field: string, value: string): EncapMode {
  const hit = ENCAP_MODES.find((m) => m.toLowerCase() === value.trim().toLowerCase());
  if (!hit) throw new BadRequestError(`${field} "${value}" is not a mode: use ${ENCAP_MODES.join(', ')}`);
  return hit;
}

export function parseBool(field: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === 'yes' || v === '1') return true;
  if (v === 'false' || v === 'no' || v === '0') return false;
  throw new BadRequestError(`${field} "${value}" is not a boolean: use true or false`);
}

/**
 * Checks a pool's settings as a whole: one encapsulation at most, and none that its family
 * cannot carry (IP-in-IP is IPv4 only, as in Calico). `names` spells the fields as the caller's
 * user typed them (flags, manifest fields or variables), so the message points at what to change.
 */
export function checkSettings(family: Family, s: PoolSettings, names: SettingNames = { vxlanMode: 'vxlanMode', ipipMode: 'ipipMode' }): PoolSettings {
  if (s.vxlanMode !== 'Never' && s.ipipMode !== 'Never') {
    throw new BadRequestError(
      `${names.vxlanMode} ${s.vxlanMode} and ${names.ipipMode} ${s.ipipMode} are both set: a pool uses one encapsulation, so set one of them to Never`,
    );
  }
  if (family === 6 && s.ipipMode !== 'Never') {
    throw new BadRequestError(`${names.ipipMode} ${s.ipipMode} on an IPv6 pool: IP-in-IP carries IPv4 only; use ${names.vxlanMode} for IPv6`);
  }
  return s;
}

/** The fields as stored: only what differs from the defaults, so old and new records read alike. */
export function storedSettings(s: PoolSettings): Partial<PoolSettings> {
  return {
    ...(s.natOutgoing ? { natOutgoing: true } : {}),
    ...(s.vxlanMode !== 'Never' ? { vxlanMode: s.vxlanMode } : {}),
    ...(s.ipipMode !== 'Never' ? { ipipMode: s.ipipMode } : {}),
  };
}

/** The record with its settings replaced by `s` (defaults left out). */
export function withSettings(rec: PoolRecord, s: PoolSettings): PoolRecord {
  const out: PoolRecord = { ...rec };
  delete out.natOutgoing;
  delete out.vxlanMode;
  delete out.ipipMode;
  return { ...out, ...storedSettings(s) };
}

/** A one-word summary for `calico pool ls` and `calico status`. */
export function describeEncap(p: Pick<PoolRecord, 'vxlanMode' | 'ipipMode'>): string {
  const e = encapsulationOf(p);
  return e.kind === 'none' ? 'none' : `${e.kind === 'vxlan' ? 'vxlan' : 'ipip'}:${e.mode}`;
}
