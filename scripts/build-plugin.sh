#!/usr/bin/env bash
# Builds the managed plugin's directory (config.json + rootfs/) from the built project, without a
# registry or a Docker build: the node binary with the shared libraries it and the native
# modules (the libnftables addon among them) load, the compiled project and its production node_modules.
#   scripts/build-plugin.sh [OUT_DIR]      (default: plugin-build)
#   docker plugin create calico:latest OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-plugin-build}"
[ -d dist ] || { echo "run npm run build first" >&2; exit 1; }
rm -rf "$out"
root="$out/rootfs"
mkdir -p "$root/usr/local/bin" "$root/opt/calico" "$root/run/docker/plugins" "$root/var/lib/calico" \
  "$root/etc/calico/certs" "$root/host/proc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/etc"
chmod 1777 "$root/tmp"

cp "$(command -v node)" "$root/usr/local/bin/node"
# BIRD, which calico node runs for BGP (CALICO_BIRD=managed).
mkdir -p "$root/usr/sbin"
for b in bird birdc; do
  p="$(command -v "$b" || true)"
  [ -n "$p" ] && cp "$p" "$root/usr/sbin/$b"
done
# iptables and ipset, which the policy agent programs (the same multi-call binary as the host's,
# so both write the same kernel backend), with their extension modules.
for b in iptables ip6tables iptables-save ip6tables-save iptables-restore ip6tables-restore ipset; do
  p="$(command -v "$b" || true)"
  [ -z "$p" ] && continue
  real="$(readlink -f "$p")"
  [ -f "$root/usr/sbin/$(basename "$real")" ] || cp "$real" "$root/usr/sbin/"
  [ "$(basename "$real")" = "$b" ] || ln -sf "$(basename "$real")" "$root/usr/sbin/$b"
done
xt="$(dirname "$(readlink -f "$(ldconfig -p | awk '/libxtables.so/ {print $NF; exit}')")")/xtables"
if [ -d "$xt" ]; then mkdir -p "$root$xt" && cp -r "$xt/." "$root$xt/"; fi
[ -f /etc/protocols ] && cp /etc/protocols "$root/etc/protocols"
cp -r dist package.json package-lock.json "$root/opt/calico/"
cp -r node_modules "$root/opt/calico/"
(cd "$root/opt/calico" && npm prune --omit=dev --no-audit --no-fund >/dev/null 2>&1)
# The libnftables addon, next to the module that loads it (firewall/nftables/addon.ts looks there first).
addon=firewall/nftables/native/build/Release/calico_nft.node
if [ -f "$addon" ]; then cp "$addon" "$root/opt/calico/dist/firewall/nftables/calico_nft.node"; else echo "warning: $addon is missing (scripts/install-deps.sh builds it): the plugin falls back to iptables" >&2; fi

# Shared libraries of node and of every native module, with the dynamic loader.
libs() { { ldd "$1" 2>/dev/null || true; } | awk '/=>/ && $3 ~ /^\// {print $3} /^[[:space:]]*\/[^ ]+/ {print $1}'; }
{
  libs "$(command -v node)"
  for b in bird birdc iptables ipset; do p="$(command -v "$b" || true)"; [ -n "$p" ] && libs "$(readlink -f "$p")"; done
  [ -d "$xt" ] && for m in "$xt"/*.so; do libs "$m"; done
  find "$root/opt/calico/node_modules" "$root/opt/calico/dist" -name '*.node' -print0 | while IFS= read -r -d '' m; do libs "$m"; done
} | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# Name resolution for the etcd host names in ETCD_ENDPOINTS.
if [ -f /etc/nsswitch.conf ]; then cp /etc/nsswitch.conf "$root/etc/nsswitch.conf"; fi
cp plugin-config.json "$out/config.json"
echo "plugin directory ready: $out ($(du -sh "$out" | cut -f1))"
