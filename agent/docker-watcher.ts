/**
 * Learns from Docker what its plugin calls never carry: network names, and each endpoint's
 * container ID, name and `org.projectcalico.label.*` labels (for policy). It never runs inside a
 * plugin request (Docker may be waiting on us, and at daemon start it is not serving yet): it
 * follows the daemon's event stream, inspects asynchronously and writes what it learns to the
 * records. Docker being unreachable only delays this; plugin requests never depend on it.
 */
import type { NodeContext } from './context';
import { DockerApi } from './docker-api';
import { errorMessage } from '../lib/errors';
import { jitteredDelay, sleep } from '../lib/retry';
import { ID_PATTERN, printable } from '../lib/validate';

export const LABEL_PREFIX = 'org.projectcalico.label.';
const MAX_LABEL = 253;

/**
 * Labels end up in selectors and generated rules: one with a quote, a backslash or a control
 * character (or a huge one) is left out, so it can never break the firewall of the host.
 */
export function validLabel(key: string, value: unknown): value is string {
  return typeof value === 'string' && key.length <= MAX_LABEL && value.length <= MAX_LABEL && printable(key, true) && printable(value, true);
}

export function calicoLabels(labels: Record<string, string> | null | undefined, skipped?: (key: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!k.startsWith(LABEL_PREFIX) || k.length <= LABEL_PREFIX.length) continue;
    const name = k.slice(LABEL_PREFIX.length);
    if (validLabel(name, v)) out[name] = v;
    else skipped?.(k);
  }
  return out;
}

/** Docker's own rule for network and container names; anything else did not come from Docker. */
export function validDockerName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(name);
}

const same = (a: Record<string, string>, b: Record<string, string>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

export class DockerWatcher {
  private docker: DockerApi;
  private stopped = false;
  private stream?: { destroy(): void };

  constructor(
    private ctx: NodeContext,
    dockerHost: string,
  ) {
    this.docker = new DockerApi(dockerHost);
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.stream?.destroy();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.ctx.ready();
        // Follow events first so nothing between the resync and the stream is missed. If both
        // fail, the resync's error is the one reported and the stream's must not go unhandled.
        const ended = this.follow();
        ended.catch(() => undefined);
        await this.resync();
        failures = 0;
        await ended;
      } catch (err) {
        if (this.stopped) return;
        // Docker not running yet is expected (calico node starts before it): one warning, then
        // debug lines, each the error's message only, never its stack.
        const level = failures === 0 ? 'warn' : 'debug';
        const delay = 500 + jitteredDelay(failures, 500, 30_000);
        this.ctx.log.log(level, 'cannot follow Docker; names and labels will be learned when it answers', {
          error: errorMessage(err),
          retryInMs: Math.round(delay),
        });
        failures++;
        await sleep(delay);
        continue;
      }
      if (this.stopped) return;
      await sleep(500 + jitteredDelay(failures++, 500, 30_000));
    }
  }

  /** Resolves when the event stream ends (Docker restarted), rejects if it cannot be opened. */
  private async follow(): Promise<void> {
    const stream = await this.docker.events(['network', 'container']);
    this.stream = stream;
    let buf = '';
    return new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) this.onEvent(line);
        }
      });
      stream.on('end', () => resolve());
      stream.on('close', () => resolve());
      stream.on('error', () => resolve());
    });
  }

  private onEvent(line: string): void {
    let ev: { Type?: string; Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch {
      return;
    }
    const attrs = ev.Actor?.Attributes ?? {};
    const work =
      ev.Type === 'network' && ev.Action === 'create' && ev.Actor?.ID
        ? this.learnNetwork(ev.Actor.ID, attrs.name)
        : ev.Type === 'network' && ev.Action === 'connect' && attrs.container
          ? this.learnContainer(attrs.container)
          : ev.Type === 'container' && (ev.Action === 'start' || ev.Action === 'rename') && ev.Actor?.ID
            ? this.learnContainer(ev.Actor.ID)
            : undefined;
    work?.catch((err) => this.ctx.log.debug('could not learn from a Docker event', { event: ev.Action, error: errorMessage(err) }));
  }

  /** Endpoint IDs of every running container, or undefined if Docker does not answer. */
  async liveEndpointIds(): Promise<Set<string> | undefined> {
    try {
      const ctrs = await this.docker.listContainers();
      const ids = new Set<string>();
      for (const c of ctrs) for (const n of Object.values(c.NetworkSettings?.Networks ?? {})) if (n?.EndpointID) ids.add(n.EndpointID);
      return ids;
    } catch {
      return undefined;
    }
  }

  /** Everything Docker has now: network names, then every running container's endpoints. */
  async resync(): Promise<void> {
    const nets = await this.docker.listNetworks();
    for (const n of nets) await this.learnNetwork(n.Id, n.Name);
    const ctrs = await this.docker.listContainers();
    for (const c of ctrs) await this.learnContainer(c.Id).catch(() => undefined);
  }

  private async learnNetwork(id: string, name: string | undefined): Promise<void> {
    if (!name) return;
    if (!validDockerName(name)) {
      this.ctx.log.warn('ignored a network name Docker would not give', { network: id.slice(0, 64), name: name.slice(0, 300) });
      return;
    }
    const rec = await this.ctx.records.getNetwork(id);
    if (!rec || rec.name === name) return;
    if (await this.ctx.records.updateNetwork({ ...rec, name })) this.ctx.log.info('learned network name', { network: id, name });
  }

  private async learnContainer(id: string): Promise<void> {
    const info = await this.docker.inspectContainer(id);
    if (!ID_PATTERN.test(info.Id)) return;
    const raw = info.Name.replace(/^\//, '');
    const name = validDockerName(raw) ? raw : undefined;
    if (!name) this.ctx.log.warn('ignored a container name Docker would not give', { container: info.Id.slice(0, 64), name: raw.slice(0, 300) });
    const labels = calicoLabels(info.Config?.Labels, (key) =>
      this.ctx.log.warn('ignored a label with quotes, control characters or over 253 characters', {
        container: info.Id.slice(0, 64),
        label: key.slice(0, 300),
      }),
    );
    for (const net of Object.values(info.NetworkSettings?.Networks ?? {})) {
      if (!net?.EndpointID || !ID_PATTERN.test(net.EndpointID)) continue;
      let learned = false;
      const now = await this.ctx.records.modifyEndpoint(net.EndpointID, (rec) => {
        if (rec.containerId === info.Id && rec.containerName === name && same(rec.labels, labels)) return undefined;
        const next = { ...rec, containerId: info.Id, labels };
        if (name) next.containerName = name;
        else delete next.containerName;
        learned = true;
        return next;
      });
      if (learned && now) this.ctx.log.info('learned endpoint container', { endpoint: net.EndpointID, container: name, labels });
    }
  }
}
