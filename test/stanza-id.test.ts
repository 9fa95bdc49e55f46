import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from './support/lethe.js';
import { StreamClient } from './support/stream-client.js';

/** Unique and stable stanza ids (XEP-0359) on messages delivered to local accounts. */

const SID = 'urn:xmpp:sid:0';
let server: TestServer;

before(async () => {
  server = await startTestServer();
  for (const name of ['alice', 'bob']) await server.addUser(name);
});
after(() => server.stop());

test("the recipient's account adds its stanza-id; forged ones naming local addresses go, others stay", async () => {
  const bob = await StreamClient.login(server, 'bob', 'desk');
  const alice = await StreamClient.login(server, 'alice', 'phone');
  const account = `alice@${server.domain}`;
  await alice.send('<presence/>');
  await alice.next((el) => el.name === 'presence');
  await bob.send(
    `<message to='${alice.jid}' id='m1' type='chat'><body>hi</body>` +
      `<stanza-id xmlns='${SID}' by='${account}' id='forged'/>` +
      `<stanza-id xmlns='${SID}' by='bob@${server.domain.toUpperCase()}' id='forged-too'/>` +
      `<stanza-id xmlns='${SID}' by='room@muc.example.org' id='theirs'/></message>`,
  );
  const m1 = await alice.next((el) => el.attrs.id === 'm1');
  const ids = m1.getChildren('stanza-id', SID).map((el) => [el.attrs.by, el.attrs.id]);
  assert.equal(ids.length, 2);
  assert.deepEqual(ids[0], ['room@muc.example.org', 'theirs']);
  assert.equal(ids[1]?.[0], account);
  assert.match(ids[1]?.[1] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  await bob.send(`<message to='${account}' id='m2' type='chat'><body>again</body></message>`);
  const m2 = await alice.next((el) => el.attrs.id === 'm2');
  assert.notEqual(m2.getChild('stanza-id', SID)?.attrs.id, ids[1]?.[1], 'one id per message');
  bob.raw.destroy();
  alice.raw.destroy();
});
