import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { scanForResidue, tablesWithout, unregisteredTables } from './support/residue.js';
import { connect, type TestClient, xml } from './support/xmpp.js';

/**
 * The residue scan (DESIGN.md): fill every store for several users, erase one, then look for the erased
 * address in every column of every table. When a module adds a table, `tablesWithout` fails this test
 * until the fill step below puts the user's data in it too, so no store can escape the scan.
 */
let server: TestServer;
let alice: Jid;
let bob: Jid;
let carol: Jid;

const ROSTER = 'jabber:iq:roster';

async function subscribeBothWays(a: TestClient, b: TestClient, bJid: Jid, aJid: Jid): Promise<void> {
  await a.iq(
    xml(
      'iq',
      { type: 'set' },
      xml(
        'query',
        { xmlns: ROSTER },
        xml('item', { jid: bJid.toString(), name: 'friend' }, xml('group', {}, 'Friends')),
      ),
    ),
  );
  await a.send(xml('presence', { to: bJid.toString(), type: 'subscribe' }));
  await b.waitFor((el) => el.is('presence') && el.attrs.type === 'subscribe', 5000, 'subscribe request');
  await b.send(xml('presence', { to: aJid.toString(), type: 'subscribed' }));
  await b.send(xml('presence', { to: aJid.toString(), type: 'subscribe' }));
  await a.waitFor((el) => el.is('presence') && el.attrs.type === 'subscribe', 5000, 'subscribe back');
  await a.send(xml('presence', { to: bJid.toString(), type: 'subscribed' }));
}

before(async () => {
  server = await startTestServer();
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  carol = await server.addUser('carol');
  // dave exists but never logs in, so alice's request to him stays pending in his store.
  await server.addUser('dave');
  const [a, b, c] = await Promise.all([connect(server, 'alice'), connect(server, 'bob'), connect(server, 'carol')]);
  await subscribeBothWays(a, b, bob, alice);
  await subscribeBothWays(c, a, alice, carol);
  // A pending request from alice that dave never answers: a store of its own in some designs.
  await a.send(xml('presence', { to: `dave@${server.domain}`, type: 'subscribe' }));
  // vCards: alice's names her; bob's mentions nothing of her. Private storage: alice's bookmarks, and
  // carol's note about alice (XEP-0145), which is carol's own data and stays.
  await a.iq(
    xml(
      'iq',
      { type: 'set' },
      xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice'), xml('JABBERID', {}, alice.toString())),
    ),
  );
  await b.iq(xml('iq', { type: 'set' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Bob'))));
  await a.iq(
    xml(
      'iq',
      { type: 'set' },
      xml(
        'query',
        { xmlns: 'jabber:iq:private' },
        xml(
          'storage',
          { xmlns: 'storage:bookmarks' },
          xml('conference', { jid: `tea@conference.${server.domain}`, name: 'Tea party' }, xml('nick', {}, 'alice')),
        ),
      ),
    ),
  );
  await c.iq(
    xml(
      'iq',
      { type: 'set' },
      xml(
        'query',
        { xmlns: 'jabber:iq:private' },
        xml(
          'storage',
          { xmlns: 'storage:rosternotes' },
          xml('note', { jid: alice.toString() }, 'met at the tea party'),
        ),
      ),
    ),
  );
  // Blocklists (XEP-0191): alice's own item, and bob's item naming alice, which is bob's data and stays.
  const blocking = (jid: string) =>
    xml('iq', { type: 'set' }, xml('block', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid })));
  await a.iq(blocking('spam@example.org'));
  // Offline messages (XEP-0160): alice's to dave, who never logs in, is dave's copy and stays.
  await a.send(xml('message', { to: `dave@${server.domain}`, type: 'chat' }, xml('body', {}, 'tea at five?')));
  // Logging out with a status leaves alice's last activity (XEP-0012), written once her session is gone.
  await a.send(xml('presence', { type: 'unavailable' }, xml('status', {}, 'gone to tea')));
  await new Promise((r) => setTimeout(r, 300));
  // alice has no available resource now, so carol's message is kept for her.
  await c.send(xml('message', { to: alice.toString(), type: 'chat' }, xml('body', {}, 'see you at tea')));
  // Last of all: from here on nothing bob sends reaches alice.
  await b.iq(blocking(alice.toString()));
  await Promise.all([a.stop(), b.stop(), c.stop()]);
  const lastActivity = server.running.server.privacy.get('last-activity');
  for (let i = 0; i < 50 && (await lastActivity?.count(alice)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const offline = server.running.server.privacy.get('offline');
  for (let i = 0; i < 500 && (await offline?.count(alice)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
});

after(async () => {
  await server.stop();
});

test('every table belongs to a registered data category', async () => {
  const { db, privacy } = server.running.server;
  assert.deepEqual(await unregisteredTables(db, privacy), []);
});

test('the fill step put alice in every store, so the scan below means something', async () => {
  assert.deepEqual(await tablesWithout(server.running.server.db, alice), []);
});

test('after removal no trace of alice remains except other users’ own declared copies', async () => {
  const { db, privacy, accounts } = server.running.server;
  const receipt = await accounts.remove(alice);
  assert.ok(receipt.find((l) => l.category === 'account')?.removed === 1, 'the receipt counts the account');
  const hits = await scanForResidue(db, privacy, alice);
  const residue = hits.filter((h) => !h.allowedBecause);
  assert.deepEqual(residue, [], `residue of alice: ${JSON.stringify(residue, null, 2)}`);
  // Bob and carol keep their accounts and data.
  assert.ok(await accounts.exists(bob));
  assert.ok(await accounts.exists(carol));
  for (const user of [bob, carol])
    assert.ok((await privacy.countAll(user)).some((c) => c.category.id === 'account' && c.count === 1));
});

test('the scan also matches other case forms of the address', async () => {
  const { db, privacy } = server.running.server;
  await db.run('INSERT INTO accounts (jid, created_at, status) VALUES (?, ?, ?)', [
    'ALICE@LETHE.TEST',
    new Date().toISOString(),
    'active',
  ]);
  const hits = await scanForResidue(db, privacy, Jid.parse(`alice@${server.domain}/phone`).bare);
  assert.equal(hits.filter((h) => !h.allowedBecause).length, 1, 'an upper-case copy is found');
  await db.run('DELETE FROM accounts WHERE jid = ?', ['ALICE@LETHE.TEST']);
});
