# The calico-libnetwork node as an image (for users who run it as a container or build the
# managed plugin's rootfs from it: docker export of a container of this image + plugin-config.json).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make gcc libc6-dev libnftables-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY driver ./driver
COPY ipam ./ipam
COPY lib ./lib
COPY agent ./agent
COPY cli ./cli
COPY routing ./routing
COPY policy ./policy
COPY firewall ./firewall
COPY test ./test
COPY bench ./bench
COPY demo ./demo
RUN npm run build && npm prune --omit=dev
# The libnftables addon, next to the module that loads it; Node's own headers, nothing downloaded.
RUN cd firewall/nftables/native \
 && node /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js rebuild --nodedir=/usr/local --loglevel=warn \
 && cp build/Release/calico_nft.node /src/dist/firewall/nftables/calico_nft.node

FROM node:20-bookworm-slim
# libnftables1 for the nftables firewall; iptables and ipset for the iptables fallback and for
# the FORWARD accepts the nftables backend keeps next to Docker's rules.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 etcd-server bird2 libnftables1 iptables ipset \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf "$(command -v node)" /usr/local/bin/node
WORKDIR /opt/calico
COPY package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN mkdir -p /run/docker/plugins /var/lib/calico
# Host networking and CAP_NET_ADMIN are required: the node creates veths and routes on the host.
ENTRYPOINT ["node", "/opt/calico/dist/cli/main.js"]
CMD ["node"]
