#!/usr/bin/env bash
# Builds the managed plugin's directory (config.json + rootfs/) from the project's image
# (Dockerfile, built by scripts/build-image.sh with no registry): the rootfs is that image's
# filesystem, so the plugin runs exactly what the image holds (Node 20, iptables, ipset, nft,
# BIRD, etcd, openssl).
#   scripts/build-plugin.sh [OUT_DIR]      (default: plugin-build)
#   docker plugin create calico:latest OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-plugin-build}"
rm -rf "$out"
mkdir -p "$out/rootfs"
./scripts/build-image.sh --rootfs "$out/rootfs" "${CALICO_IMAGE:-calico-libnetwork:latest}"
cp plugin-config.json "$out/config.json"
echo "plugin directory ready: $out ($(du -sh "$out" | cut -f1))"
