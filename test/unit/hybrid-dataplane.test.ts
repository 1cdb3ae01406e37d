import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HybridDataplane } from '../../lib/dataplane/hybrid';
import type { Dataplane, EndpointWiring } from '../../lib/dataplane/types';

function fake(name: string, log: string[], delays: Record<string, number> = {}): Dataplane {
  const step = (what: string) => async () => {
    log.push(`${name}:${what}:start`);
    await new Promise((r) => setTimeout(r, delays[what] ?? 0));
    log.push(`${name}:${what}:end`);
  };
  return {
    wireEndpoint: async (w: EndpointWiring) => {
      await step(`wire ${w.hostIfName}`)();
      return {};
    },
    unwireEndpoint: (n: string) => step(`unwire ${n}`)(),
    ensureRoute: (n: string) => step(`route ${n}`)(),
    listWorkloadLinks: async () => [name],
    listWorkloadRoutes: async () => [],
    enableForwarding: async () => undefined,
    uplinkMtu: async () => 1500,
    uplinkIPv4: async () => undefined,
    uplinkIPv6: async () => undefined,
    close: () => log.push(`${name}:close`),
  };
}

const wiring = (n: string): EndpointWiring => ({ hostIfName: n, tempIfName: 'tmp', mtu: 1500, containerMac: '02:00:00:00:00:01', ipv4: [], ipv6: [] });

test('creates, repairs and deletes links on the threads and reads on the main thread', async () => {
  const log: string[] = [];
  const dp = new HybridDataplane(fake('local', log), fake('threads', log));
  await dp.wireEndpoint(wiring('cali1'));
  await dp.ensureRoute('cali1', '10.0.0.1');
  await dp.unwireEndpoint('cali1');
  assert.deepEqual(log, [
    'threads:wire cali1:start',
    'threads:wire cali1:end',
    'threads:route cali1:start',
    'threads:route cali1:end',
    'threads:unwire cali1:start',
    'threads:unwire cali1:end',
  ]);
  assert.deepEqual(await dp.listWorkloadLinks(), ['local']);
});

test('a delete for an interface waits for its creation in flight, other interfaces do not wait', async () => {
  const log: string[] = [];
  const dp = new HybridDataplane(fake('local', log), fake('threads', log, { 'wire cali1': 30 }));
  await Promise.all([dp.wireEndpoint(wiring('cali1')), dp.unwireEndpoint('cali1'), dp.unwireEndpoint('cali2')]);
  assert.ok(log.indexOf('threads:unwire cali1:start') > log.indexOf('threads:wire cali1:end'), log.join(', '));
  assert.ok(log.indexOf('threads:unwire cali2:end') < log.indexOf('threads:wire cali1:end'), log.join(', '));
});

test('close closes both', () => {
  const log: string[] = [];
  new HybridDataplane(fake('local', log), fake('threads', log)).close();
  assert.deepEqual(log.sort(), ['local:close', 'threads:close']);
});

test('an unwire of a link the main thread no longer sees returns without a worker call; one it sees, or cannot look up, goes to the worker', async () => {
  const log: string[] = [];
  const present = new Set(['calia']);
  const local = Object.assign(fake('local', log), {
    hasLink: async (n: string) => {
      if (n === 'calibad') throw new Error('netlink said no');
      return present.has(n);
    },
  });
  const dp = new HybridDataplane(local, fake('threads', log));
  await dp.unwireEndpoint('calia');
  await dp.unwireEndpoint('caligone');
  await dp.unwireEndpoint('calibad');
  assert.deepEqual(log, ['threads:unwire calia:start', 'threads:unwire calia:end', 'threads:unwire calibad:start', 'threads:unwire calibad:end']);
});
