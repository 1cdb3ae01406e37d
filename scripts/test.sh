#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to every test run: installs what is needed, then
# runs the unit, contract and integration suites (real etcd, real kernel namespaces; root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec node test/run.js "$@"
