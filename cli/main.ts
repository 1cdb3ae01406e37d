#!/usr/bin/env node
/** The `calico` command: `calico node` runs the per-host daemon; the rest inspect and administer. */
import { Command } from 'commander';
import { CalicoNode, VERSION } from '../agent/node';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/log';
import { bgpCommands } from './bgp';
import { healthCommand } from './health';
import { ipamCommands } from './ipam';
import { endpointCommands, nodeListCommand, statusCommand } from './inspect';
import { policyCommands } from './policy';
import { poolCommands } from './pool';
import { resourceCommands } from './resources';
import { run } from './run';

async function runNode(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, { node: config.nodeName });
  const node = new CalicoNode({ config, log });
  await node.start();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    node.stop().then(
      () => process.exit(0),
      (err) => {
        log.error('stop failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Nothing thrown later may take the daemon down silently: log it and keep serving.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: String(err), stack: (err as Error)?.stack }));
}

const program = new Command('calico').version(VERSION).description('Calico networking for Docker: pure layer 3, addresses from etcd, routes by BGP');
program.showHelpAfterError();
const node = program.command('node').description('run the per-host daemon (plugin sockets, IPAM, dataplane); "node ls" lists hosts');
node.action(() => run(runNode, { daemon: true }));
nodeListCommand(node);
healthCommand(node);
poolCommands(program);
ipamCommands(program);
endpointCommands(program);
statusCommand(program);
bgpCommands(program, node);
policyCommands(program);
resourceCommands(program);
program.parseAsync(process.argv).catch((err) => {
  process.stderr.write(`calico: ${String(err)}\n`);
  process.exitCode = 2;
});
