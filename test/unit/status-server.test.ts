/** The node's HTTP endpoints (agent/metrics-server.ts): health, readiness and the refusal of an address that cannot be bound. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import request from 'supertest';
import { createStatusApp, listenMetrics } from '../../agent/metrics-server';
import { parseMetricsAddr } from '../../lib/config';
import { BadRequestError } from '../../lib/errors';
import { silentLogger } from '../../lib/log';
import { Metrics } from '../../lib/metrics';

describe('status endpoints', () => {
  test('/healthz answers 200 whatever the readiness', async () => {
    const app = createStatusApp(async () => ['etcd does not answer'], undefined, silentLogger());
    const res = await request(app).get('/healthz');
    assert.equal(res.status, 200);
  });

  test('/readyz is 200 when nothing is wrong and 503 with every reason on one line otherwise', async () => {
    let problems: string[] = [];
    const app = createStatusApp(async () => problems, undefined, silentLogger());
    const ok = await request(app).get('/readyz');
    assert.equal(ok.status, 200);
    assert.equal(ok.text, 'ready\n');
    problems = ['etcd does not answer: timed out', 'BIRD does not answer'];
    const bad = await request(app).get('/readyz');
    assert.equal(bad.status, 503);
    assert.equal(bad.text, 'not ready: etcd does not answer: timed out; BIRD does not answer\n');
  });

  test('/readyz is 503 when the check itself throws', async () => {
    const app = createStatusApp(() => Promise.reject(new Error('boom')), undefined, silentLogger());
    const res = await request(app).get('/readyz');
    assert.equal(res.status, 503);
    assert.match(res.text, /boom/);
  });

  test('/metrics serves Prometheus text when metrics are on, and is absent when off', async () => {
    const on = createStatusApp(async () => [], new Metrics({ processMetrics: false }), silentLogger());
    const res = await request(on).get('/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.match(res.text, /# TYPE calico_plugin_requests_total counter/);
    const off = createStatusApp(async () => [], undefined, silentLogger());
    assert.equal((await request(off).get('/metrics')).status, 404);
  });

  test('only GET and HEAD are served', async () => {
    const app = createStatusApp(async () => [], undefined, silentLogger());
    assert.equal((await request(app).post('/readyz')).status, 405);
  });
});

describe('listenMetrics', () => {
  test('refuses a port in use, naming CALICO_METRICS_ADDR', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      await assert.rejects(
        listenMetrics(() => undefined, parseMetricsAddr(`127.0.0.1:${port}`)),
        (e: unknown) => e instanceof BadRequestError && /^CALICO_METRICS_ADDR="127\.0\.0\.1:\d+" cannot be listened on: the port is in use/.test(e.message),
      );
    } finally {
      holder.close();
    }
  });

  test('refuses an address that is not this host', async () => {
    // 192.0.2.0/24 is TEST-NET-1: never assigned to a host.
    await assert.rejects(
      listenMetrics(() => undefined, parseMetricsAddr('192.0.2.1:9091')),
      /CALICO_METRICS_ADDR=.*not one of this host/,
    );
  });
});
