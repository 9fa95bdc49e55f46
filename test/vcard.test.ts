import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ExportRecord } from '../src/privacy/registry.js';
import type { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** vcard-temp (XEP-0054) with avatars in PHOTO (XEP-0153), over real client connections. */

const VCARD = 'vcard-temp';

let dataDir: string;
let server: TestServer;
let domain: string;
let alice: Jid;
let bob: Jid;
let carol: Jid;
/** One connection per user and resource, kept for the whole file: fewer logins keep it quick on a loaded machine. */
const clients = new Map<string, TestClient>();

before(async () => {
  // An explicit data directory survives stop(), for the restart test at the end.
  dataDir = mkdtempSync(join(tmpdir(), 'lethe-vcard-'));
  server = await startTestServer({}, dataDir);
  domain = server.domain;
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  carol = await server.addUser('carol');
});

after(async () => {
  await Promise.all([...clients.values()].map((c) => c.stop()));
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function login(user: string, resource = 'desk'): Promise<TestClient> {
  const key = `${user}/${resource}`;
  let c = clients.get(key);
  if (!c) {
    c = await connect(server, user, { resource, presence: false });
    clients.set(key, c);
  }
  return c;
}

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

/** A small but real PNG, base64 as clients put it in BINVAL. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

function aliceCard(desc: string, photo = PNG): Element {
  return xml(
    'vCard',
    { xmlns: VCARD },
    xml('FN', {}, 'Alice Liddell'),
    xml('N', {}, xml('FAMILY', {}, 'Liddell'), xml('GIVEN', {}, 'Alice'), xml('MIDDLE')),
    xml('NICKNAME', {}, 'alice'),
    xml('TEL', {}, xml('HOME'), xml('VOICE'), xml('NUMBER', {}, '+44 1865 000000')),
    xml('EMAIL', {}, xml('INTERNET'), xml('PREF'), xml('USERID', {}, 'alice@example.org')),
    xml('DESC', {}, desc),
    xml('PHOTO', {}, xml('TYPE', {}, 'image/png'), xml('BINVAL', {}, photo)),
    xml('X-EXTENSION', { xmlns: 'urn:example:ext', note: 'quotes " and \' & <angles>' }, 'kept'),
  );
}

const setIq = (card: Element, to?: string) => xml('iq', { type: 'set', to }, card);
const getIq = (to?: string) => xml('iq', { type: 'get', to }, xml('vCard', { xmlns: VCARD }));

test('vcard-temp is advertised', () => {
  assert.ok(server.running.server.features.includes(VCARD));
});

test('own vCard: empty when none, then set, read back unchanged (PHOTO included), and overwritten', async () => {
  const a = await login('alice');
  const empty = (await a.iq(getIq())).getChild('vCard', VCARD);
  assert.ok(empty, 'a result with a vCard');
  assert.equal(empty.children.length, 0, 'an empty vCard when none was set');

  const card = aliceCard('Curious & <brave>, née "Alice"');
  const result = await a.iq(setIq(card));
  assert.equal(result.attrs.type, 'result');
  assert.equal(result.children.length, 0, 'the result carries no payload');
  const got = (await a.iq(getIq())).getChild('vCard', VCARD) as Element;
  assert.equal(got.toString(), card.toString(), 'the vCard round-trips exactly');
  assert.equal(got.getChild('PHOTO')?.getChildText('BINVAL'), PNG);
  // Addressed to the own bare JID works like no address at all.
  const again = (await a.iq(getIq(`alice@${domain}`))).getChild('vCard', VCARD) as Element;
  assert.equal(again.toString(), card.toString());

  const replacement = xml('vCard', { xmlns: VCARD }, xml('FN', {}, 'Alice'));
  await a.iq(setIq(replacement, `alice@${domain}`));
  const now = (await a.iq(getIq())).getChild('vCard', VCARD) as Element;
  assert.equal(now.toString(), replacement.toString(), 'a set replaces the whole vCard');
  await a.iq(setIq(card));
});

test('other users’ vCards: served for them; none and no such account are the same service-unavailable', async () => {
  const b = await login('bob');
  const reply = await b.iq(getIq(`alice@${domain}`));
  assert.equal(reply.attrs.from, `alice@${domain}`, 'answered on the user’s behalf, from their bare JID');
  const card = reply.getChild('vCard', VCARD) as Element;
  assert.equal(card.getChildText('FN'), 'Alice Liddell');
  assert.equal(card.getChild('PHOTO')?.getChildText('BINVAL'), PNG);
  assert.equal(await condition(b.iq(getIq(`carol@${domain}`))), 'service-unavailable', 'no vCard');
  assert.equal(await condition(b.iq(getIq(`nobody@${domain}`))), 'service-unavailable', 'no such account');
  assert.equal(await condition(b.iq(getIq('alice@elsewhere.example'))), 'remote-server-not-found');

  // A deactivated account shows no vCard, though the vCard is kept.
  const { db } = server.running.server;
  await db.run(`UPDATE accounts SET status = 'deactivated' WHERE jid = ?`, [alice.bareString()]);
  assert.equal(await condition(b.iq(getIq(`alice@${domain}`))), 'service-unavailable', 'deactivated');
  await db.run(`UPDATE accounts SET status = 'active' WHERE jid = ?`, [alice.bareString()]);
  assert.ok((await b.iq(getIq(`alice@${domain}`))).getChild('vCard', VCARD)?.getChild('FN'));
});

test('only the user sets their vCard: sets to others, the server or a full JID are forbidden', async () => {
  const b = await login('bob');
  const c = await login('bob', 'other');
  const card = xml('vCard', { xmlns: VCARD }, xml('FN', {}, 'Mallory'));
  assert.equal(await condition(b.iq(setIq(card, `alice@${domain}`))), 'forbidden', 'another user');
  assert.equal(await condition(b.iq(setIq(card, domain))), 'forbidden', 'the server');
  assert.equal(await condition(b.iq(setIq(card, c.jid))), 'forbidden', 'an own full JID');
  const aliceCard = (await b.iq(getIq(`alice@${domain}`))).getChild('vCard', VCARD) as Element;
  assert.equal(aliceCard.getChildText('FN'), 'Alice Liddell', 'alice’s vCard is unchanged');
});

test('malformed and oversized vCards are refused; an empty vCard clears it', async () => {
  const c = await login('carol');
  assert.equal(
    await condition(c.iq(xml('iq', { type: 'set' }, xml('VCARD', { xmlns: VCARD })))),
    'bad-request',
    'wrong root element',
  );
  // A 100 KB photo fits the default limit (192 KiB); a 200 KB one does not, though the stanza still
  // fits limits.maxStanzaBytes, so it is the vCard limit that refuses it.
  const big = 'A'.repeat(100_000);
  await c.iq(setIq(aliceCard('big photo', big)));
  const got = (await c.iq(getIq())).getChild('vCard', VCARD) as Element;
  assert.equal(got.getChild('PHOTO')?.getChildText('BINVAL'), big);
  const tooBig = await condition(c.iq(setIq(aliceCard('too big', 'A'.repeat(200_000)))));
  assert.equal(tooBig, 'not-acceptable');
  assert.equal(
    ((await c.iq(getIq())).getChild('vCard', VCARD) as Element).getChild('PHOTO')?.getChildText('BINVAL'),
    big,
    'a refused set changes nothing',
  );

  await c.iq(setIq(xml('vCard', { xmlns: VCARD })));
  assert.equal(((await c.iq(getIq())).getChild('vCard', VCARD) as Element).children.length, 0);
  assert.equal(await server.running.server.privacy.get('vcard')?.count(carol), 0, 'nothing is kept');
  assert.equal(await condition(c.iq(getIq(`carol@${domain}`))), 'no error', 'own bare JID is the own vCard');
  const b = await login('bob');
  assert.equal(await condition(b.iq(getIq(`carol@${domain}`))), 'service-unavailable');
});

test('the vcard data category says vCards are public and counts, exports and erases them', async () => {
  const { privacy, db } = server.running.server;
  const category = privacy.get('vcard');
  assert.ok(category);
  assert.equal(category.legalBasis, 'contract');
  assert.match(category.description, /public/);
  assert.match(category.recipients.join(' '), /anyone/);
  assert.equal(await category.count(alice), 1);
  const records: ExportRecord[] = [];
  for await (const r of category.export(alice)) records.push(r);
  assert.equal(records.length, 1);
  assert.match(String(records[0]?.vcard), /^<vCard xmlns="vcard-temp">.*Alice Liddell.*<\/vCard>$/s);
  assert.ok(records[0]?.updatedAt);

  const b = await login('bob');
  await b.iq(setIq(xml('vCard', { xmlns: VCARD }, xml('FN', {}, 'Bob'))));
  assert.equal(await db.transaction((tx) => category.erase(bob, tx)), 1);
  assert.equal(await category.count(bob), 0);
  assert.equal(await category.count(alice), 1, 'other users keep theirs');
  assert.equal(((await b.iq(getIq())).getChild('vCard', VCARD) as Element).children.length, 0);
});

test('vCards survive a restart', async () => {
  await Promise.all([...clients.values()].map((c) => c.stop()));
  clients.clear();
  await server.stop();
  server = await startTestServer({}, dataDir);
  const b = await login('bob');
  const card = (await b.iq(getIq(`alice@${domain}`))).getChild('vCard', VCARD) as Element;
  assert.equal(card.toString(), aliceCard('Curious & <brave>, née "Alice"').toString());
});
