import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ConfigInput } from '../src/core/config.js';
import type { ExportRecord } from '../src/privacy/registry.js';
import type { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Private XML storage (XEP-0049), with bookmarks (XEP-0048) in it, over real client connections. */

const PRIVATE = 'jabber:iq:private';
const BOOKMARKS = 'storage:bookmarks';
const OVERRIDES: ConfigInput = { private: { maxEntries: 3, maxBytesPerUser: 4096 } };

let dataDir: string;
let server: TestServer;
let domain: string;
let alice: Jid;
let bob: Jid;
let dora: Jid;
/** One connection per user and resource, kept for the whole file: fewer logins keep it quick on a loaded machine. */
const clients = new Map<string, TestClient>();

before(async () => {
  // An explicit data directory survives stop(), for the restart test at the end.
  dataDir = mkdtempSync(join(tmpdir(), 'lethe-private-'));
  server = await startTestServer(OVERRIDES, dataDir);
  domain = server.domain;
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  await server.addUser('carol');
  dora = await server.addUser('dora');
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

const setIq = (...payload: Element[]) => xml('iq', { type: 'set' }, xml('query', { xmlns: PRIVATE }, ...payload));
const getIq = (...payload: Element[]) => xml('iq', { type: 'get' }, xml('query', { xmlns: PRIVATE }, ...payload));

/** The elements inside the result's query. */
async function fetch(c: TestClient, name: string, ns: string): Promise<Element[]> {
  const reply = await c.iq(getIq(xml(name, { xmlns: ns })));
  return (reply.getChild('query', PRIVATE) as Element).getChildElements();
}

const prefs = (nick: string) => xml('exodus', { xmlns: 'exodus:prefs' }, xml('defaultnick', {}, nick));

/** XEP-0048 §3 example: a room with autojoin, nick and password, and a web page. */
const bookmarks = xml(
  'storage',
  { xmlns: BOOKMARKS },
  xml(
    'conference',
    { name: 'Council of Oberon', autojoin: 'true', jid: 'council@conference.underhill.org' },
    xml('nick', {}, 'Puck'),
    xml('password', {}, 'titania & <oberon>'),
  ),
  xml('url', { name: 'Complete Works of Shakespeare', url: 'http://the-tech.mit.edu/Shakespeare/' }),
);

test('jabber:iq:private is advertised', () => {
  assert.ok(server.running.server.features.includes(PRIVATE));
});

test('set, get, overwrite; an unknown namespace returns the empty element', async () => {
  const a = await login('alice');
  const unknown = await fetch(a, 'exodus', 'exodus:prefs');
  assert.deepEqual(
    unknown.map((e) => e.toString()),
    ['<exodus xmlns="exodus:prefs"/>'],
  );
  const result = await a.iq(setIq(prefs('Hamlet')));
  assert.equal(result.attrs.type, 'result');
  assert.deepEqual(
    (await fetch(a, 'exodus', 'exodus:prefs')).map((e) => e.toString()),
    [prefs('Hamlet').toString()],
  );
  await a.iq(setIq(prefs('Ophelia')));
  assert.deepEqual(
    (await fetch(a, 'exodus', 'exodus:prefs')).map((e) => e.toString()),
    [prefs('Ophelia').toString()],
    'a set replaces what the namespace held',
  );
  // §2.3: a set may carry several elements of one namespace, and the result returns them all.
  const two = [xml('note', { xmlns: 'urn:example:notes' }, 'one'), xml('note', { xmlns: 'urn:example:notes' }, 'two')];
  await a.iq(setIq(...two));
  assert.deepEqual(
    (await fetch(a, 'note', 'urn:example:notes')).map((e) => e.toString()),
    two.map((e) => e.toString()),
  );
});

test('bookmarks (XEP-0048) round-trip through private storage', async () => {
  const b = await login('bob');
  assert.deepEqual(
    (await fetch(b, 'storage', BOOKMARKS)).map((e) => e.toString()),
    [`<storage xmlns="${BOOKMARKS}"/>`],
  );
  await b.iq(setIq(bookmarks));
  const [got] = await fetch(b, 'storage', BOOKMARKS);
  assert.equal(got?.toString(), bookmarks.toString());
  assert.equal(got?.getChild('conference')?.getChildText('password'), 'titania & <oberon>');
  // Another resource of the same account sees them; another account does not.
  const phone = await login('bob', 'phone');
  assert.equal((await fetch(phone, 'storage', BOOKMARKS))[0]?.toString(), bookmarks.toString());
  const a = await login('alice');
  assert.equal((await fetch(a, 'storage', BOOKMARKS))[0]?.toString(), `<storage xmlns="${BOOKMARKS}"/>`);
});

test('reserved namespaces and malformed requests are not-acceptable', async () => {
  const c = await login('carol');
  for (const ns of [
    'jabber:client',
    'jabber:server',
    'jabber:iq:roster',
    'http://jabber.org/protocol/muc',
    'vcard-temp',
  ]) {
    assert.equal(await condition(c.iq(setIq(xml('x', { xmlns: ns })))), 'not-acceptable', `set ${ns}`);
    assert.equal(await condition(c.iq(getIq(xml('x', { xmlns: ns })))), 'not-acceptable', `get ${ns}`);
  }
  // A child without a namespace of its own is in jabber:iq:private, the query's.
  assert.equal(await condition(c.iq(setIq(xml('prefs', {}, 'x')))), 'not-acceptable', 'no own namespace');
  assert.equal(await condition(c.iq(setIq())), 'not-acceptable', 'empty set');
  assert.equal(await condition(c.iq(getIq())), 'not-acceptable', 'empty get');
  assert.equal(
    await condition(c.iq(getIq(xml('a', { xmlns: 'urn:example:a' }), xml('b', { xmlns: 'urn:example:b' })))),
    'not-acceptable',
    'a get for two namespaces',
  );
  // A set refused for one element stores none of the others.
  assert.equal(await condition(c.iq(setIq(prefs('Carol'), xml('vCard', { xmlns: 'vcard-temp' })))), 'not-acceptable');
  assert.equal((await fetch(c, 'exodus', 'exodus:prefs'))[0]?.toString(), '<exodus xmlns="exodus:prefs"/>');
});

test('another user’s storage, the server’s and a full JID are forbidden', async () => {
  const c = await login('carol');
  const other = await login('carol', 'other');
  for (const to of [`bob@${domain}`, domain, other.jid, `bob@${domain}/desk`]) {
    assert.equal(
      await condition(
        c.iq(xml('iq', { type: 'get', to }, xml('query', { xmlns: PRIVATE }, xml('storage', { xmlns: BOOKMARKS })))),
      ),
      'forbidden',
      `get to ${to}`,
    );
    assert.equal(
      await condition(c.iq(xml('iq', { type: 'set', to }, xml('query', { xmlns: PRIVATE }, prefs('Iago'))))),
      'forbidden',
      `set to ${to}`,
    );
  }
  // Addressed to the own bare JID is the own storage.
  const own = await c.iq(
    xml('iq', { type: 'get', to: `carol@${domain}` }, xml('query', { xmlns: PRIVATE }, prefs(''))),
  );
  assert.equal(own.attrs.type, 'result');
  const b = await login('bob');
  assert.equal((await fetch(b, 'exodus', 'exodus:prefs'))[0]?.toString(), '<exodus xmlns="exodus:prefs"/>');
});

test('per-user quotas: entries and bytes; replacing and clearing stay possible', async () => {
  const d = await login('dora');
  const category = server.running.server.privacy.get('private');
  for (const n of [1, 2, 3]) await d.iq(setIq(xml('s', { xmlns: `urn:example:${n}` }, `item ${n}`)));
  assert.equal(
    await condition(d.iq(setIq(xml('s', { xmlns: 'urn:example:4' }, 'one too many')))),
    'not-acceptable',
    'a fourth namespace',
  );
  await d.iq(setIq(xml('s', { xmlns: 'urn:example:3' }, 'replaced')));
  assert.equal((await fetch(d, 's', 'urn:example:3'))[0]?.toString(), '<s xmlns="urn:example:3">replaced</s>');
  // An empty element clears the entry, which frees its place.
  await d.iq(setIq(xml('s', { xmlns: 'urn:example:3' })));
  assert.equal(await category?.count(dora), 2);
  assert.equal(await condition(d.iq(setIq(xml('s', { xmlns: 'urn:example:4' }, 'fits now')))), 'no error');

  assert.equal(
    await condition(d.iq(setIq(xml('s', { xmlns: 'urn:example:1' }, 'x'.repeat(4096))))),
    'not-acceptable',
    'over the byte quota',
  );
  assert.equal((await fetch(d, 's', 'urn:example:1'))[0]?.getText(), 'item 1', 'a refused set changes nothing');
});

test('the private data category counts, exports and erases', async () => {
  const { privacy, db } = server.running.server;
  const category = privacy.get('private');
  assert.ok(category);
  assert.equal(category.legalBasis, 'contract');
  assert.deepEqual(category.recipients, []);
  assert.equal(await category.count(alice), 2, 'exodus:prefs and the notes');
  assert.equal(await category.count(bob), 1);
  const records: ExportRecord[] = [];
  for await (const r of category.export(bob)) records.push(r);
  assert.deepEqual(
    records.map((r) => [r.namespace, r.xml]),
    [[BOOKMARKS, bookmarks.toString()]],
  );
  const a = await login('alice');
  assert.equal(await db.transaction((tx) => category.erase(alice, tx)), 2);
  assert.equal(await category.count(alice), 0);
  assert.equal(await category.count(bob), 1, 'other users keep theirs');
  assert.equal((await fetch(a, 'exodus', 'exodus:prefs'))[0]?.toString(), '<exodus xmlns="exodus:prefs"/>');
});

test('private storage survives a restart', async () => {
  await Promise.all([...clients.values()].map((c) => c.stop()));
  clients.clear();
  await server.stop();
  server = await startTestServer(OVERRIDES, dataDir);
  const b = await login('bob');
  assert.equal((await fetch(b, 'storage', BOOKMARKS))[0]?.toString(), bookmarks.toString());
});
