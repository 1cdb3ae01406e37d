/** What a host publishes about itself for encapsulation: its subnet (CrossSubnet) and VTEP MAC. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { formatCidr, parseIP, enclosing } from '../lib/ip';

const run = promisify(execFile);

/** The subnet of the local interface address `ip` (172.31.1.2 on a /24 → 172.31.1.0/24), if it is local. */
export async function subnetOf(ip: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', 'addr', 'show']);
    const links = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
    for (const l of links)
      for (const a of l.addr_info ?? []) {
        if (a.local === ip && a.prefixlen !== undefined) return formatCidr(enclosing(parseIP(ip), a.prefixlen));
      }
  } catch {
    // no iproute2 or no such address: CrossSubnet then treats every host as across a router
  }
  return undefined;
}
