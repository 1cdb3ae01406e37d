/** The errno name a failure carries, found the same way on both sides of the worker boundary. */

/** The errno name carried by `err` or its cause chain (NetlinkError and fs errors have `code`). */
export function errnoCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
