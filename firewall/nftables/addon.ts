/**
 * The libnftables addon (native/calico_nft.c): every nft transaction of this process goes through
 * it, one buffer per call, no process forked. Found at CALICO_NFT_ADDON, next to this module (the
 * managed plugin's rootfs puts it there) or where scripts/install-deps.sh builds it in the source
 * tree (from dist/ or from a ts-node style run alike).
 */
import path from 'node:path';
import { InternalError, UnavailableError } from '../../lib/errors';
import { loadAddon } from '../../lib/native-addon';

interface Native {
  run(commands: string, flags?: number): Promise<string>;
}

const JSON_OUTPUT = 1;
const DRY_RUN = 2;
const BUILT = path.join('firewall', 'nftables', 'native', 'build', 'Release', 'calico_nft.node');

export function addonCandidates(): string[] {
  const env = process.env.CALICO_NFT_ADDON;
  return [
    ...(env ? [env] : []),
    path.join(__dirname, 'calico_nft.node'),
    // dist/firewall/nftables → the source tree's build, and firewall/nftables itself.
    path.join(__dirname, '..', '..', '..', BUILT),
    path.join(__dirname, '..', '..', BUILT),
  ];
}

let native: Native | undefined;
let loadError: string | undefined;

function load(): Native {
  if (native) return native;
  if (loadError) throw new UnavailableError(loadError);
  const found = loadAddon<Native>(addonCandidates());
  if (!('missing' in found)) return (native = found);
  loadError = `the libnftables addon could not be loaded (run scripts/install-deps.sh, or set CALICO_NFT_ADDON): tried ${found.missing}`;
  throw new UnavailableError(loadError);
}

/** Runs one nft batch (nft -f syntax) as one transaction: all of it or nothing. */
export async function nft(commands: string): Promise<string> {
  try {
    return await load().run(commands);
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    throw new InternalError(`nft transaction failed: ${(err as Error).message.trim()}`);
  }
}

/** `list …` in JSON, parsed. */
export async function nftJson(command: string): Promise<{ nftables: Array<Record<string, unknown>> }> {
  try {
    return JSON.parse(await load().run(command, JSON_OUTPUT)) as { nftables: Array<Record<string, unknown>> };
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    throw new InternalError(`nft ${command} failed: ${(err as Error).message.trim()}`);
  }
}

/**
 * For CALICO_FIREWALL=auto: the addon loads and the kernel accepts a table like ours (a base
 * chain, a verdict map, a concatenated set) in a transaction checked but not committed.
 */
export async function nftablesAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const n = load();
    await n.run(
      [
        'add table inet calico-probe',
        'add set inet calico-probe s { type ifname . ipv4_addr; }',
        'add map inet calico-probe m { type ifname : verdict; }',
        'add chain inet calico-probe c { type filter hook forward priority filter - 20; policy accept; }',
        'add rule inet calico-probe c iifname . ip saddr != @s drop',
        'add rule inet calico-probe c iifname vmap @m',
        '',
      ].join('\n'),
      DRY_RUN,
    );
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `nftables is not usable: ${(err as Error).message.trim()}` };
  }
}
