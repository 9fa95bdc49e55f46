import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ClientStream } from '../src/c2s/stream.js';
import type { ClientSession } from '../src/core/session.js';
import type { XmlElement } from '../src/xml/element.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { NS_SM, StreamClient } from './support/stream-client.js';
import { connect } from './support/xmpp.js';

/** Stream management (XEP-0198) over real sockets: acks, resumption, and what happens to unacknowledged stanzas. */

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const message = (to: string, id: string) => `<message to='${to}' id='${id}' type='chat'><body>${id}</body></message>`;
const isMessage = (el: XmlElement) => el.name === 'message' && el.attrs.type !== 'error';
const messageIds = (els: XmlElement[]) => els.filter(isMessage).map((el) => el.attrs.id as string);
const failure = (el: XmlElement) => el.elements()[0]?.name;

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Each id exactly once: nothing lost, nothing duplicated. */
function exactlyOnce(ids: string[], expected: string[]): void {
  assert.deepEqual([...ids].sort(), [...expected].sort());
}

describe('stream management', () => {
  let server: TestServer;
  let domain: string;
  let bob: StreamClient;
  const clients: StreamClient[] = [];

  const session = (user: string, resource: string) =>
    server.running.server.sessions.get(`${user}@${domain}`, resource) as ClientStream | undefined;
  const unacked = (user: string, resource: string) =>
    (session(user, resource)?.state.get('sm') as { unacked: unknown[] } | undefined)?.unacked.length ?? -1;

  async function login(user: string, resource?: string): Promise<StreamClient> {
    const c = await StreamClient.login(server, user, resource);
    clients.push(c);
    return c;
  }

  /** Bound, stream management enabled with resumption, initial presence sent (and its echo received). */
  async function resumable(user: string, resource: string, max = ''): Promise<{ c: StreamClient; id: string }> {
    const c = await login(user, resource);
    const enabled = await c.enable(`resume='true' ${max}`);
    await c.send('<presence/>');
    await c.next((el) => el.name === 'presence' && el.attrs.from === c.jid);
    return { c, id: enabled.attrs.id as string };
  }

  before(async () => {
    server = await startTestServer({ sm: { resumeTimeout: 3, maxResumeTimeout: 5 } });
    domain = server.domain;
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) await server.addUser(name);
    bob = await login('bob', 'sender');
  });
  after(async () => {
    for (const c of clients) c.raw.destroy();
    await server.stop();
  });

  test('acks both ways: the server answers <r/> with its count and asks for acks; a count too high ends the stream', async () => {
    const alice = await login('alice', 'acks');
    assert.match(alice.features, /<sm xmlns="urn:xmpp:sm:3"\/>/, 'offered after authentication, for resumption');
    const enabled = await alice.enable();
    assert.equal(enabled.attrs.id, undefined, 'no resumption unless asked for');
    await alice.send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq><presence/><r xmlns='${NS_SM}'/>`);
    const a = await alice.next((el) => el.name === 'a' && el.xmlns === NS_SM);
    assert.equal(a.attrs.h, '2', 'two stanzas handled; nonzas are not counted');
    // The roster result and the presence echo are unacknowledged until the client acks.
    await alice.next((el) => el.name === 'r' && el.xmlns === NS_SM, 5000, 'an ack request from the server');
    await until(() => alice.stanzas().length === 2, 'both stanzas arrived');
    assert.equal(unacked('alice', 'acks'), 2);
    await alice.ack(1);
    await until(() => unacked('alice', 'acks') === 1, 'the first is acknowledged');
    await alice.ack();
    await until(() => unacked('alice', 'acks') === 0, 'all are acknowledged');
    await alice.send(`<a xmlns='${NS_SM}' h='9'/>`);
    const error = await alice.next((el) => el.name === 'stream:error');
    assert.ok(error.getChild('undefined-condition'));
    assert.equal(error.getChild('handled-count-too-high', NS_SM)?.attrs['send-count'], '2');
    await alice.raw.waitClosed();
  });

  test('<enable/> before binding and a second <enable/> fail with unexpected-request; <r/> without it is an error', async () => {
    const alice = await login('alice');
    await alice.send(`<enable xmlns='${NS_SM}'/>`);
    assert.equal(failure(await alice.next((el) => el.name === 'failed')), 'unexpected-request');
    await alice.bind('twice');
    await alice.enable();
    await alice.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    assert.equal(failure(await alice.next((el) => el.name === 'failed')), 'unexpected-request');
    const plain = await login('alice', 'plain');
    await plain.send(`<r xmlns='${NS_SM}'/>`);
    const error = await plain.next((el) => el.name === 'stream:error');
    assert.ok(error.getChild('unsupported-stanza-type'));
  });

  test("the client's max is honoured up to sm.maxResumeTimeout; without one sm.resumeTimeout applies", async () => {
    const cases: [string, string][] = [
      ['', '3'],
      ["max='1'", '1'],
      ["max='100'", '5'],
    ];
    for (const [attr, granted] of cases) {
      const c = await login('carol', `max${granted}`);
      const enabled = await c.enable(`resume='true' ${attr}`);
      assert.equal(enabled.attrs.resume, 'true');
      assert.equal(enabled.attrs.max, granted, `for <enable ${attr}/>`);
      assert.ok((enabled.attrs.id as string).length >= 20, 'an unguessable id');
    }
  });

  test('killed mid-flow and resumed: nothing lost, nothing twice, same session and presence', async () => {
    const { c: phone, id } = await resumable('alice', 'phone');
    const original = session('alice', 'phone');
    for (const m of ['m1', 'm2', 'm3']) await bob.send(message(`alice@${domain}`, m));
    await until(() => messageIds(phone.stanzas()).length === 3, 'the phone got three messages');
    // The last stanza is lost with the connection: the client never saw it, so it reports one less.
    const handled = phone.stanzas().slice(0, -1);
    await phone.kill();
    await until(() => original?.bound === false, 'the server noticed');
    assert.equal(session('alice', 'phone'), original, 'the session is kept');
    assert.ok(server.running.server.sessions.available(`alice@${domain}`).includes(original as ClientSession));
    // Sent while detached: queued for the session, to the bare and to the full JID.
    await bob.send(message(`alice@${domain}`, 'm4') + message(`alice@${domain}/phone`, 'm5'));
    await until(() => unacked('alice', 'phone') >= 4, 'queued');

    const again = await login('alice');
    await again.send(`<resume xmlns='${NS_SM}' previd='${id}' h='${handled.length}'/>`);
    const resumed = await again.next((el) => el.name === 'resumed');
    assert.equal(resumed.attrs.previd, id);
    assert.equal(resumed.attrs.h, '1', 'the server had handled the initial presence');
    await until(() => messageIds(again.stanzas()).includes('m5'), 'the queue was resent');
    exactlyOnce(messageIds([...handled, ...(await again.settle())]), ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.equal(session('alice', 'phone'), original, 'the same session object');
    assert.equal(original?.bound, true);
    assert.ok(original?.presence, 'presence kept');
    // The resumed stream carries on, counting where it left off.
    await again.send(`<iq type='get' id='after'><query xmlns='jabber:iq:roster'/></iq><r xmlns='${NS_SM}'/>`);
    await again.next((el) => el.name === 'iq' && el.attrs.id === 'after');
    assert.equal((await again.next((el) => el.name === 'a')).attrs.h, '2');
    // The count goes on from what the client had handled before.
    await again.ack(handled.length + again.stanzas().length);
    await until(() => unacked('alice', 'phone') === 0, 'everything acknowledged');
  });

  test('resuming while the old connection is still open closes that one with conflict', async () => {
    const { c: old, id } = await resumable('alice', 'stale');
    const fresh = await login('alice');
    await fresh.send(`<resume xmlns='${NS_SM}' previd='${id}' h='1'/>`);
    await fresh.next((el) => el.name === 'resumed');
    const error = await old.next((el) => el.name === 'stream:error');
    assert.ok(error.getChild('conflict'));
    await old.raw.waitClosed();
    await bob.send(message(`alice@${domain}/stale`, 'after-takeover'));
    await fresh.next((el) => el.attrs.id === 'after-takeover');
  });

  test("resumption is refused with item-not-found for an unknown id and for another user's id", async () => {
    const { c: phone, id } = await resumable('carol', 'phone');
    await phone.kill();
    const wrong = await login('carol');
    await wrong.send(`<resume xmlns='${NS_SM}' previd='${id}x' h='0'/>`);
    assert.equal(failure(await wrong.next((el) => el.name === 'failed')), 'item-not-found');
    await wrong.bind('after-failure');
    assert.match(wrong.jid, /\/after-failure$/, 'the stream stays usable for binding');
    await wrong.send(`<resume xmlns='${NS_SM}' previd='${id}' h='0'/>`);
    assert.equal(failure(await wrong.next((el) => el.name === 'failed')), 'unexpected-request', 'not once bound');

    const thief = await login('bob');
    await thief.send(`<resume xmlns='${NS_SM}' previd='${id}' h='0'/>`);
    assert.equal(failure(await thief.next((el) => el.name === 'failed')), 'item-not-found');
    // The owner still can.
    const owner = await login('carol');
    await owner.send(`<resume xmlns='${NS_SM}' previd='${id}' h='1'/>`);
    await owner.next((el) => el.name === 'resumed');
  });

  test('on timeout, unacknowledged messages go to another resource, iq get an error, and the session ends', async () => {
    const desk = await login('dave', 'desk');
    await desk.send('<presence/>');
    const { c: phone } = await resumable('dave', 'phone', "max='1'");
    // To the phone's full JID: only the phone gets these.
    await bob.send(
      message(`dave@${domain}/phone`, 't1') +
        message(`dave@${domain}/phone`, 't2') +
        `<iq type='get' id='q1' to='dave@${domain}/phone'><query xmlns='urn:example:q'/></iq>`,
    );
    await phone.next((el) => el.name === 'iq' && el.attrs.id === 'q1');
    await phone.kill();
    const gone = await desk.next(
      (el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === phone.jid,
      5000,
      "the phone's unavailable presence",
    );
    assert.ok(gone);
    const t1 = await desk.next((el) => el.attrs.id === 't1');
    await desk.next((el) => el.attrs.id === 't2');
    assert.ok(t1.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp, 'stamped with when it was first sent');
    assert.equal(t1.getChild('stanza-id', 'urn:xmpp:sid:0')?.attrs.by, `dave@${domain}`);
    const error = await bob.next((el) => el.name === 'iq' && el.attrs.id === 'q1');
    assert.equal(error.attrs.type, 'error');
    assert.ok(error.getChild('error')?.getChild('service-unavailable', STANZAS));
    assert.equal(session('dave', 'phone'), undefined);
    exactlyOnce(messageIds(await desk.settle()), ['t1', 't2']);
  });

  test('after a timeout resumption fails; unacknowledged messages wait in offline storage, acknowledged ones do not', async () => {
    const { c: phone, id } = await resumable('erin', 'phone', "max='1'");
    await bob.send(message(`erin@${domain}`, 'o1') + message(`erin@${domain}`, 'o2'));
    await until(() => messageIds(phone.stanzas()).length === 2, 'both arrived');
    // Only o1 is acknowledged (the presence echo, then o1).
    await phone.ack(2);
    await until(() => unacked('erin', 'phone') === 1, 'o1 acknowledged');
    await phone.kill();
    await until(() => session('erin', 'phone') === undefined, 'the session timed out', 4000);

    const next = await login('erin');
    await next.send(`<resume xmlns='${NS_SM}' previd='${id}' h='3'/>`);
    assert.equal(failure(await next.next((el) => el.name === 'failed')), 'item-not-found');
    await next.bind('phone');
    await next.send('<presence/>');
    const o2 = await next.next((el) => el.attrs.id === 'o2');
    assert.ok(o2.getChild('delay', 'urn:xmpp:delay'));
    exactlyOnce(messageIds(await next.settle()), ['o2']);
    assert.equal(
      bob.received.filter((el) => el.attrs.type === 'error' && el.attrs.id?.startsWith('o')).length,
      0,
      'no bounce',
    );
  });

  test('a clean close with unacknowledged messages redelivers them too', async () => {
    const { c: phone } = await resumable('frank', 'phone');
    await bob.send(message(`frank@${domain}/phone`, 'c1'));
    await phone.next((el) => el.attrs.id === 'c1');
    await phone.send('</stream:stream>');
    await phone.raw.waitClosed();
    const next = await login('frank', 'desk');
    await next.send('<presence/>');
    await next.next((el) => el.attrs.id === 'c1');
  });

  test('an xmpp.js client enables stream management with resumption and both sides get acked', async () => {
    const c = await connect(server, 'carol', { resource: 'xmppjs' });
    try {
      const sm = c.xmpp.streamManagement as { enabled: boolean; id: string; outbound_q: unknown[] };
      await until(() => sm.enabled && sm.id !== '', 'enabled');
      await bob.send(message(`carol@${domain}/xmppjs`, 'js1'));
      await c.waitFor((el) => el.attrs.id === 'js1');
      await until(() => unacked('carol', 'xmppjs') === 0, 'the client acknowledged what it got');
      await until(() => sm.outbound_q.length === 0, 'the server acknowledged what the client sent');
    } finally {
      await c.stop();
    }
  });
});

describe('stream management with a small queue cap', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ sm: { maxQueue: 3 } });
    for (const name of ['alice', 'bob']) await server.addUser(name);
  });
  after(() => server.stop());

  test('a client that never acks is cut off with resource-constraint, and its messages reach offline storage', async () => {
    const bob = await StreamClient.login(server, 'bob', 'sender');
    const alice = await StreamClient.login(server, 'alice', 'lazy');
    await alice.enable();
    await alice.send('<presence/>');
    for (let i = 1; i <= 5; i++) await bob.send(message(`alice@${server.domain}`, `q${i}`));
    const error = await alice.next((el) => el.name === 'stream:error');
    assert.ok(error.getChild('resource-constraint'));
    await alice.raw.waitClosed();
    const next = await StreamClient.login(server, 'alice', 'again');
    await next.send('<presence/>');
    await until(() => messageIds(next.stanzas()).length >= 5, 'all five from offline storage');
    exactlyOnce(messageIds(await next.settle()), ['q1', 'q2', 'q3', 'q4', 'q5']);
    bob.raw.destroy();
    next.raw.destroy();
  });
});
