/**
 * A small table of ours beside the firewall's (outgoing NAT, published ports): rewritten whole
 * per apply, and remembered as `nft list` prints it, so the periodic check can tell a hand edit
 * or a flush from what we wrote and repair it.
 */
import { nft } from './addon';

export class OwnTable {
  private written?: string;

  constructor(private readonly table: string) {}

  /** Runs `script` (which replaces the table's contents); `needed` false means it leaves none. */
  async write(script: string, needed: boolean): Promise<void> {
    this.written = undefined;
    await nft(script);
    this.written = needed ? await this.listing() : '';
  }

  /** Whether the kernel still holds what the last write left (false before any write). */
  async intact(): Promise<boolean> {
    return this.written !== undefined && (await this.listing()) === this.written;
  }

  /** Deletes the table; no table is success. */
  async remove(): Promise<void> {
    this.written = undefined;
    await nft(`add table ${this.table}\ndelete table ${this.table}\n`);
  }

  private async listing(): Promise<string> {
    try {
      return await nft(`list table ${this.table}`);
    } catch {
      return ''; // no table
    }
  }
}
