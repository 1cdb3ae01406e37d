import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DockerApi } from '../../agent/docker-api';

let dir: string;
let server: http.Server;
let docker: DockerApi;
const seen: string[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-docker-api-'));
  const sock = path.join(dir, 'docker.sock');
  server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    if (req.url === '/networks') return void res.end(JSON.stringify([{ Id: 'n1', Name: 'front' }]));
    if (req.url === '/containers/json') return void res.end(JSON.stringify([{ Id: 'c1', NetworkSettings: { Networks: { front: { EndpointID: 'e1' } } } }]));
    if (req.url === '/containers/c1/json') return void res.end(JSON.stringify({ Id: 'c1', Name: '/web', Config: { Labels: { a: 'b' } } }));
    if (req.url?.startsWith('/events?')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"Type":"container","Action":"start"}\n{"Type":"net');
      setTimeout(() => res.end('work","Action":"create"}\n'), 20);
      return;
    }
    if (req.url === '/containers/gone/json') {
      res.statusCode = 404;
      return void res.end('{"message":"No such container: gone"}');
    }
    res.end('not json');
  });
  await new Promise<void>((r) => server.listen(sock, r));
  docker = new DockerApi(`unix://${sock}`);
});

after(() => {
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('networks, containers and an inspected container come back as Docker sent them', async () => {
  assert.deepEqual(await docker.listNetworks(), [{ Id: 'n1', Name: 'front' }]);
  assert.equal((await docker.listContainers())[0].NetworkSettings?.Networks?.front?.EndpointID, 'e1');
  assert.equal((await docker.inspectContainer('c1')).Name, '/web');
});

test('a container Docker does not have is an error naming the call and what Docker said', async () => {
  await assert.rejects(docker.inspectContainer('gone'), /GET \/containers\/gone\/json with HTTP 404: .*No such container/);
});

test('an answer that is not JSON is refused', async () => {
  await assert.rejects(docker.inspectContainer('odd'), /not JSON/);
});

test('the event stream asks for the types wanted and delivers every line across chunks', async () => {
  const res = await docker.events(['network', 'container']);
  let text = '';
  for await (const c of res) text += String(c);
  assert.deepEqual(
    text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).Type),
    ['container', 'network'],
  );
  const url = seen.find((u) => u.startsWith('/events?')) ?? '';
  assert.deepEqual(JSON.parse(decodeURIComponent(url.slice('/events?filters='.length))), { type: ['network', 'container'] });
});

test('a daemon that is not there fails at once, saying why', async () => {
  await assert.rejects(new DockerApi(`unix://${path.join(dir, 'none.sock')}`).listNetworks(), /ENOENT/);
});
