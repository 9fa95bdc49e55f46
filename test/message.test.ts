import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { StanzaEvent } from '../src/core/router.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Delivery rules of RFC 6121 §8.5 for messages, and iq to full JIDs, over real client connections. */

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

let server: TestServer;
let domain: string;
const clients: TestClient[] = [];
let bob: TestClient;
let alice: { high: TestClient; low: TestClient; negative: TestClient };

/** Logs in with the given priority (or no presence at all), and waits until the server has processed it. */
async function online(user: string, resource: string, priority?: number): Promise<TestClient> {
  const c = await connect(server, user, { resource, presence: false });
  clients.push(c);
  if (priority !== undefined) await setPriority(c, priority);
  return c;
}

async function setPriority(c: TestClient, priority: number): Promise<void> {
  await c.send(xml('presence', {}, xml('priority', {}, String(priority))));
  // A session's stanzas are processed in order, so once this answer is back the presence is in effect.
  await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
}

let counter = 0;
/** Sends a message with a unique body and returns a predicate matching its delivery. */
async function send(from: TestClient, to: string, type?: string): Promise<(el: Element) => boolean> {
  const body = `m${++counter}`;
  await from.send(xml('message', { to, type }, xml('body', {}, body)));
  return (el) => el.is('message') && el.attrs.type !== 'error' && el.getChildText('body') === body;
}

function bounced(body: (el: Element) => boolean, condition: string) {
  return (el: Element) =>
    el.is('message') &&
    el.attrs.type === 'error' &&
    el.getChild('error')?.getChild(condition, STANZAS) !== undefined &&
    body(xml('message', {}, ...(el.getChildren('body') as Element[])));
}

const anyError = (el: Element) => el.attrs.type === 'error';

before(async () => {
  // Offline storage off: these are RFC 6121's rules for a server without it (test/offline.test.ts has the rest).
  server = await startTestServer({ offline: { maxPerUser: 0 } });
  domain = server.domain;
  for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) await server.addUser(name);
  bob = await online('bob', 'sender', 0);
  alice = {
    high: await online('alice', 'high', 5),
    low: await online('alice', 'low', 1),
    negative: await online('alice', 'negative', -1),
  };
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server.stop();
});

test('chat and normal messages to the bare JID go to the highest-priority resource only', async () => {
  for (const type of ['chat', undefined, 'normal']) {
    const sent = await send(bob, `alice@${domain}`, type);
    const got = await alice.high.waitFor(sent, 5000, `a ${type ?? 'typeless'} message at the highest priority`);
    assert.equal(got.attrs.from, bob.jid);
    assert.equal(got.attrs.to, `alice@${domain}`);
    await alice.low.expectNothing(sent, 150);
    await alice.negative.expectNothing(sent, 0);
  }
});

test('resources that share the highest priority all get it; negative priority never does', async () => {
  await setPriority(alice.low, 5);
  const sent = await send(bob, `alice@${domain}`, 'chat');
  await alice.high.waitFor(sent, 5000, 'at one of the tied resources');
  await alice.low.waitFor(sent, 5000, 'at the other tied resource');
  await alice.negative.expectNothing(sent, 150);
  await setPriority(alice.low, 1);
});

test('headlines to the bare JID go to every resource with a non-negative priority', async () => {
  const sent = await send(bob, `alice@${domain}`, 'headline');
  await alice.high.waitFor(sent, 5000, 'headline at high');
  await alice.low.waitFor(sent, 5000, 'headline at low');
  await alice.negative.expectNothing(sent, 150);
});

test('groupchat to a bare JID bounces with service-unavailable; error messages are dropped', async () => {
  const groupchat = await send(bob, `alice@${domain}`, 'groupchat');
  await bob.waitFor(bounced(groupchat, 'service-unavailable'), 5000, 'the groupchat bounce');
  for (const c of Object.values(alice)) await c.expectNothing(groupchat, 0);

  const error = await send(bob, `alice@${domain}`, 'error');
  await alice.high.expectNothing(error, 150);
  await bob.expectNothing(anyError, 0);
});

test('a full JID reaches that resource whatever its priority; an unknown resource falls back per type', async () => {
  const direct = await send(bob, `alice@${domain}/negative`, 'chat');
  await alice.negative.waitFor(direct, 5000, 'at the negative-priority resource, addressed directly');
  await alice.high.expectNothing(direct, 100);

  const chat = await send(bob, `alice@${domain}/gone`, 'chat');
  const got = await alice.high.waitFor(chat, 5000, 'chat to an unknown resource, at the highest priority');
  assert.equal(got.attrs.to, `alice@${domain}/gone`, 'delivered as sent');
  const normal = await send(bob, `alice@${domain}/gone`);
  await alice.high.waitFor(normal, 5000, 'normal to an unknown resource');

  const headline = await send(bob, `alice@${domain}/gone`, 'headline');
  const groupchat = await send(bob, `alice@${domain}/gone`, 'groupchat');
  await bob.waitFor(bounced(groupchat, 'service-unavailable'), 5000, 'groupchat to an unknown resource bounces');
  await alice.high.expectNothing(headline, 150);
  await alice.low.expectNothing(headline, 0);
  assert.equal(bob.received.filter(anyError).length, 2, 'only the two groupchat bounces so far');
});

test('a connected resource that sent no presence gets full-JID messages but not bare-JID ones', async () => {
  const carol = await online('carol', 'quiet');
  const bare = await send(bob, `carol@${domain}`, 'chat');
  await bob.waitFor(bounced(bare, 'service-unavailable'), 5000, 'no available resource and no offline storage');
  await carol.expectNothing(bare, 100);
  const full = await send(bob, `carol@${domain}/quiet`, 'chat');
  await carol.waitFor(full, 5000, 'addressed to the connected resource');
});

test('only negative priorities: chat bounces, headline is dropped', async () => {
  const dave = await online('dave', 'shy', -5);
  const chat = await send(bob, `dave@${domain}`, 'chat');
  await bob.waitFor(bounced(chat, 'service-unavailable'), 5000, 'chat bounce');
  const headline = await send(bob, `dave@${domain}`, 'headline');
  await dave.expectNothing((el) => chat(el) || headline(el), 150);
  await bob.expectNothing(bounced(headline, 'service-unavailable'), 0);
});

test('with no resource online, message/offline decides; unhandled chat and normal bounce, headline does not', async () => {
  const offered: string[] = [];
  const stop = server.running.server.hooks.on('message/offline', (event: StanzaEvent) => {
    offered.push(event.stanza.getChildText('body') as string);
    return event.stanza.attrs.type === 'chat';
  });
  try {
    const chat = await send(bob, `erin@${domain}`, 'chat');
    const normal = await send(bob, `erin@${domain}`, 'normal');
    await bob.waitFor(bounced(normal, 'service-unavailable'), 5000, 'normal not taken by the handler bounces');
    await bob.expectNothing(bounced(chat, 'service-unavailable'), 100);
    assert.deepEqual(offered, [`m${counter - 1}`, `m${counter}`], 'both were offered to offline storage');
  } finally {
    stop();
  }
  const headline = await send(bob, `erin@${domain}`, 'headline');
  await bob.expectNothing(bounced(headline, 'service-unavailable'), 200);
});

test('accounts that do not exist: messages and iq bounce with service-unavailable, presence is dropped', async () => {
  const ghost = `ghost@${domain}`;
  for (const type of ['chat', 'normal', 'headline']) {
    const sent = await send(bob, ghost, type);
    await bob.waitFor(bounced(sent, 'service-unavailable'), 5000, `${type} to a nonexistent account`);
  }
  const fullGhost = await send(bob, `${ghost}/res`, 'chat');
  await bob.waitFor(bounced(fullGhost, 'service-unavailable'), 5000, 'chat to a nonexistent full JID');
  await assert.rejects(
    bob.iq(xml('iq', { type: 'get', to: ghost }, xml('query', { xmlns: 'jabber:iq:version' }))),
    (err: { condition: string }) => err.condition === 'service-unavailable',
  );
  bob.received.length = 0;
  await bob.send(xml('presence', { to: ghost }));
  await bob.expectNothing(anyError, 200);
});

test('iq to a full JID goes to that session and its answer comes back; an unknown resource gets service-unavailable', async () => {
  alice.low.xmpp.iqCallee.get('urn:example:echo', 'echo', () => xml('echo', { xmlns: 'urn:example:echo' }, 'pong'));
  const result = await bob.iq(
    xml('iq', { type: 'get', to: alice.low.jid }, xml('echo', { xmlns: 'urn:example:echo' })),
  );
  assert.equal(result.attrs.from, alice.low.jid);
  assert.equal(result.getChildText('echo', 'urn:example:echo'), 'pong');
  await assert.rejects(
    bob.iq(xml('iq', { type: 'get', to: `alice@${domain}/gone` }, xml('echo', { xmlns: 'urn:example:echo' }))),
    (err: { condition: string }) => err.condition === 'service-unavailable',
  );
});

test('messages to other domains are refused with remote-server-not-found while there is no federation', async () => {
  const sent = await send(bob, 'juliet@capulet.example', 'chat');
  await bob.waitFor(bounced(sent, 'remote-server-not-found'), 5000, 'the remote bounce');
});
