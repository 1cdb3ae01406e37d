# The calico-libnetwork node as an image: run it as a container (host network, CAP_NET_ADMIN), or
# let scripts/build-plugin.sh export its filesystem as the managed plugin's rootfs.
# Build it with scripts/build-image.sh: it makes the two base images locally (debootstrap from
# Debian's mirror plus Node 20; no registry needed) and passes them here.
ARG BUILD_BASE=calico-base:build
ARG RUNTIME_BASE=calico-base:runtime

FROM ${BUILD_BASE} AS build
WORKDIR /src
# node_modules comes with the context (scripts/install-deps.sh made it): the build needs no network.
COPY package.json package-lock.json tsconfig.json ./
COPY node_modules ./node_modules
COPY driver ./driver
COPY ipam ./ipam
COPY lib ./lib
COPY agent ./agent
COPY cli ./cli
COPY routing ./routing
COPY policy ./policy
COPY firewall ./firewall
COPY nat ./nat
COPY ports ./ports
COPY encap ./encap
COPY bench ./bench
COPY demo ./demo
COPY test ./test
RUN node node_modules/typescript/bin/tsc -p tsconfig.json \
 && npm prune --omit=dev --offline --no-audit --no-fund >/dev/null
# The libnftables addon, next to the module that loads it (firewall/nftables/addon.ts), built
# against the Node headers in the base image.
RUN cc -O2 -Wall -shared -fPIC -DNODE_GYP_MODULE_NAME=calico_nft -I/usr/local/include/node \
      firewall/nftables/native/calico_nft.c -lnftables -o dist/firewall/nftables/calico_nft.node
# And the allocator controls lib/memory loads beside its module.
RUN cc -O2 -Wall -shared -fPIC -DNODE_GYP_MODULE_NAME=calico_memory -I/usr/local/include/node \
      lib/memory/native/calico_memory.c -o dist/lib/memory/calico_memory.node

# Everything calico node runs: iproute2, iptables, ipset, nft (libnftables), BIRD 2, etcd, openssl.
FROM ${RUNTIME_BASE}
WORKDIR /opt/calico
COPY package.json package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The mount points of the managed plugin (plugin-config.json) and calico node's defaults.
RUN mkdir -p /run/docker/plugins /var/lib/calico /etc/calico/certs /host/proc \
 && chmod 700 /var/lib/calico
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
# Host networking and CAP_NET_ADMIN are required: the node creates veths and routes on the host.
ENTRYPOINT ["/usr/local/bin/node", "/opt/calico/dist/cli/main.js"]
CMD ["node"]
