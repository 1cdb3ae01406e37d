/** Runs a CLI action: errors go to stderr as one line, with a non-zero exit. */
import { classify } from '../lib/errors';

export function run(fn: () => Promise<void | number>): Promise<void> {
  return fn().then(
    (code) => {
      process.exitCode = typeof code === 'number' ? code : 0;
    },
    (err) => {
      const e = classify(err);
      process.stderr.write(`calico: ${e.message}\n`);
      process.exitCode = e.kind === 'bad-request' || e.kind === 'not-found' || e.kind === 'conflict' ? 1 : 2;
    },
  );
}
