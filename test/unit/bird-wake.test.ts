/** Reading `show protocols` to know when BIRD's BGP sessions are all up (routing/bird-wake.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionsUp } from '../../routing/bird-wake';

const reply = (rows: string[]) =>
  ['0001 BIRD 2.0.12 ready.', '2002-Name       Proto      Table      State  Since         Info', ...rows, '0000 ', ''].join('\n');

test('counts BGP sessions, on the first row (with a reply code) and on continuation rows, and not other protocols', () => {
  const text = reply([
    '1002-device1    Device     ---        up     18:44:46.826  ',
    ' kernel4    Kernel     master4    up     18:44:46.826  ',
    ' mesh_172_31_0_1 BGP        ---        up     18:44:47.000  Established   ',
    ' mesh_172_31_0_2 BGP        ---        start  18:44:47.000  Active        Socket: Connection refused',
  ]);
  assert.deepEqual(sessionsUp(text), { sessions: 2, allUp: false });
});

test('all up when every BGP session is Established, including one on the first row', () => {
  const text = reply([
    '1002-mesh_172_31_0_1 BGP        ---        up     18:44:47.000  Established   ',
    ' mesh_172_31_0_2 BGP        ---        up     18:44:47.000  Established   ',
  ]);
  assert.deepEqual(sessionsUp(text), { sessions: 2, allUp: true });
});

test('a BIRD with no BGP session has nothing to wait for', () => {
  assert.deepEqual(sessionsUp(reply(['1002-device1    Device     ---        up     18:44:46.826  '])), { sessions: 0, allUp: true });
});
