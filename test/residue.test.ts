import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { invitations } from '../src/modules/invite/index.js';
import { messageArchive } from '../src/modules/mam/index.js';
import { addressHash } from '../src/privacy/address-hash.js';
import { queueNotice } from '../src/privacy/consent/notices.js';
import { consent } from '../src/privacy/consent/service.js';
import { downloads } from '../src/privacy/downloads.js';
import { erasureReceipt, requestErasure, sweepErasures } from '../src/privacy/erasure.js';
import { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { remainderTables, scanForResidue, tablesWithout, unregisteredTables } from './support/residue.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

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
  // The consent poller must not deliver the notice queued for alice below before the scan sees it.
  server = await startTestServer({ consent: { checkInterval: 3600 } });
  // Terms published before anyone logs in: each login gets a terms notice with a single-use link.
  await consent(server.running.server).publish({
    version: '1',
    publishedAt: Date.now(),
    changes: null,
    documents: [{ id: 'terms', title: 'Terms of Service', markdown: '# Terms', template: '# Terms' }],
  });
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  carol = await server.addUser('carol');
  // dave exists but never logs in, so alice's request to him stays pending in his store.
  await server.addUser('dave');
  const [a, b, c] = await Promise.all([connect(server, 'alice'), connect(server, 'bob'), connect(server, 'carol')]);
  const isNotice = (el: Element) => el.is('message') && el.attrs.from === `notices@${server.domain}`;
  await Promise.all([a, b, c].map((client) => client.waitFor(isNotice, 5000, 'the terms notice')));
  // Alice and bob registered with invitations, used now.
  for (const user of [alice, bob]) {
    const invite = await invitations(server.running.server).create({ domain: user.domain, by: 'test' });
    await invitations(server.running.server).claim(invite.token, user);
  }
  // Alice accepts them (a consent ledger entry), with the in-band command, as a user would.
  await consent(server.running.server).accept(alice, 'ad-hoc');
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
  // Message archives (XEP-0313), both opted in (a consent entry each): alice's copy goes, bob's copy of her
  // message stays, and so does bob's preference naming her (his settings).
  const mamPrefs = (always: string) =>
    xml(
      'iq',
      { type: 'set' },
      xml('prefs', { xmlns: 'urn:xmpp:mam:2', default: 'always' }, xml('always', {}, xml('jid', {}, always))),
    );
  await a.iq(mamPrefs(bob.toString()));
  await b.iq(mamPrefs(alice.toString()));
  await a.send(xml('message', { to: bob.toString(), type: 'chat' }, xml('body', {}, 'archived tea')));
  await b.waitFor((el) => el.is('message') && el.getChildText('body') === 'archived tea', 5000, 'the archived message');
  await messageArchive(server.running.server).settled();
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
  // The audit log: an operator action whose reason names alice, then her own erasure request, which
  // locks her account until the grace period ends (the pending-erasure record is a store too).
  const lethe = server.running.server;
  await lethe.audit.record({
    actor: 'operator',
    action: 'export',
    account: alice,
    reason: `asked by ${alice} by mail`,
  });
  // A data export waiting for download: a file store outside the database.
  const pending = downloads(lethe);
  const file = await pending.newFile();
  await writeFile(file, `export of ${alice}`);
  pending.offer(alice, file, { filename: 'export.zip', contentType: 'application/zip' });
  // An operator notice queued for her and not delivered yet.
  await queueNotice(lethe.db, { to: alice, body: `Dear ${alice}, the server moves tonight.` });
  await requestErasure(lethe, alice, { by: alice.bareString(), reason: 'leaving' });
});

after(async () => {
  await server.stop();
});

test('every table belongs to a registered data category', async () => {
  const { db, privacy } = server.running.server;
  assert.deepEqual(await unregisteredTables(db, privacy), []);
});

test('the fill step put alice in every store, so the scan below means something', async () => {
  const { db, privacy } = server.running.server;
  // Tombstones and receipts only ever hold the hash of an erased address: checked after the erasure.
  const remainders = remainderTables(privacy);
  const plain = privacy.nonPersonalTables();
  assert.deepEqual(
    (await tablesWithout(db, alice)).filter((t) => !remainders.has(t) && !plain.has(t)),
    [],
  );
});

test('stores outside the database (files, memory) were filled too', async () => {
  const { privacy } = server.running.server;
  for (const c of privacy.all().filter((c) => c.elsewhere)) assert.ok((await c.count(alice)) > 0, c.id);
});

test('the key store, a file of its own, is claimed and names nobody: only random ids and wrapped keys', async () => {
  const { keys, privacy } = server.running.server;
  const store = keys.keyStore.database;
  assert.deepEqual(await unregisteredTables(store, privacy), []);
  const held = await store.get<{ n: number }>('SELECT count(*) AS n FROM wrapped_keys');
  assert.ok((held?.n ?? 0) > 0, 'the fill step made data keys');
  for (const user of [alice, bob, carol]) assert.deepEqual(await scanForResidue(store, privacy, user), []);
});

test('after erasure no trace of alice remains but other users’ own copies, the tombstone hash and pseudonymised audit entries', async () => {
  const { db, privacy, accounts, config } = server.running.server;
  // The sweeper, its clock past the grace period, carries out alice's request.
  assert.equal((await sweepErasures(server.running.server, new Date(Date.now() + 31 * 86_400_000))).erased, 1);
  const hash = addressHash(config, alice);
  const hits = await scanForResidue(db, privacy, alice, hash);
  const residue = hits.filter((h) => !h.allowedBecause);
  assert.deepEqual(residue, [], `residue of alice: ${JSON.stringify(residue, null, 2)}`);
  // What remains is exactly: other users' declared copies of her address, and her hash where a category keeps it.
  const remainders = remainderTables(privacy);
  for (const hit of hits)
    assert.ok(
      hit.value.toLowerCase().includes(alice.bareString()) ? !remainders.has(hit.table) : remainders.has(hit.table),
      `${hit.table}.${hit.column}: ${hit.allowedBecause}`,
    );
  assert.deepEqual(
    (await tablesWithout(db, hash)).filter((t) => remainders.has(t)),
    [],
    'the tombstone, the receipt and the pseudonymised audit entries hold her hash',
  );
  // Exactly which rows remain of her consent history, pseudonymised, as the configuration says (consent.keepProofDays).
  const kept = await db.all<{ purpose: string; action: string; version: string | null; method: string }>(
    'SELECT purpose, action, version, method FROM consent_ledger WHERE account = ? ORDER BY seq',
    [hash],
  );
  assert.deepEqual(
    kept.map((r) => [r.purpose, r.action, r.version, r.method]),
    [
      ['terms', 'given', '1', 'ad-hoc'],
      ['archive', 'given', null, 'xep-0441'],
    ],
  );
  const receipt = await erasureReceipt(server.running.server, alice);
  assert.deepEqual(
    receipt?.kept.find((k) => k.category === 'consent')?.items,
    kept.length,
    'the receipt names the kept consent rows',
  );
  // Stores the scan cannot read must say they hold nothing of hers.
  for (const c of privacy.all().filter((c) => c.elsewhere)) assert.equal(await c.count(alice), 0, c.id);
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
