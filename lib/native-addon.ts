/** Loads the first of a native addon's candidate paths that exists and loads, or says what was tried. */
import fs from 'node:fs';
import { createRequire } from 'node:module';

export function loadAddon<T>(candidates: string[]): T | { missing: string } {
  const tried: string[] = [];
  for (const p of candidates) {
    if (!fs.existsSync(p)) {
      tried.push(`${p} (missing)`);
      continue;
    }
    try {
      return createRequire(__filename)(p) as T;
    } catch (err) {
      tried.push(`${p} (${(err as Error).message.split('\n')[0]})`);
    }
  }
  return { missing: tried.join('; ') };
}
