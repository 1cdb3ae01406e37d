/**
 * Gives memory `calico node` has freed back to the kernel. Its Buffers, gRPC frames and JSON
 * text are malloc'd, and glibc keeps what they free inside its arenas; its dynamic thresholds
 * (each large free raises the mmap threshold, up to 32 MB, and the trim threshold to twice
 * that) make it keep ever more. So at start the thresholds are fixed and the arenas capped, and
 * a timer returns the free pages of every arena (malloc_trim) once enough has piled up:
 * measured with 10,000 endpoints in the cluster and container starts going on, 2-10 MB per
 * trim, each under a few ms. Both come from a small addon (native/calico_memory.c); without it
 * (not built, or not glibc) the daemon runs the same, only larger, and says so once.
 */
import path from 'node:path';
import type { Logger } from '../log';
import { loadAddon } from '../native-addon';

export interface MemoryAddon {
  tune(arenaMax: number, mmapThreshold: number, trimThreshold: number): boolean;
  freeBytes(): number;
  trim(): boolean;
}

const BUILT = path.join('lib', 'memory', 'native', 'build', 'Release', 'calico_memory.node');

/** Where the addon may be: CALICO_MEMORY_ADDON, beside this module (the image), the source tree's build. */
export function memoryAddonCandidates(): string[] {
  const env = process.env.CALICO_MEMORY_ADDON;
  return [
    ...(env ? [env] : []),
    path.join(__dirname, 'calico_memory.node'),
    path.join(__dirname, '..', '..', '..', BUILT),
    path.join(__dirname, '..', '..', BUILT),
  ];
}

export function loadMemoryAddon(): MemoryAddon | { missing: string } {
  return loadAddon<MemoryAddon>(memoryAddonCandidates());
}

export interface MemoryKeeperOptions {
  /** How often the arenas' free total is looked at. */
  intervalMs?: number;
  /** Trim once at least this much is free inside the arenas and the process grew as much since the last trim. */
  minFreeBytes?: number;
  /** The process's resident bytes (tests give their own). */
  resident?: () => number;
}

/**
 * Two arenas for the main thread, the dataplane workers and libuv's pool: each extra thread
 * otherwise gets its own, each keeping its own free memory. Blocks from 256 KB are mmap'd (and
 * so unmapped when freed); the heap's top is given back once 4 MB of it are free.
 */
const ARENA_MAX = 2;
const MMAP_THRESHOLD = 256 * 1024;
const TRIM_THRESHOLD = 4 * 1024 * 1024;

export class MemoryKeeper {
  private timer?: NodeJS.Timeout;
  private readonly intervalMs: number;
  private readonly minFreeBytes: number;
  /** Totals since start, for the log and for tests. */
  trims = 0;
  releasedBytes = 0;
  private rssAfterTrim = 0;
  private readonly resident: () => number;

  constructor(
    private readonly addon: MemoryAddon,
    private readonly log: Logger,
    opts: MemoryKeeperOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 5_000;
    this.minFreeBytes = opts.minFreeBytes ?? 8 * 1024 * 1024;
    this.resident = opts.resident ?? (() => process.memoryUsage.rss());
  }

  /** Call early: the arena cap applies to threads that allocate for the first time after it. */
  start(): void {
    if (!this.addon.tune(ARENA_MAX, MMAP_THRESHOLD, TRIM_THRESHOLD))
      this.log.warn("the allocator did not take calico's memory settings; memory use may be higher");
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Trims when enough is free and the process grew since the last trim: the free total alone
   * cannot tell, as pages already given back still count as free in the arenas.
   */
  check(): number {
    const rss = this.resident();
    if (rss - this.rssAfterTrim < this.minFreeBytes || this.addon.freeBytes() < this.minFreeBytes) return 0;
    const t0 = performance.now();
    this.addon.trim();
    this.rssAfterTrim = this.resident();
    const released = Math.max(0, rss - this.rssAfterTrim);
    this.trims++;
    this.releasedBytes += released;
    this.log.debug('memory returned to the kernel', { releasedMb: Math.round(released / 1048576), ms: Math.round(performance.now() - t0) });
    return released;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The keeper, or undefined (logged once) where the addon is not there. */
export function startMemoryKeeper(log: Logger, opts?: MemoryKeeperOptions): MemoryKeeper | undefined {
  const addon = loadMemoryAddon();
  if ('missing' in addon) {
    log.warn('the memory addon is not built, so freed memory stays with the process (run scripts/install-deps.sh, or set CALICO_MEMORY_ADDON)', {
      tried: addon.missing,
    });
    return undefined;
  }
  const keeper = new MemoryKeeper(addon, log, opts);
  keeper.start();
  return keeper;
}
