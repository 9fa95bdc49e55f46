import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@xmpp/client';
import type { StanzaEvent } from '../src/core/router.js';
import { Jid } from '../src/xml/jid.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { sharePresence } from './support/subscriptions.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Blocking command (XEP-0191) over real client connections: the list, its pushes, and traffic stopping both ways. */

const NS = 'urn:xmpp:blocking';
const NS_ERRORS = 'urn:xmpp:blocking:errors';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const OTHER = 'elsewhere.test';
const MAX_ITEMS = 6;
const WAIT = 10_000;

let server: TestServer;
let domain: string;
const clients: TestClient[] = [];
/** Bodies of messages that reached offline storage (`message/offline`), per recipient. */
const storedOffline: { to: string; body: string | undefined }[] = [];

before(async () => {
  server = await startTestServer({ domain: ['lethe.test', OTHER], blocking: { maxItems: MAX_ITEMS } });
  domain = server.domain;
  const names = ['alice', 'bob', 'iris', 'ivan', 'pia', 'paul', 'dora', 'dom', 'gus', 'fay', 'olga', 'pete', 'quinn'];
  for (const name of [...names, 'rita', 'sam']) await server.addUser(name);
  await server.running.server.accounts.create(new Jid('eve', OTHER), PASSWORD);
  // Stands in for offline storage, so a test can tell a refused message from a stored one.
  server.running.server.hooks.on(
    'message/offline',
    (e: StanzaEvent) => {
      storedOffline.push({ to: e.to.bareString(), body: e.stanza.getChildText('body') });
      return true;
    },
    1000,
  );
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server.stop();
});

// xmpp.js waits 2 s for a stream to open; on a busy machine that is too short.
const patient = (xmpp: Client) => {
  (xmpp as Client & { timeout: number }).timeout = WAIT;
};

async function login(user: string, resource?: string, host?: string): Promise<TestClient> {
  const c = await connect(host ? { ...server, domain: host } : server, user, { resource, setup: patient });
  clients.push(c);
  return c;
}

const bare = (c: TestClient) => c.jid.split('/')[0] as string;

function command(name: 'block' | 'unblock', jids: string[]): Element {
  return xml('iq', { type: 'set' }, xml(name, { xmlns: NS }, ...jids.map((jid) => xml('item', { jid }))));
}

const block = (c: TestClient, ...jids: string[]) => c.iq(command('block', jids), WAIT);
const unblock = (c: TestClient, ...jids: string[]) => c.iq(command('unblock', jids), WAIT);

async function blocklist(c: TestClient): Promise<string[]> {
  const result = await c.iq(xml('iq', { type: 'get' }, xml('blocklist', { xmlns: NS })), WAIT);
  const list = result.getChild('blocklist', NS);
  assert.ok(list, 'the result carries a blocklist element');
  return list.getChildren('item').map((i) => i.attrs.jid as string);
}

interface StanzaErrorLike {
  condition: string;
  type: string;
  application?: Element;
}

async function refusal(request: Promise<unknown>): Promise<StanzaErrorLike> {
  try {
    await request;
  } catch (err) {
    if ((err as StanzaErrorLike).condition) return err as StanzaErrorLike;
    throw err;
  }
  assert.fail('expected an error reply');
}

/** A round trip on c's stream: whatever the server sent c before is then in `c.received`. */
async function settle(...cs: TestClient[]): Promise<void> {
  for (const c of cs) await c.iq(xml('iq', { type: 'get', to: domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })), WAIT);
}

let counter = 0;
async function message(from: TestClient, to: string, type = 'chat'): Promise<string> {
  const body = `m${++counter}`;
  await from.send(xml('message', { to, type }, xml('body', {}, body)));
  return body;
}

const delivered = (body: string) => (el: Element) =>
  el.is('message') && el.attrs.type !== 'error' && el.getChildText('body') === body;
const bounced = (body: string) => (el: Element) =>
  el.is('message') && el.attrs.type === 'error' && el.getChildText('body') === body;

function condition(el: Element): string | undefined {
  return el
    .getChild('error')
    ?.getChildElements()
    .find((c) => c.attrs.xmlns === STANZAS)?.name;
}

function pushOf(name: 'block' | 'unblock', jids: string[]) {
  const wanted = [...jids].sort().join(' ');
  return (el: Element) => {
    const payload = el.is('iq') && el.attrs.type === 'set' ? el.getChild(name, NS) : undefined;
    if (!payload) return false;
    return (
      payload
        .getChildren('item')
        .map((i) => i.attrs.jid)
        .sort()
        .join(' ') === wanted
    );
  };
}

const isPush = (el: Element) => el.is('iq') && (el.getChild('block', NS) ?? el.getChild('unblock', NS)) !== undefined;

test('the server advertises the blocking command', async () => {
  const c = await login('alice', 'disco');
  const info = await c.iq(
    xml('iq', { type: 'get', to: domain }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })),
    WAIT,
  );
  const features = info.getChild('query')?.getChildren('feature') ?? [];
  assert.ok(features.some((f) => f.attrs.var === NS));
});

test('get, block, unblock and unblock-all, pushed to every resource that asked for the list', async () => {
  const one = await login('alice', 'one');
  const two = await login('alice', 'two');
  const quiet = await login('alice', 'quiet');
  assert.deepEqual(await blocklist(one), []);
  assert.deepEqual(await blocklist(two), []);

  const jids = ['romeo@montague.example', 'montague.example', 'tybalt@capulet.example/sword', 'capulet.example/gate'];
  await block(one, ...jids);
  for (const c of [one, two]) {
    const push = await c.waitFor(pushOf('block', jids), WAIT, 'the block push');
    assert.equal(push.attrs.to, c.jid, 'each push is addressed to its resource');
  }
  assert.deepEqual(await blocklist(one), [...jids].sort());

  // Items are JIDs, compared in their canonical form: blocking one again changes nothing.
  await block(two, 'Romeo@Montague.Example');
  await two.waitFor(pushOf('block', ['romeo@montague.example']), WAIT, 'the repeated block push');
  assert.deepEqual(await blocklist(two), [...jids].sort());

  await unblock(two, 'romeo@montague.example', 'montague.example');
  for (const c of [one, two]) await c.waitFor(pushOf('unblock', ['romeo@montague.example', 'montague.example']), WAIT);
  assert.deepEqual(await blocklist(one), ['capulet.example/gate', 'tybalt@capulet.example/sword']);

  await unblock(one);
  for (const c of [one, two]) await c.waitFor(pushOf('unblock', []), WAIT, 'the unblock-all push');
  assert.deepEqual(await blocklist(two), []);

  await settle(quiet);
  assert.equal(quiet.received.filter(isPush).length, 0, 'a resource that never asked for the list gets no pushes');
  await Promise.all([one.stop(), two.stop(), quiet.stop()]);
});

test('malformed and oversized block commands are refused and change nothing', async () => {
  const c = await login('alice', 'errors');
  const empty = await refusal(c.iq(command('block', []), WAIT));
  assert.equal(empty.condition, 'bad-request', 'a block without items');
  const noJid = await refusal(c.iq(xml('iq', { type: 'set' }, xml('block', { xmlns: NS }, xml('item', {}))), WAIT));
  assert.equal(noJid.condition, 'bad-request', 'an item without a jid');
  const malformed = await refusal(block(c, 'fine@example.org', 'a@b@c'));
  assert.equal(malformed.condition, 'jid-malformed');
  assert.deepEqual(await blocklist(c), [], 'a refused command blocks nothing, not even its valid items');

  const some = Array.from({ length: MAX_ITEMS - 1 }, (_, i) => `spam${i}@example.org`);
  await block(c, ...some);
  const full = await refusal(block(c, 'one@example.org', 'two@example.org'));
  assert.equal(full.condition, 'not-acceptable', 'beyond blocking.maxItems');
  assert.equal((await blocklist(c)).length, MAX_ITEMS - 1);
  await block(c, 'one@example.org');
  assert.equal((await blocklist(c)).length, MAX_ITEMS);
  await unblock(c);
  await c.stop();
});

test('blocking stops messages both ways; what the user sends gets <blocked/>', async () => {
  const alice = await login('alice', 'messages');
  const bob = await login('bob', 'messages');
  const before = await message(bob, bare(alice));
  await alice.waitFor(delivered(before), WAIT, 'a message before the block');

  await block(alice, bare(bob));
  for (const to of [bare(alice), alice.jid]) {
    const body = await message(bob, to);
    const error = await bob.waitFor(bounced(body), WAIT, 'the refusal of a message to the blocker');
    assert.equal(condition(error), 'service-unavailable', 'the blocker looks unavailable');
    assert.equal(error.getChild('error')?.getChildren('blocked', NS_ERRORS).length, 0, 'nothing says why');
    await settle(alice);
    assert.ok(!alice.received.some(delivered(body)), `the message to ${to} is not delivered`);
  }
  const headline = await message(bob, bare(alice), 'headline');
  await settle(bob, alice);
  assert.ok(!alice.received.some(delivered(headline)), 'a headline is dropped');
  assert.ok(!bob.received.some(bounced(headline)), 'silently');

  const out = await message(alice, bare(bob));
  const error = await alice.waitFor(bounced(out), WAIT, 'the bounce of a message to a blocked JID');
  assert.equal(error.attrs.from, bare(bob));
  assert.equal(error.getChild('error')?.attrs.type, 'cancel');
  assert.equal(condition(error), 'not-acceptable');
  assert.ok(error.getChild('error')?.getChild('blocked', NS_ERRORS), 'the <blocked/> condition of XEP-0191');
  await settle(bob);
  assert.ok(!bob.received.some(delivered(out)), 'the blocked JID gets nothing');

  await unblock(alice, bare(bob));
  const again = await message(bob, alice.jid);
  await alice.waitFor(delivered(again), WAIT, 'a message after unblocking');
  const reply = await message(alice, bob.jid);
  await bob.waitFor(delivered(reply), WAIT, 'a reply after unblocking');
  await Promise.all([alice.stop(), bob.stop()]);
});

test('blocking stops iq both ways, also requests the server answers for the user', async () => {
  const iris = await login('iris');
  const ivan = await login('ivan');
  await sharePresence(iris, ivan);
  await sharePresence(ivan, iris);
  let asked = 0;
  iris.xmpp.iqCallee.get('urn:example:blocking', 'query', () => {
    asked++;
    return xml('query', { xmlns: 'urn:example:blocking' });
  });
  const ask = (from: TestClient, to: string) =>
    from.iq(xml('iq', { type: 'get', to }, xml('query', { xmlns: 'urn:example:blocking' })), WAIT);
  const disco = (from: TestClient, to: string) =>
    from.iq(xml('iq', { type: 'get', to }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), WAIT);
  await ask(ivan, iris.jid);
  await disco(ivan, bare(iris));
  assert.equal(asked, 1);

  await block(iris, bare(ivan));
  assert.equal((await refusal(ask(ivan, iris.jid))).condition, 'service-unavailable');
  assert.equal(asked, 1, 'the request never reached the blocker');
  assert.equal((await refusal(disco(ivan, bare(iris)))).condition, 'service-unavailable');

  for (const request of [ask(iris, ivan.jid), disco(iris, bare(ivan))]) {
    const error = await refusal(request);
    assert.equal(error.condition, 'not-acceptable');
    assert.ok(error.application?.is('blocked', NS_ERRORS), 'with <blocked/>');
  }

  await unblock(iris);
  await ask(ivan, iris.jid);
  assert.equal(asked, 2);
  await disco(iris, bare(ivan));
  await Promise.all([iris.stop(), ivan.stop()]);
});

test('blocking stops presence both ways: unavailable on block, presence again on unblock', async () => {
  const pia = await login('pia');
  const paul = await login('paul');
  const dora = await login('dora');
  await sharePresence(pia, paul);
  await sharePresence(paul, pia);
  const from = (c: TestClient, type?: string, status?: string) => (el: Element) =>
    el.is('presence') &&
    el.attrs.from === c.jid &&
    el.attrs.type === type &&
    (status === undefined || el.getChildText('status') === status);
  // Directed presence to someone without a subscription: dora must also learn that pia is gone.
  await pia.send(xml('presence', { to: bare(dora) }));
  await dora.waitFor(from(pia), WAIT, 'directed presence');

  await block(pia, bare(paul), bare(dora));
  await paul.waitFor(from(pia, 'unavailable'), WAIT, 'unavailable for the blocked subscriber');
  await dora.waitFor(from(pia, 'unavailable'), WAIT, 'unavailable for the blocked recipient of directed presence');

  await paul.send(xml('presence', {}, xml('status', {}, 'busy')));
  await pia.send(xml('presence', {}, xml('status', {}, 'away')));
  await paul.send(xml('presence', { to: pia.jid }, xml('status', {}, 'psst')));
  await pia.send(xml('presence', { to: paul.jid }, xml('status', {}, 'psst')));
  await settle(paul, pia, paul, dora);
  assert.ok(!pia.received.some(from(paul, undefined, 'busy')), 'no broadcast from the blocked contact');
  assert.ok(!pia.received.some(from(paul, undefined, 'psst')), 'no directed presence from the blocked contact');
  assert.ok(!paul.received.some(from(pia, undefined, 'away')), 'no broadcast to the blocked contact');
  assert.ok(!paul.received.some(from(pia, undefined, 'psst')), 'no directed presence to the blocked contact');
  assert.ok(!pia.received.some((el) => el.is('presence') && el.attrs.type === 'error'), 'presence is never bounced');

  await unblock(pia, bare(paul));
  await paul.waitFor(from(pia, undefined, 'away'), WAIT, 'the blocker’s current presence after unblocking');
  await pia.waitFor(from(paul, undefined, 'busy'), WAIT, 'the contact’s current presence after unblocking');
  await unblock(pia);
  await Promise.all([pia.stop(), paul.stop(), dora.stop()]);
});

test('a domain item blocks everyone at that domain, and no one else', async () => {
  const dom = await login('dom');
  const eve = await login('eve', undefined, OTHER);
  const gus = await login('gus', 'any');
  await block(dom, OTHER);
  const fromEve = await message(eve, bare(dom));
  assert.equal(condition(await eve.waitFor(bounced(fromEve), WAIT, 'refusal')), 'service-unavailable');
  const toEve = await message(dom, eve.jid);
  const error = await dom.waitFor(bounced(toEve), WAIT, 'bounce');
  assert.ok(error.getChild('error')?.getChild('blocked', NS_ERRORS));
  const fromGus = await message(gus, bare(dom));
  await dom.waitFor(delivered(fromGus), WAIT, 'a message from another domain');
  await settle(dom);
  assert.ok(!dom.received.some(delivered(fromEve)));
  await unblock(dom);
  await Promise.all([dom.stop(), eve.stop(), gus.stop()]);
});

test('a full-JID item blocks only that resource', async () => {
  const fay = await login('fay');
  const phone = await login('gus', 'phone');
  const laptop = await login('gus', 'laptop');
  await block(fay, phone.jid);
  const fromPhone = await message(phone, bare(fay));
  assert.equal(condition(await phone.waitFor(bounced(fromPhone), WAIT, 'refusal')), 'service-unavailable');
  const fromLaptop = await message(laptop, bare(fay));
  await fay.waitFor(delivered(fromLaptop), WAIT, 'a message from the other resource');
  const toPhone = await message(fay, phone.jid);
  assert.ok((await fay.waitFor(bounced(toPhone), WAIT, 'bounce')).getChild('error')?.getChild('blocked', NS_ERRORS));
  const toLaptop = await message(fay, laptop.jid);
  await laptop.waitFor(delivered(toLaptop), WAIT, 'a message to the other resource');
  await settle(fay, phone);
  assert.ok(!fay.received.some(delivered(fromPhone)));
  assert.ok(!phone.received.some(delivered(toPhone)));
  await unblock(fay);
  await Promise.all([fay.stop(), phone.stop(), laptop.stop()]);
});

test('an offline user’s list still applies: a blocked sender’s message is refused, not stored', async () => {
  const olga = await login('olga');
  await block(olga, `pete@${domain}`);
  await olga.stop();
  const { sessions } = server.running.server;
  for (let i = 0; i < 500 && sessions.byResource(`olga@${domain}`); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(sessions.byResource(`olga@${domain}`), undefined, 'olga is offline');

  const pete = await login('pete');
  const quinn = await login('quinn');
  const refused = await message(pete, `olga@${domain}`);
  assert.equal(condition(await pete.waitFor(bounced(refused), WAIT, 'refusal')), 'service-unavailable');
  const kept = await message(quinn, `olga@${domain}`);
  await settle(quinn);
  assert.deepEqual(
    storedOffline.filter((m) => m.to === `olga@${domain}`).map((m) => m.body),
    [kept],
    'only the message from someone not blocked is stored',
  );
  await Promise.all([pete.stop(), quinn.stop()]);
});

test('the blocklist data category counts, exports and erases, and declares whom it mentions', async () => {
  const { privacy, db } = server.running.server;
  const category = privacy.get('blocklist');
  assert.ok(category);
  const rita = await login('rita');
  const sam = await login('sam');
  await block(rita, bare(sam), 'spam.example');
  const user = Jid.parse(bare(rita));
  assert.equal(await category.count(user), 2);
  const exported = [];
  for await (const record of category.export(user)) exported.push(record);
  assert.deepEqual(exported, [{ jid: bare(sam) }, { jid: 'spam.example' }]);
  assert.deepEqual(category.mentions, [{ table: 'blocklist', column: 'jid', ownerColumn: 'owner' }]);
  assert.equal(category.legalBasis, 'contract');

  assert.equal(await db.transaction((tx) => category.erase(user, tx)), 2);
  assert.equal(await category.count(user), 0);
  const body = await message(sam, rita.jid);
  await rita.waitFor(delivered(body), WAIT, 'traffic flows once the list is erased');
  assert.deepEqual(await blocklist(rita), []);
  await Promise.all([rita.stop(), sam.stop()]);
});

test('the blocklist survives a restart and applies before the user logs in again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lethe-blocking-'));
  try {
    let s = await startTestServer({}, dir);
    await s.addUser('juliet');
    await s.addUser('tybalt');
    const juliet = await connect(s, 'juliet', { setup: patient });
    await block(juliet, `tybalt@${s.domain}`);
    await juliet.stop();
    await s.stop();

    s = await startTestServer({}, dir);
    try {
      const tybalt = await connect(s, 'tybalt', { setup: patient });
      const early = await message(tybalt, `juliet@${s.domain}`);
      assert.equal(
        condition(await tybalt.waitFor(bounced(early), WAIT, 'refusal while offline')),
        'service-unavailable',
      );
      const back = await connect(s, 'juliet', { setup: patient });
      assert.deepEqual(await blocklist(back), [`tybalt@${s.domain}`]);
      const late = await message(tybalt, back.jid);
      assert.equal(condition(await tybalt.waitFor(bounced(late), WAIT, 'refusal while online')), 'service-unavailable');
      await Promise.all([tybalt.stop(), back.stop()]);
    } finally {
      await s.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
