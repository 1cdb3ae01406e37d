/**
 * Runs a firewall backend inside a network namespace for tests: `ip netns exec NS node
 * backend-runner.js iptables|nftables`, then one JSON request per line on stdin, one JSON reply
 * per line on stdout. Requests: {op: 'apply', desired, delta?}, {op: 'check', desired},
 * {op: 'remove'}. The backend keeps its state between requests, as it does inside calico node.
 */
import path from 'node:path';
import readline from 'node:readline';
import type { FirewallBackend } from '../../firewall/desired';
import { deltaFromJSON, desiredFromJSON } from '../../firewall/diff';
import { IptablesBackend } from '../../firewall/iptables/backend';

async function backendNamed(name: string): Promise<FirewallBackend> {
  if (name === 'iptables') return new IptablesBackend();
  // The nftables backend is loaded only when asked for (it needs its native part).
  const mod = (await import(path.join(__dirname, '../../firewall/nftables/backend.js'))) as { NftablesBackend: new () => FirewallBackend };
  return new mod.NftablesBackend();
}

async function main() {
  const backend = await backendNamed(process.argv[2] ?? 'iptables');
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const req = JSON.parse(line) as { op: string; desired?: unknown; delta?: unknown };
    try {
      let value: unknown;
      if (req.op === 'apply') value = await backend.apply(desiredFromJSON(req.desired), req.delta ? deltaFromJSON(req.delta) : undefined);
      else if (req.op === 'check') value = await backend.check(desiredFromJSON(req.desired));
      else if (req.op === 'remove') value = await backend.remove();
      else throw new Error(`unknown op ${req.op}`);
      process.stdout.write(JSON.stringify({ ok: true, value }) + '\n');
    } catch (err) {
      process.stdout.write(JSON.stringify({ ok: false, error: (err as Error).message }) + '\n');
    }
  }
}

void main();
