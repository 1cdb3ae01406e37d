/** Runs a CLI action: errors go to stderr as one line, with a non-zero exit. */
import { toCliExit } from '../lib/errors';

export function run(fn: () => Promise<void | number>, opts: { daemon?: boolean } = {}): Promise<void> {
  // A one-shot command is done when it answered: a TCP connect still pending to an unreachable
  // etcd member (grpc cannot abort it) would otherwise keep the process alive for minutes.
  const exitSoon = () => void (opts.daemon || setTimeout(() => process.exit(), 1000).unref());
  return fn()
    .finally(exitSoon)
    .then(
      (code) => {
        process.exitCode = typeof code === 'number' ? code : 0;
      },
      (err) => {
        const e = toCliExit(err);
        process.stderr.write(`calico: ${e.message}\n`);
        process.exitCode = e.status;
      },
    );
}
