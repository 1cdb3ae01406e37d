#!/usr/bin/env bash
# Installs what calico-libnetwork needs on Debian 12 (run as root): etcd for the embedded
# datastore, iproute2 for namespaces, nftables with libnftables (the firewall) and a C toolchain
# for its addon, and for the tests BIRD, Docker, docker-compose and busybox. Packages already present are left
# alone and the addon is rebuilt only when its source changed, so a second run is quick.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have ip || need+=(iproute2)
have ping || need+=(iputils-ping)
have bird || need+=(bird2)
have dockerd || need+=(docker.io)
# Debian 12's is compose v1 (1.29, python); the e2e suite drives it with file format 2.4.
have docker-compose || need+=(docker-compose)
have busybox || need+=(busybox-static)
have iptables || need+=(iptables)
have ipset || need+=(ipset)
have nft || need+=(nftables)
[ -f /usr/include/nftables/libnftables.h ] || need+=(libnftables-dev)
have make || need+=(make)
have cc || need+=(gcc libc6-dev)
have python3 || need+=(python3)
# The image build (scripts/build-image.sh): debootstrap for its base images; openssl for the embedded etcd's certificates.
have debootstrap || need+=(debootstrap)
have openssl || need+=(openssl)
# Encapsulation tests capture on the router namespace; the fabric benchmark measures throughput.
have tcpdump || need+=(tcpdump)
have iperf3 || need+=(iperf3)
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

# The native addons, built where their loaders look in the source tree: libnftables for the
# nftables backend (firewall/nftables/addon.ts) and glibc's allocator controls (lib/memory).
build_addon() { # dir name [libraries...]
  local addon=$1 name=$2
  shift 2
  local out="$addon/build/Release/$name.node"
  if [ -f "$out" ] && [ ! "$addon/$name.c" -nt "$out" ] && [ ! "$addon/binding.gyp" -nt "$out" ]; then return 0; fi
  echo "building the $name addon"
  local gyp inc
  gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  inc="$(dirname "$(readlink -f "$(command -v node)")")/../include/node"
  [ -f "$inc/node_api.h" ] || inc=/usr/include/node
  if [ -f "$gyp" ] && [ -f "$inc/node_api.h" ]; then
    # --nodedir: the installed headers, so node-gyp downloads nothing.
    (cd "$addon" && node "$gyp" rebuild --loglevel=warn --nodedir="$(dirname "$(dirname "$inc")")" >/dev/null)
  elif [ -f "$inc/node_api.h" ]; then
    mkdir -p "$(dirname "$out")"
    cc -O2 -Wall -shared -fPIC -DNODE_GYP_MODULE_NAME="$name" -I"$inc" "$addon/$name.c" "$@" -o "$out"
  else
    echo "Node's headers (node_api.h) are missing: cannot build the $name addon" >&2
    exit 1
  fi
}
build_addon firewall/nftables/native calico_nft -lnftables
build_addon lib/memory/native calico_memory
