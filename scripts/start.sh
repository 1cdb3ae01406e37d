#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running node: installs what is needed and
# runs `calico node` on its embedded private etcd (data in $CALICO_DATA_DIR, default
# /var/lib/calico). Stop it with Ctrl-C; the sockets and the etcd go with it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec node dist/cli/main.js node
