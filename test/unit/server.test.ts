/** The plugin HTTP server: body decoding, routing and error mapping (lib/server.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import request from 'supertest';
import { BadRequestError, ConflictError, NotFoundError, UnavailableError } from '../../lib/errors';
import { silentLogger } from '../../lib/log';
import { PLUGIN_CONTENT_TYPE, type Routes, createPluginApp } from '../../lib/server';

/** An app whose routes record the bodies they receive. */
function setup(extra: Routes = {}) {
  const bodies: unknown[] = [];
  const routes: Routes = {
    '/Plugin.Activate': { hasBody: false, handler: () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }) },
    '/NetworkDriver.CreateNetwork': { hasBody: true, handler: (b) => void bodies.push(b) },
    '/IpamDriver.RequestAddress': { hasBody: true, handler: async (b) => (bodies.push(b), { Address: '10.0.0.1/32', Data: {} }) },
    ...extra,
  };
  const app = createPluginApp(routes, silentLogger());
  let contentType: string | undefined | null = null;
  // Records the Content-Type the server actually received, then hands over to the app.
  const server = (req: http.IncomingMessage, res: http.ServerResponse) => {
    contentType = req.headers['content-type'];
    app(req, res);
  };
  return { app, server, bodies, seenContentType: () => contentType };
}

// Handlers may reject with anything (a string, a plain object): the server must still answer.
// eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
const throwing = (err: unknown): Routes => ({ '/X.Fail': { hasBody: false, handler: () => Promise.reject(err) } });

describe('createPluginApp', () => {
  test('returns 200 with the handler result as plugin JSON', async () => {
    const { app } = setup();
    const res = await request(app).post('/Plugin.Activate');
    assert.equal(res.status, 200);
    assert.ok(String(res.headers['content-type']).startsWith(PLUGIN_CONTENT_TYPE), res.headers['content-type']);
    assert.deepEqual(JSON.parse(res.text), { Implements: ['NetworkDriver', 'IpamDriver'] });
  });

  test('returns 200 with {} when the handler returns undefined', async () => {
    const { app, bodies } = setup();
    const res = await request(app).post('/NetworkDriver.CreateNetwork').send({ NetworkID: 'n1' });
    assert.equal(res.status, 200);
    assert.equal(res.text, '{}');
    assert.deepEqual(bodies, [{ NetworkID: 'n1' }]);
  });

  test('passes the parsed body to an async handler', async () => {
    const { app, bodies } = setup();
    const res = await request(app).post('/IpamDriver.RequestAddress').send({ PoolID: 'CalicoPoolIPv4', Address: '' });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { Address: '10.0.0.1/32', Data: {} });
    assert.deepEqual(bodies, [{ PoolID: 'CalicoPoolIPv4', Address: '' }]);
  });

  test('accepts a request without a Content-Type header and still parses the body', async () => {
    const { server, bodies, seenContentType } = setup();
    const res = await request(server).post('/NetworkDriver.CreateNetwork').send('{"NetworkID":"n2"}').unset('Content-Type');
    assert.equal(seenContentType(), undefined, 'no Content-Type reached the server');
    assert.equal(res.status, 200);
    assert.deepEqual(bodies, [{ NetworkID: 'n2' }]);
  });

  test("accepts Docker's plugin content type and plain text alike", async () => {
    const { app, bodies } = setup();
    for (const type of [PLUGIN_CONTENT_TYPE, 'text/plain', 'application/octet-stream']) {
      const res = await request(app).post('/NetworkDriver.CreateNetwork').set('Content-Type', type).send(Buffer.from('{"NetworkID":"n3"}'));
      assert.equal(res.status, 200, type);
    }
    assert.equal(bodies.length, 3);
  });

  test('ignores the body of a route without one', async () => {
    const { app } = setup();
    const res = await request(app).post('/Plugin.Activate').set('Content-Type', 'text/plain').send('not json');
    assert.equal(res.status, 200);
  });

  for (const [what, body] of [
    ['no', undefined],
    ['an empty', ''],
    ['a whitespace-only', ' \n '],
  ] as const) {
    test(`answers ${what} body to a route that needs one with 400 mentioning the empty body`, async () => {
      const { app, bodies } = setup();
      const req = request(app).post('/NetworkDriver.CreateNetwork').set('Content-Type', 'application/json');
      const res = body === undefined ? await req : await req.send(body);
      assert.equal(res.status, 400);
      const reply = JSON.parse(res.text);
      assert.match(reply.Err, /empty request body for \/NetworkDriver\.CreateNetwork/);
      assert.equal(reply.Error, reply.Err);
      assert.deepEqual(bodies, []);
    });
  }

  test('answers malformed JSON with 400 naming malformed JSON', async () => {
    const { app, bodies } = setup();
    const res = await request(app).post('/NetworkDriver.CreateNetwork').set('Content-Type', 'text/plain').send('{"NetworkID": ');
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.text).Err, /malformed JSON in request body for \/NetworkDriver\.CreateNetwork/);
    assert.deepEqual(bodies, []);
  });

  test('answers an unknown path with 404 and an Err naming it', async () => {
    const { app } = setup();
    const res = await request(app).post('/NetworkDriver.ProgramExternalConnectivity').send({});
    assert.equal(res.status, 404);
    assert.ok(String(res.headers['content-type']).startsWith(PLUGIN_CONTENT_TYPE), res.headers['content-type']);
    assert.deepEqual(JSON.parse(res.text), { Err: 'calico does not implement /NetworkDriver.ProgramExternalConnectivity' });
  });

  test('does not route to inherited object properties', async () => {
    const { app } = setup();
    for (const path of ['/constructor', '/__proto__', '/toString']) assert.equal((await request(app).post(path)).status, 404, path);
  });

  const errorCases: Array<[string, unknown, number, string]> = [
    ['BadRequestError', new BadRequestError('field "Pool" is missing'), 400, 'field "Pool" is missing'],
    ['NotFoundError', new NotFoundError('no network n1'), 400, 'no network n1'],
    ['ConflictError', new ConflictError('10.0.0.1 is already in use'), 400, '10.0.0.1 is already in use'],
    ['UnavailableError', new UnavailableError('etcd timed out'), 500, 'etcd timed out'],
    ['a plain Error', new Error('kaboom'), 500, 'internal error: kaboom'],
    ['a thrown string', 'just a string', 500, 'internal error: just a string'],
  ];
  for (const [what, err, status, message] of errorCases) {
    test(`answers a handler throwing ${what} with ${status} and the message in Err`, async () => {
      const { app } = setup(throwing(err));
      const res = await request(app).post('/X.Fail');
      assert.equal(res.status, status);
      assert.deepEqual(JSON.parse(res.text), { Err: message, Error: message });
    });
  }

  test('maps a synchronous throw like an async one', async () => {
    const { app } = setup({
      '/X.Sync': {
        hasBody: false,
        handler: () => {
          throw new BadRequestError('sync');
        },
      },
    });
    const res = await request(app).post('/X.Sync');
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.text).Err, 'sync');
  });

  test('does not send an X-Powered-By header', async () => {
    const { app } = setup();
    const res = await request(app).post('/Plugin.Activate');
    assert.equal(res.headers['x-powered-by'], undefined);
  });

  test('routes by path alone, ignoring a query string', async () => {
    const { app } = setup();
    const res = await request(app).post('/Plugin.Activate?x=1');
    assert.equal(res.status, 200);
  });

  test('refuses a body over the limit with 400 instead of buffering it', async () => {
    const { app, bodies } = setup();
    const res = await request(app)
      .post('/NetworkDriver.CreateNetwork')
      .send(`{"x":"${'a'.repeat(5 << 20)}"}`);
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.text).Err, /over the \d+-byte limit/);
    assert.deepEqual(bodies, []);
  });

  test('answers 500 with an Err when a reply cannot be encoded, and keeps serving', async () => {
    const { app } = setup({ '/X.Big': { hasBody: false, handler: () => ({ n: 1n }) } });
    const res = await request(app).post('/X.Big');
    assert.equal(res.status, 500);
    assert.match(JSON.parse(res.text).Err, /could not encode its reply to \/X\.Big/);
    assert.equal((await request(app).post('/Plugin.Activate')).status, 200);
  });

  test('answers any method but POST with 405, an Allow header and an Err, without calling the handler', async () => {
    const { app, bodies } = setup();
    for (const m of ['get', 'put', 'delete', 'patch'] as const) {
      const res = await request(app)[m]('/NetworkDriver.CreateNetwork').send('{"NetworkID":"n1"}');
      assert.equal(res.status, 405, m);
      assert.equal(res.headers.allow, 'POST');
      assert.match(JSON.parse(res.text).Err, /only uses POST/);
    }
    assert.deepEqual(bodies, []);
  });

  test('refuses a body nested deeper than the bound naming where, without calling the handler', async () => {
    const { app, bodies } = setup();
    const deep = '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000);
    const res = await request(app).post('/NetworkDriver.CreateNetwork').send(`{"Options":${deep}}`);
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.text).Err, /field "Options\.a\.a\.a.*nests deeper than 32 levels/);
    assert.deepEqual(bodies, []);
  });

  test('cuts a huge error message short in the reply', async () => {
    const { app } = setup(throwing(new BadRequestError('x'.repeat(100_000))));
    const res = await request(app).post('/X.Fail');
    assert.equal(res.status, 400);
    const err = JSON.parse(res.text).Err as string;
    assert.ok(err.length < 1100, `${err.length} characters`);
    assert.match(err, /\.\.\. \(98976 more characters\)$/);
  });
});
