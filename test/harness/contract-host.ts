/**
 * The host every contract test drives: a throw-away namespace with its own etcd and a real
 * `calico node` whose Docker socket answers nothing (Docker awareness is optional and must never
 * block a request), reached through the fake Docker on its real plugin sockets.
 */
import { createNetns, type Netns } from './netns';
import { startEtcd, type TestEtcd } from './etcd';
import { startCalico, type CalicoProcess } from './calico';
import type { FakeDocker } from './plugin-client';

export interface ContractHost {
  ns: Netns;
  etcd: TestEtcd;
  node: CalicoProcess;
  docker: FakeDocker;
  /** Stops the node and etcd and removes the namespace; safe after a partial start. */
  destroy(): Promise<void>;
}

export async function startContractHost(prefix: string): Promise<ContractHost> {
  const ns = await createNetns(prefix);
  let etcd: TestEtcd | undefined;
  let node: CalicoProcess | undefined;
  const destroy = async () => {
    await node?.destroy();
    await etcd?.destroy();
    await ns.destroy();
  };
  try {
    etcd = await startEtcd(ns);
    node = await startCalico(ns, { name: `${prefix}-host`, etcd: etcd.endpoint, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    await node.ready();
    return { ns, etcd, node, docker: node.docker, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
