/**
 * Choosing the host ports of an endpoint's bindings against what other endpoints of this host
 * already publish. Pure: the holders and the ephemeral range come in, the bindings with
 * `published` set (or a ConflictError naming the port and who holds it) come out, so the driver
 * checks and claims in one step under its lock and writes only a complete answer.
 */
import { isIP } from 'node:net';
import { ConflictError } from '../lib/errors';
import type { PortBindingRecord } from '../lib/datastore/records';
import { bindingFamilies, describeBinding } from './request';

type Family = 4 | 6;

/** An endpoint whose published bindings are taken. */
export interface Holder {
  endpoint: string;
  /** Docker's name for its container, once learned. */
  containerName?: string;
  families: ReadonlySet<Family>;
  bindings: readonly PortBindingRecord[];
}

/** Docker's fallback when the kernel's ip_local_port_range cannot be read. */
export const DEFAULT_EPHEMERAL: readonly [number, number] = [49153, 65535];

/** `ip_local_port_range`'s text ("32768\t60999") as a range, or the default. */
export function parseEphemeralRange(text: string | undefined): readonly [number, number] {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text ?? '');
  const [lo, hi] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  return lo >= 1 && hi <= 65535 && lo <= hi ? [lo, hi] : DEFAULT_EPHEMERAL;
}

/** The address a binding takes for family `f`: `*` for every address of the family. */
function addressFor(b: Pick<PortBindingRecord, 'hostIp'>, f: Family): string {
  return b.hostIp === undefined || b.hostIp === '0.0.0.0' || b.hostIp === '::' ? '*' : isIP(b.hostIp) === f ? b.hostIp : '-';
}

/** Two bindings of the same host port overlap if some family has them on a common address. */
function overlaps(a: PortBindingRecord, fa: readonly Family[], b: PortBindingRecord, fb: readonly Family[]): boolean {
  if (a.protocol !== b.protocol) return false;
  return fa.some((f) => {
    if (!fb.includes(f)) return false;
    const [x, y] = [addressFor(a, f), addressFor(b, f)];
    return x === '*' || y === '*' || x === y;
  });
}

interface Taken {
  binding: PortBindingRecord;
  families: readonly Family[];
  holder: string;
}

const holderName = (h: Holder) =>
  h.containerName ? `container ${h.containerName} (endpoint ${h.endpoint.slice(0, 12)})` : `endpoint ${h.endpoint.slice(0, 12)}`;

/** Whether nothing else on the host (a listening process, Docker's proxy for a bridge container) holds the port. */
export type HostFree = (b: PortBindingRecord, port: number, families: readonly Family[]) => Promise<boolean>;

const OTHER = "something else on this host (a process listening on it, or a container on another network such as Docker's bridge)";

/**
 * `want` with `published` set: a fixed port must be free; a range or 0 (any, from `ephemeral`)
 * takes its first free port. A binding with no family the endpoint has publishes nothing and
 * stays unpublished. Ports this endpoint's earlier bindings took count as taken; `hostFree`
 * (the driver's bind probe) is asked only about ports no calico endpoint holds.
 */
export async function choosePorts(
  want: readonly PortBindingRecord[],
  families: ReadonlySet<Family>,
  holders: readonly Holder[],
  ephemeral: readonly [number, number],
  host: string,
  hostFree: HostFree = () => Promise.resolve(true),
): Promise<PortBindingRecord[]> {
  const byPort = new Map<number, Taken[]>();
  const take = (t: Taken, port: number) => byPort.set(port, [...(byPort.get(port) ?? []), t]);
  for (const h of holders)
    for (const b of h.bindings)
      if (b.published !== undefined) take({ binding: b, families: bindingFamilies(b, h.families), holder: holderName(h) }, b.published);
  const out: PortBindingRecord[] = [];
  for (const w of want) {
    const { published: _old, ...b } = w;
    const fam = bindingFamilies(b, families);
    if (!fam.length) {
      out.push(b);
      continue;
    }
    const blocker = async (port: number): Promise<Taken | undefined> =>
      (byPort.get(port) ?? []).find((t) => overlaps(b, fam, t.binding, t.families)) ??
      ((await hostFree(b, port, fam)) ? undefined : { binding: b, families: fam, holder: OTHER });
    const [lo, hi] = b.hostPort === 0 ? ephemeral : [b.hostPort, b.hostPortEnd];
    let first: Taken | undefined;
    let chosen: PortBindingRecord | undefined;
    for (let p = lo; p <= hi && !chosen; p++) {
      const t = await blocker(p);
      if (!t) {
        chosen = { ...b, published: p };
        take({ binding: chosen, families: fam, holder: 'this container (asked twice)' }, p);
      } else first ??= t;
    }
    if (chosen) {
      out.push(chosen);
      continue;
    }
    const what = lo === hi ? `host port ${describeBinding({ ...b, published: lo })}` : `every host port of ${describeBinding(b)} (${lo}-${hi})`;
    if (first!.holder === OTHER) throw new ConflictError(`${what} is in use on host ${host} by ${OTHER}; choose another host port (or -P for any free one)`);
    throw new ConflictError(
      `${what} is already published on host ${host} by ${first!.holder}; choose another host port (or -P for any free one), or stop that container first`,
    );
  }
  return out;
}
