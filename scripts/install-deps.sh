#!/usr/bin/env bash
# Installs what calico-libnetwork needs on Debian 12 (run as root): etcd for the embedded
# datastore, iproute2 for namespaces, and for the tests BIRD, Docker and busybox.
# Packages already present are left alone, so a second run is quick.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have ip || need+=(iproute2)
have ping || need+=(iputils-ping)
have bird || need+=(bird2)
have dockerd || need+=(docker.io)
have busybox || need+=(busybox-static)
have iptables || need+=(iptables)
have ipset || need+=(ipset)
have nft || need+=(nftables)
have node || { echo "Node.js 20 is required (https://nodejs.org or Debian's nodejs from bookworm-backports)" >&2; exit 1; }

if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian starts nothing without systemd; make sure a packaged etcd is not squatting on 2379.
if have systemctl && systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi

cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
