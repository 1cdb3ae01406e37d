#!/usr/bin/env node
// Runs test suites with node's test runner on the compiled output: `node test/run.js [suite...]`
// (unit, contract, integration, e2e; all by default). Unit tests need nothing but Node and run as
// any user; the others check their own needs here and refuse clearly rather than skip.
'use strict';
const { spawnSync, execFileSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'test');
if (!fs.existsSync(dist)) {
  console.error('dist/test is missing: run "npm run build" first');
  process.exit(2);
}
const base = ['etcd', 'ip', 'ping'];
const needs = {
  unit: { root: false, bins: [] },
  contract: { root: true, bins: base },
  integration: { root: true, bins: [...base, 'bird', 'iptables', 'ipset', 'nft', 'etcdctl'] },
  e2e: { root: true, bins: [...base, 'bird', 'iptables', 'ipset', 'nft', 'etcdctl', 'dockerd', 'docker', 'docker-compose', 'busybox'] },
};
const asked = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(needs);
for (const s of asked) {
  const n = needs[s];
  if (!n) {
    console.error(`unknown suite "${s}": use ${Object.keys(needs).join(', ')}`);
    process.exit(2);
  }
  if (n.root && process.getuid && process.getuid() !== 0) {
    console.error(`the ${s} suite creates network namespaces and runs etcd: run it as root (sudo scripts/test.sh ${s})`);
    process.exit(2);
  }
  for (const bin of n.bins) {
    try {
      execFileSync('sh', ['-c', 'command -v "$1"', 'sh', bin], { stdio: 'ignore' });
    } catch {
      console.error(`${bin} is not installed (needed by the ${s} suite): run scripts/install-deps.sh`);
      process.exit(2);
    }
  }
}
const r = spawnSync(process.execPath, ['--test', ...asked.map((s) => path.join(dist, s))], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
