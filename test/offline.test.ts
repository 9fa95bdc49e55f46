import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DataCategory } from '../src/privacy/registry.js';
import { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Offline messages (XEP-0160) with delay stamps (XEP-0203), hints (XEP-0334), the cap and the retention. */

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const DELAY = 'urn:xmpp:delay';
const HINTS = 'urn:xmpp:hints';
const CHATSTATES = 'http://jabber.org/protocol/chatstates';
const MAX = 5;
/** Generous: the machine running the tests may be busy; nothing waits this long when all is well. */
const WAIT = 20_000;

let server: TestServer;
let domain: string;
let sender: TestClient;
const clients: TestClient[] = [];

function category(s: TestServer = server): DataCategory {
  return s.running.server.privacy.get('offline') as DataCategory;
}

function stored(user: string, s: TestServer = server): Promise<number> {
  return category(s).count(Jid.parse(`${user}@${s.domain}`));
}

/** Waits until `user` has `n` offline messages: storing happens after the sender's stanza is processed. */
async function waitStored(user: string, n: number, s: TestServer = server, timeoutMs = WAIT): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const count = await stored(user, s);
    if (count === n) return;
    if (Date.now() > deadline) throw new Error(`${user} has ${count} offline messages, expected ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function online(user: string, options: Parameters<typeof connect>[2] = {}, s = server): Promise<TestClient> {
  const c = await connect(s, user, options);
  clients.push(c);
  return c;
}

let counter = 0;
function message(to: string, attrs: Record<string, string> = {}, ...children: Element[]): Element {
  return xml('message', { to, ...attrs }, ...children);
}
function body(): { text: string; el: Element } {
  const text = `offline ${++counter}`;
  return { text, el: xml('body', {}, text) };
}
const hasBody = (text: string) => (el: Element) => el.is('message') && el.getChildText('body') === text;
const bouncedWith = (text: string, condition: string) => (el: Element) =>
  el.is('message') &&
  el.attrs.type === 'error' &&
  el.getChildText('body') === text &&
  el.getChild('error')?.getChild(condition, STANZAS) !== undefined;

before(async () => {
  server = await startTestServer({ offline: { maxPerUser: MAX } });
  domain = server.domain;
  for (const name of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina']) await server.addUser(name);
  sender = await online('alice', { resource: 'sender' });
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server.stop();
});

test('messages to an offline user are kept and arrive in order, with delay stamps, at initial presence', async () => {
  const before = Date.now();
  const sent = [body(), body(), body()];
  await sender.send(message(`bob@${domain}`, { type: 'chat' }, sent[0]!.el));
  await sender.send(message(`bob@${domain}`, {}, sent[1]!.el));
  await sender.send(message(`bob@${domain}/gone`, { type: 'normal' }, sent[2]!.el));
  await waitStored('bob', 3);
  const afterStore = Date.now();
  await sender.expectNothing((el) => el.attrs.type === 'error', 100);

  const bob = await online('bob');
  const got = await Promise.all(sent.map((m) => bob.waitFor(hasBody(m.text), WAIT, m.text)));
  const order = got.map((el) => bob.received.indexOf(el));
  assert.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
    'in the order they were sent',
  );
  for (const el of got) {
    assert.equal(el.attrs.from, sender.jid);
    const delay = el.getChild('delay', DELAY);
    assert.ok(delay, `a delay stamp on ${el.toString()}`);
    assert.equal(delay.attrs.from, domain);
    assert.equal(delay.getText(), 'Offline Storage');
    const stamp = Date.parse(delay.attrs.stamp as string);
    assert.ok(stamp >= before - 1000 && stamp <= afterStore + 1000, `stamp ${delay.attrs.stamp} is when it was stored`);
    assert.match(delay.attrs.stamp as string, /Z$/, 'in UTC');
  }
  assert.equal(got[2]?.attrs.to, `bob@${domain}/gone`, 'delivered as it was addressed');
  await waitStored('bob', 0);
});

test('not delivered to a session without available presence or with a negative priority', async () => {
  const m = body();
  await sender.send(message(`carol@${domain}`, { type: 'chat' }, m.el));
  await waitStored('carol', 1);
  const quiet = await online('carol', { resource: 'quiet', presence: false });
  await quiet.expectNothing(hasBody(m.text), 300);
  await quiet.send(xml('presence', {}, xml('priority', {}, '-1')));
  await quiet.expectNothing(hasBody(m.text), 300);
  assert.equal(await stored('carol'), 1, 'still kept');
  const next = await online('carol', { resource: 'next' });
  await next.waitFor(hasBody(m.text), WAIT, 'at the next initial presence with a non-negative priority');
  await waitStored('carol', 0);
  await quiet.expectNothing(hasBody(m.text), 0);
});

test('groupchat, headline and error messages are not kept; no-store is refused; chat states alone are dropped', async () => {
  const to = `dave@${domain}`;
  const groupchat = body();
  await sender.send(message(to, { type: 'groupchat' }, groupchat.el));
  await sender.waitFor(bouncedWith(groupchat.text, 'service-unavailable'), WAIT, 'groupchat bounce');
  const headline = body();
  await sender.send(message(to, { type: 'headline' }, headline.el));
  const error = body();
  await sender.send(message(to, { type: 'error' }, error.el));
  const noStore = body();
  await sender.send(message(to, { type: 'chat' }, noStore.el, xml('no-store', { xmlns: HINTS })));
  await sender.waitFor(bouncedWith(noStore.text, 'service-unavailable'), WAIT, 'no-store refused');
  await sender.send(message(to, { type: 'chat' }, xml('composing', { xmlns: CHATSTATES })));
  await sender.expectNothing((el) => el.attrs.type === 'error' && !el.getChild('body'), 200);
  assert.equal(await stored('dave'), 0, 'none of them kept');

  // <store/> keeps what would not be kept otherwise; <no-permanent-store/> allows this temporary storage.
  const noPermanent = body();
  await sender.send(message(to, { type: 'chat' }, noPermanent.el, xml('no-permanent-store', { xmlns: HINTS })));
  await sender.send(message(to, { type: 'chat' }, xml('gone', { xmlns: CHATSTATES }), xml('store', { xmlns: HINTS })));
  await waitStored('dave', 2);
  const dave = await online('dave');
  await dave.waitFor(hasBody(noPermanent.text), WAIT, 'the no-permanent-store message');
  await dave.waitFor((el) => el.getChild('gone', CHATSTATES) !== undefined, WAIT, 'the stored chat state');
  await dave.expectNothing((el) => [groupchat, headline, error, noStore].some((m) => hasBody(m.text)(el)), 200);
});

test('beyond the per-user cap the sender gets service-unavailable', async () => {
  const kept = Array.from({ length: MAX }, body);
  for (const m of kept) await sender.send(message(`erin@${domain}`, { type: 'chat' }, m.el));
  await waitStored('erin', MAX);
  const extra = body();
  await sender.send(message(`erin@${domain}`, { type: 'chat' }, extra.el));
  const bounce = await sender.waitFor(bouncedWith(extra.text, 'service-unavailable'), WAIT, 'the bounce');
  assert.equal(bounce.attrs.from, `erin@${domain}`);
  assert.equal(await stored('erin'), MAX);
  for (const m of kept) await sender.expectNothing(bouncedWith(m.text, 'service-unavailable'), 0);
});

test('export lists the messages; erasure removes them', async () => {
  const erin = Jid.parse(`erin@${domain}`);
  const records = [];
  for await (const r of category().export(erin)) records.push(r);
  assert.equal(records.length, MAX);
  assert.match(String(records[0]?.stanza), /<body>offline \d+<\/body>/);
  assert.ok(!Number.isNaN(Date.parse(String(records[0]?.storedAt))));
  const { db } = server.running.server;
  assert.equal(await db.transaction((tx) => category().erase(erin, tx)), MAX);
  assert.equal(await stored('erin'), 0);
});

test('expired messages are deleted by expire() and never delivered', async () => {
  const { db } = server.running.server;
  const old = body();
  const fresh = body();
  await sender.send(message(`frank@${domain}`, { type: 'chat' }, old.el));
  await waitStored('frank', 1);
  await sender.send(message(`frank@${domain}`, { type: 'chat' }, fresh.el));
  await waitStored('frank', 2);
  const month = 31 * 86_400_000;
  // The old message is frank's first row (stanzas are encrypted at rest, so it is found by id, not content).
  await db.run(
    'UPDATE offline_messages SET stored_at = stored_at - ? WHERE id = (SELECT min(id) FROM offline_messages WHERE owner = ?)',
    [month, `frank@${domain}`],
  );
  // Not swept yet: delivery skips it and deletes it with the rest.
  const frank = await online('frank');
  await frank.waitFor(hasBody(fresh.text), WAIT, 'the fresh message');
  await frank.expectNothing(hasBody(old.text), 200);
  await waitStored('frank', 0);

  const again = body();
  await sender.send(message(`gina@${domain}`, { type: 'chat' }, again.el));
  await waitStored('gina', 1);
  assert.equal(await category().expire?.(new Date()), 0, 'nothing is past 30 days yet');
  await db.run('UPDATE offline_messages SET stored_at = stored_at - ? WHERE owner = ?', [month, `gina@${domain}`]);
  assert.equal(await category().expire?.(new Date()), 1);
  assert.equal(await stored('gina'), 0);
});

test('the retention is declared from the configuration', () => {
  assert.equal(category().retention.maxAgeSeconds, 30 * 86_400);
  assert.match(category().retention.description, /30 days/);
  assert.deepEqual(category().mentions, [{ table: 'offline_messages', column: 'sealed', ownerColumn: 'owner' }]);
  assert.ok(server.running.server.features.includes('msgoffline'));
});

describe('with a server of its own', () => {
  test('a message to an offline user survives a restart and arrives with its delay stamp', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lethe-offline-'));
    try {
      const first = await startTestServer({}, dir);
      let from: string;
      const sentAt = Date.now();
      try {
        await first.addUser('romeo');
        await first.addUser('juliet');
        const romeo = await online('romeo', {}, first);
        from = romeo.jid;
        await romeo.send(message(`juliet@${first.domain}`, { type: 'chat' }, xml('body', {}, 'wherefore art thou')));
        await waitStored('juliet', 1, first);
      } finally {
        await first.stop();
      }
      const second = await startTestServer({}, dir);
      try {
        const juliet = await online('juliet', {}, second);
        const got = await juliet.waitFor(hasBody('wherefore art thou'), WAIT, 'the message after the restart');
        assert.equal(got.attrs.from, from);
        const stamp = Date.parse(got.getChild('delay', DELAY)?.attrs.stamp as string);
        assert.ok(stamp >= sentAt - 1000 && stamp <= Date.now(), 'stamped when it was stored, before the restart');
        await waitStored('juliet', 0, second);
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the background sweeper deletes expired messages without anyone logging in', async () => {
    const s = await startTestServer({ offline: { sweepInterval: 1 } });
    try {
      await s.addUser('ann');
      await s.addUser('ben');
      const ann = await online('ann', {}, s);
      await ann.send(message(`ben@${s.domain}`, { type: 'chat' }, xml('body', {}, 'sweep me')));
      await waitStored('ben', 1, s);
      await s.running.server.db.run('UPDATE offline_messages SET stored_at = stored_at - ?', [31 * 86_400_000]);
      await waitStored('ben', 0, s, WAIT);
    } finally {
      await s.stop();
    }
  });

  test('with stream management, a long backlog is paced by acknowledgements and the session stays up', async () => {
    const s = await startTestServer({ offline: { maxPerUser: 100 }, sm: { maxQueue: 10 } });
    try {
      await s.addUser('ann');
      await s.addUser('ben');
      const ann = await online('ann', {}, s);
      const texts = Array.from({ length: 40 }, (_, i) => `backlog ${i}`);
      for (const text of texts) await ann.send(message(`ben@${s.domain}`, { type: 'chat' }, xml('body', {}, text)));
      await waitStored('ben', texts.length, s);
      await ann.stop();
      const ben = await online('ben', { presence: false }, s);
      // xmpp.js may announce itself online before stream management is enabled: presence waits for it.
      const session = () => s.running.server.sessions.resources(`ben@${s.domain}`)[0];
      for (let i = 0; i < WAIT / 20 && !session()?.state.has('sm'); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(session()?.state.has('sm'), 'stream management is on');
      await ben.send(xml('presence'));
      await ben.waitFor(hasBody(texts.at(-1) as string), WAIT, 'the last of the backlog');
      const bodies = ben.received.filter((el) => el.is('message')).map((el) => el.getChildText('body'));
      assert.deepEqual(bodies, texts, 'all of them, in order, once');
      assert.equal(ben.xmpp.status, 'online', 'not closed for too many unacknowledged stanzas');
      await waitStored('ben', 0, s);
    } finally {
      await s.stop();
    }
  });
});
