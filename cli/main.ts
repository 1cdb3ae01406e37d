#!/usr/bin/env node
/** The `calico` command: `calico node` runs the per-host daemon; the rest inspect and administer. */
import path from 'node:path';
import { Command } from 'commander';
import { CalicoNode, VERSION } from '../agent/node';
import { loadHostConfig } from '../lib/config';
import { DEFAULT_CONFIG_FILE } from '../lib/env-file';
import { createLogger, resolveLogFormat } from '../lib/log';
import { startMemoryKeeper } from '../lib/memory';
import { bgpCommands } from './bgp';
import { healthCommand } from './health';
import { ipamCommands } from './ipam';
import { endpointCommands, nodeListCommand, statusCommand } from './inspect';
import { policyCommands } from './policy';
import { poolCommands } from './pool';
import { resourceCommands } from './resources';
import { run } from './run';

async function runNode(): Promise<void> {
  const config = loadHostConfig();
  const log = createLogger(config.logLevel, { node: config.nodeName }, resolveLogFormat(config.logFormat, process.stderr.isTTY === true));
  // Before the dataplane's threads exist: the allocator's arena cap applies to threads that start after it.
  const memory = startMemoryKeeper(log);
  let stopping = false;
  const stop = (reason: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { reason });
    memory?.stop();
    node.stop().then(
      () => process.exit(code),
      (err) => {
        log.error('stop failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  const node = new CalicoNode({
    config,
    log,
    onConfigError: (err) => {
      log.error(err.message);
      stop('configuration error', 1);
    },
  });
  await node.start();
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Nothing thrown later may take the daemon down silently: log it and keep serving.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: String(err), stack: (err as Error)?.stack }));
}

const program = new Command('calico').version(VERSION).description('Calico networking for Docker: pure layer 3, addresses from etcd, routes by BGP');
program.showHelpAfterError();
program.option(
  '--config <file>',
  `settings file, KEY=VALUE lines as the systemd unit reads (default ${DEFAULT_CONFIG_FILE}, or $CALICO_CONFIG); the environment overrides it`,
);
// Through the environment, so every way a command loads its settings sees the same file.
program.hook('preAction', () => {
  const file = program.opts<{ config?: string }>().config;
  if (file !== undefined) process.env.CALICO_CONFIG = path.resolve(file);
});
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
