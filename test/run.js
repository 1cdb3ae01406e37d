#!/usr/bin/env node
// Runs every test suite with node's test runner on the compiled output. The integration
// suites need root (network namespaces) and the etcd binary; refuse clearly rather than skip.
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
if (process.getuid && process.getuid() !== 0) {
  console.error('the test suites create network namespaces and run etcd: run them as root (sudo scripts/test.sh)');
  process.exit(2);
}
for (const bin of ['etcd', 'ip', 'ping', 'dockerd', 'docker', 'busybox']) {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
  } catch {
    console.error(`${bin} is not installed: run scripts/install-deps.sh`);
    process.exit(2);
  }
}
const suites = (process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'contract', 'integration', 'e2e']).map((s) => path.join(dist, s));
const r = spawnSync(process.execPath, ['--test', ...suites], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
