/** `calico node health`: asks the local `calico node` whether it is ready, for systemd and Docker health checks. */
import http from 'node:http';
import type { Command } from 'commander';
import { healthSocketPath } from '../agent/metrics-server';
import { loadConfig } from '../lib/config';
import { UnavailableError, errorMessage } from '../lib/errors';
import { run } from './run';

const ASK_MS = 10_000;

function ask(socketPath: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/readyz', timeout: ASK_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: text.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ASK_MS} ms`)));
    req.on('error', reject);
  });
}

export function healthCommand(node: Command): void {
  node
    .command('health')
    .description('exit 0 if the calico node on this host is ready, else print what is not and exit non-zero (1: not ready, 2: not running)')
    .action(() =>
      run(async () => {
        const sock = healthSocketPath(loadConfig());
        let r: { status: number; text: string };
        try {
          r = await ask(sock);
        } catch (err) {
          throw new UnavailableError(
            `calico node is not running on this host: nothing answers on ${sock} (${errorMessage(err)}); start it, or set CALICO_DATA_DIR as the node has it`,
          );
        }
        process.stdout.write(`${r.text || `calico node answered ${r.status}`}\n`);
        return r.status === 200 ? 0 : 1;
      }),
    );
}
