# The calico-libnetwork node as an image (for users who run it as a container or build the
# managed plugin's rootfs from it: docker export of a container of this image + plugin-config.json).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY driver ./driver
COPY ipam ./ipam
COPY lib ./lib
COPY agent ./agent
COPY cli ./cli
COPY test ./test
COPY bench ./bench
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 etcd-server bird2 \
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
