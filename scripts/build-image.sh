#!/usr/bin/env bash
# Builds the calico-libnetwork image from the Dockerfile with no image registry: its two base
# images (runtime: what `calico node` runs; build: that plus a C toolchain) are made here with
# debootstrap from Debian's mirror plus this machine's Node 20, and imported into Docker.
#   scripts/build-image.sh [--rootfs DIR] [TAG]      (default TAG: calico-libnetwork:latest)
# --rootfs DIR also exports the image's filesystem into DIR (scripts/build-plugin.sh uses it).
# The Docker daemon at DOCKER_HOST (or the default socket) is used when one answers; otherwise a
# private one is started in its own network namespace, with its images kept in the cache, and
# stopped on exit. The cache (CALICO_BUILD_CACHE, default /var/cache/calico-build) holds the
# debootstrapped trees and that daemon's images, so a second build only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
rootfs=""
if [ "${1:-}" = "--rootfs" ]; then
  rootfs="${2:?--rootfs needs a directory}"
  shift 2
fi
tag="${1:-calico-libnetwork:latest}"
cache="${CALICO_BUILD_CACHE:-/var/cache/calico-build}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
# openssl makes the embedded etcd's certificates; etcd-client gives operators etcdctl inside.
runtime_pkgs=(iproute2 iptables ipset nftables libnftables1 bird2 etcd-server etcd-client openssl ca-certificates)
build_pkgs=(gcc libc6-dev libnftables-dev)
[ "$(id -u)" = 0 ] || { echo "build-image.sh runs debootstrap and dockerd: run it as root" >&2; exit 1; }
for b in debootstrap dockerd docker node; do
  command -v "$b" >/dev/null || { echo "$b is not installed: run scripts/install-deps.sh" >&2; exit 1; }
done
mkdir -p "$cache"
chmod 700 "$cache"
# One build at a time: parallel tests installing the plugin share the cache and the daemon.
exec 9>"$cache/lock"
flock 9

node_bin="$(readlink -f "$(command -v node)")"
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
node_inc="$(dirname "$node_bin")/../include/node"
[ -f "$node_inc/node_api.h" ] || node_inc=/usr/include/node
key="$( { echo "$suite ${runtime_pkgs[*]} / ${build_pkgs[*]}"; "$node_bin" --version; sed -n '/^base_tree()/,/^}/p' "$0"; } | sha256sum | cut -c1-12)"
runtime_base="calico-base:runtime-$key"
build_base="calico-base:build-$key"

# --- the Docker daemon ---------------------------------------------------------------------
daemon_pid=""
stop_daemon() {
  [ -n "$daemon_pid" ] || return 0
  kill "$daemon_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$daemon_pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$daemon_pid" 2>/dev/null || true
}
trap stop_daemon EXIT
if ! docker info >/dev/null 2>&1; then
  run=/run/calico-build
  mkdir -p "$run"
  export DOCKER_HOST="unix://$run/docker.sock"
  # Its own network namespace (it needs none: builds run with --network none) and mount
  # namespace, where cgroup2 is mounted as the test harness does for its daemons.
  unshare -n -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec dockerd "$@"' sh \
    --data-root "$cache/docker" --exec-root "$run/exec" -H "$DOCKER_HOST" --pidfile "$run/docker.pid" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false >"$cache/dockerd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 300); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$cache/dockerd.log" >&2; echo "the build's dockerd did not start" >&2; exit 1; }
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { echo "the build's dockerd did not answer within 60 s (see $cache/dockerd.log)" >&2; exit 1; }
fi

# --- the base images -----------------------------------------------------------------------
# A tree for one package list, made once: debootstrap's minimal variant, downloads kept in
# $cache/debs so the second tree costs no download, and no apt lists or docs kept.
base_tree() {
  local dir="$1" pkgs="$2"
  [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir"
  mkdir -p "$cache/debs"
  debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log" >&2; echo "debootstrap failed (see $dir.log)" >&2; exit 1; }
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
  install -D -m 0755 "$node_bin" "$dir/usr/local/bin/node"
  touch "$dir/.complete"
}
import_tree() {
  local dir="$1" image="$2"
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  tar -C "$dir" --exclude=./.complete -c . | docker import - "$image" >/dev/null
}
if ! docker image inspect "$runtime_base" >/dev/null 2>&1 || ! docker image inspect "$build_base" >/dev/null 2>&1; then
  echo "making the base images $runtime_base and $build_base (debootstrap $suite, a few minutes the first time)"
  base_tree "$cache/tree-runtime-$key" "$(IFS=,; echo "${runtime_pkgs[*]}")"
  base_tree "$cache/tree-build-$key" "$(IFS=,; echo "${runtime_pkgs[*]},${build_pkgs[*]}")"
  # The build stage also runs npm and compiles the libnftables addon against Node's headers.
  b="$cache/tree-build-$key"
  if [ ! -f "$b/usr/local/include/node/node_api.h" ]; then
    mkdir -p "$b/usr/local/lib/node_modules" "$b/usr/local/include"
    cp -a "$npm_dir" "$b/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$b/usr/local/bin/npm"
    cp -a "$node_inc" "$b/usr/local/include/node"
  fi
  import_tree "$cache/tree-runtime-$key" "$runtime_base"
  import_tree "$b" "$build_base"
fi

# --- the image -----------------------------------------------------------------------------
# The context as a tar stream: node_modules may be a symlink (git worktrees), so dereference.
srcs=(Dockerfile package.json package-lock.json tsconfig.json plugin-config.json node_modules
  driver ipam lib agent cli routing policy firewall nat ports encap bench demo test)
[ -d node_modules ] || { echo "node_modules is missing: run scripts/install-deps.sh" >&2; exit 1; }
tar -c --dereference --exclude=firewall/nftables/native/build --exclude=lib/memory/native/build --exclude='*.tsbuildinfo' "${srcs[@]}" |
  docker build --network none --build-arg "BUILD_BASE=$build_base" --build-arg "RUNTIME_BASE=$runtime_base" -t "$tag" - >"$cache/build.log" 2>&1 ||
  { tail -40 "$cache/build.log" >&2; echo "docker build failed (see $cache/build.log)" >&2; exit 1; }
echo "image ready: $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"

if [ -n "$rootfs" ]; then
  mkdir -p "$rootfs"
  cid="$(docker create "$tag")"
  docker export "$cid" | tar -x -C "$rootfs"
  docker rm "$cid" >/dev/null
fi
