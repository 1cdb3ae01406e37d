/**
 * Child daemons (the embedded etcd, BIRD) must not outlive `calico node`, even when it is
 * killed with SIGKILL or by the OOM killer: with util-linux's setpriv the kernel sends them
 * SIGTERM when their parent dies.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import fs from 'node:fs';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export function spawnBound(cmd: string, args: string[], opts: SpawnOptions, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): ChildProcess {
  return SETPRIV ? spawn(SETPRIV, ['--pdeathsig', signal, '--', cmd, ...args], opts) : spawn(cmd, args, opts);
}
