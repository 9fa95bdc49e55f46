import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Message carbons (XEP-0280) with the private/no-copy hints (XEP-0334), over real client connections. */

const CARBONS = 'urn:xmpp:carbons:2';
const FORWARD = 'urn:xmpp:forward:0';
const HINTS = 'urn:xmpp:hints';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
/** Generous: the machine running the tests may be busy; nothing waits this long when all is well. */
const WAIT = 20_000;

let server: TestServer;
let domain: string;
const clients: TestClient[] = [];
let bob: TestClient;
let phone: TestClient;
let laptop: TestClient;
let tablet: TestClient;

async function online(user: string, resource: string, priority: number): Promise<TestClient> {
  const c = await connect(server, user, { resource, presence: false });
  clients.push(c);
  await setPriority(c, priority);
  return c;
}

async function setPriority(c: TestClient, priority: number): Promise<void> {
  await c.send(xml('presence', {}, xml('priority', {}, String(priority))));
  // A session's stanzas are processed in order, so once this answer is back the presence is in effect.
  await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), WAIT);
}

function carbons(c: TestClient, on: boolean): Promise<Element> {
  return c.iq(xml('iq', { type: 'set' }, xml(on ? 'enable' : 'disable', { xmlns: CARBONS })), WAIT);
}

let counter = 0;
function text(): string {
  return `carbon test ${++counter}`;
}

function chat(to: string, body: string, ...extra: Element[]): Element {
  return xml('message', { to, type: 'chat' }, xml('body', {}, body), ...extra);
}

const direct = (body: string) => (el: Element) =>
  el.is('message') && el.attrs.type !== 'error' && el.getChildText('body') === body;

/** The message inside a carbon of `kind` whose forwarded message has `body`. */
function forwarded(el: Element, kind: 'sent' | 'received', body: string): Element | undefined {
  const inner = el.is('message')
    ? el.getChild(kind, CARBONS)?.getChild('forwarded', FORWARD)?.getChild('message')
    : undefined;
  return inner?.getChildText('body') === body ? inner : undefined;
}
const carbon = (kind: 'sent' | 'received', body: string) => (el: Element) => forwarded(el, kind, body) !== undefined;

/**
 * Asserts that `c` got no carbon with `body` (nor, unless `carbonsOnly`, the message itself). Called
 * once the message has been processed (its recipient has it): a marker bob then sends to `c` comes
 * after anything that processing sent to `c`, so once the marker is in, absence is proven.
 */
async function gotNothing(c: TestClient, body: string, carbonsOnly = false): Promise<void> {
  const marker = text();
  await bob.send(chat(c.jid, marker));
  await c.waitFor(direct(marker), WAIT, `the marker at ${c.jid}`);
  const hit = c.received.find(
    (el) => (!carbonsOnly && direct(body)(el)) || forwarded(el, 'sent', body) || forwarded(el, 'received', body),
  );
  assert.equal(hit, undefined, `${c.jid} got ${hit?.toString()}`);
}

before(async () => {
  server = await startTestServer({ offline: { maxPerUser: 0 } });
  domain = server.domain;
  for (const name of ['alice', 'bob']) await server.addUser(name);
  bob = await online('bob', 'desk', 0);
  phone = await online('alice', 'phone', 5);
  laptop = await online('alice', 'laptop', 1);
  tablet = await online('alice', 'tablet', 1);
  await carbons(phone, true);
  await carbons(laptop, true);
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server.stop();
});

test('the server advertises carbons; enabling and disabling answer with a result, also when repeated', async () => {
  const info = await phone.iq(
    xml('iq', { type: 'get', to: domain }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })),
    WAIT,
  );
  const features = info
    .getChild('query')
    ?.getChildren('feature')
    .map((f) => f.attrs.var);
  assert.ok(features?.includes(CARBONS));
  const result = await carbons(phone, true);
  assert.equal(result.attrs.type, 'result');
  assert.equal((await carbons(tablet, false)).attrs.type, 'result', 'disabling what is off');
});

test('received: a message to the bare JID goes to the top resource, copies to the other enabled ones only', async () => {
  const body = text();
  await bob.send(chat(`alice@${domain}`, body));
  await phone.waitFor(direct(body), WAIT, 'the message at the top resource');
  const copy = await laptop.waitFor(carbon('received', body), WAIT, 'the received carbon');
  assert.equal(copy.attrs.from, `alice@${domain}`, 'from the account');
  assert.equal(copy.attrs.to, laptop.jid, 'to the resource');
  assert.equal(copy.attrs.type, 'chat', 'the same type');
  const inner = forwarded(copy, 'received', body) as Element;
  assert.equal(inner.attrs.from, bob.jid);
  assert.equal(inner.attrs.to, `alice@${domain}`);
  assert.equal(inner.attrs.xmlns, 'jabber:client');
  assert.ok(inner.getChild('stanza-id', 'urn:xmpp:sid:0'), 'with the id the account gave it');
  await gotNothing(tablet, body);
  await gotNothing(phone, body, true);
});

test('received: a message to a full JID is copied to the other enabled resources', async () => {
  const body = text();
  await bob.send(chat(laptop.jid, body));
  await laptop.waitFor(direct(body), WAIT, 'at the addressed resource');
  const copy = await phone.waitFor(carbon('received', body), WAIT, 'the carbon at the other resource');
  assert.equal(forwarded(copy, 'received', body)?.attrs.to, laptop.jid);
  await gotNothing(laptop, body, true);
  await gotNothing(tablet, body);
});

test('sent: what one resource sends is copied to the other enabled ones, not back to it', async () => {
  const body = text();
  await tablet.send(chat(bob.jid, body));
  await bob.waitFor(direct(body), WAIT, 'at the recipient');
  for (const c of [phone, laptop]) {
    const copy = await c.waitFor(carbon('sent', body), WAIT, `the sent carbon at ${c.jid}`);
    assert.equal(copy.attrs.from, `alice@${domain}`);
    assert.equal(copy.attrs.to, c.jid);
    const inner = forwarded(copy, 'sent', body) as Element;
    assert.equal(inner.attrs.from, tablet.jid, 'the sending resource, whether or not it has carbons on');
    assert.equal(inner.attrs.to, bob.jid);
  }
  const mine = text();
  await phone.send(chat(`bob@${domain}`, mine));
  await laptop.waitFor(carbon('sent', mine), WAIT, 'the sent carbon at the laptop');
  await gotNothing(phone, mine);
});

test('private and no-copy keep a message out of carbons, both ways; private stays in the message', async () => {
  const privateSent = text();
  await phone.send(chat(bob.jid, privateSent, xml('private', { xmlns: CARBONS }), xml('no-copy', { xmlns: HINTS })));
  const got = await bob.waitFor(direct(privateSent), WAIT, 'the private message');
  assert.ok(got.getChild('private', CARBONS), 'XEP-0280 §9: servers no longer remove it');
  await gotNothing(laptop, privateSent);

  const privateReceived = text();
  await bob.send(chat(phone.jid, privateReceived, xml('private', { xmlns: CARBONS })));
  await phone.waitFor(direct(privateReceived), WAIT, 'at the addressed resource');
  const noCopy = text();
  await bob.send(chat(phone.jid, noCopy, xml('no-copy', { xmlns: HINTS })));
  await phone.waitFor(direct(noCopy), WAIT, 'at the addressed resource');
  await gotNothing(laptop, privateReceived);
  await gotNothing(laptop, noCopy);
});

test('bare-JID delivery to several resources: those that got it get no copy, enabled others do', async () => {
  await setPriority(laptop, 5);
  await carbons(tablet, true);
  try {
    const body = text();
    await bob.send(chat(`alice@${domain}`, body));
    await phone.waitFor(direct(body), WAIT, 'at one tied resource');
    await laptop.waitFor(direct(body), WAIT, 'at the other tied resource');
    await tablet.waitFor(carbon('received', body), WAIT, 'a copy at the lower priority');
    for (const c of [phone, laptop]) await gotNothing(c, body, true);
  } finally {
    await carbons(tablet, false);
    await setPriority(laptop, 1);
  }
});

test('disabled resources get nothing', async () => {
  await carbons(laptop, false);
  try {
    const received = text();
    await bob.send(chat(phone.jid, received));
    await phone.waitFor(direct(received), WAIT, 'at the addressed resource');
    const sent = text();
    await phone.send(chat(bob.jid, sent));
    await bob.waitFor(direct(sent), WAIT, 'at bob');
    await gotNothing(laptop, received);
    await gotNothing(laptop, sent);
  } finally {
    await carbons(laptop, true);
  }
});

test('only messages eligible under §6.1 are copied', async () => {
  const groupchat = text();
  await bob.send(xml('message', { to: phone.jid, type: 'groupchat' }, xml('body', {}, groupchat)));
  const headline = text();
  await bob.send(xml('message', { to: phone.jid, type: 'headline' }, xml('body', {}, headline)));
  const mucPm = text();
  await bob.send(chat(phone.jid, mucPm, xml('x', { xmlns: MUC_USER })));
  await phone.waitFor(direct(mucPm), WAIT, 'the private message from a room occupant');
  const normal = text();
  await bob.send(xml('message', { to: phone.jid }, xml('body', {}, normal)));
  const copy = await laptop.waitFor(carbon('received', normal), WAIT, 'a normal message with a body is copied');
  assert.equal(copy.attrs.type, undefined);
  const receipt = `receipt-${counter}`;
  await bob.send(
    xml('message', { to: phone.jid, id: receipt }, xml('received', { xmlns: 'urn:xmpp:receipts', id: 'x1' })),
  );
  await laptop.waitFor(
    (el) => el.getChild('received', CARBONS)?.getChild('forwarded')?.getChild('message')?.attrs.id === receipt,
    WAIT,
    'a receipt is copied',
  );
  for (const body of [groupchat, headline, mucPm]) await gotNothing(laptop, body);
});

test('errors that bounce a message sent to a bare JID are copied to the other resources', async () => {
  await phone.send(chat(`nobody@${domain}`, 'to no one'));
  const bounce = await phone.waitFor((el) => el.attrs.type === 'error', WAIT, 'the bounce');
  assert.equal(bounce.attrs.from, `nobody@${domain}`);
  await laptop.waitFor(
    (el) => el.getChild('received', CARBONS)?.getChild('forwarded')?.getChild('message')?.attrs.type === 'error',
    WAIT,
    'the carbon of the bounce',
  );
});
