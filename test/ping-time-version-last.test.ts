import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { Jid } from '../src/xml/jid.js';
import { get } from './support/conformance.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { sharePresence } from './support/subscriptions.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** XMPP Ping (XEP-0199), Entity Time (XEP-0202), Software Version (XEP-0092) and Last Activity (XEP-0012). */

const PING = 'urn:xmpp:ping';
const TIME = 'urn:xmpp:time';
const VERSION = 'jabber:iq:version';
const LAST = 'jabber:iq:last';

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

const iq = (to: string | undefined, payload: Element) => xml('iq', { type: 'get', to }, payload);
const lastQuery = () => xml('query', { xmlns: LAST });
const bare = (c: TestClient) => c.jid.split('/')[0] as string;

function lastOf(reply: Element): { seconds: number; status: string } {
  const query = reply.getChild('query', LAST) as Element;
  return { seconds: Number(query.attrs.seconds), status: query.text() };
}

describe('with the default configuration', () => {
  let server: TestServer;
  let alice: TestClient;
  let bob: TestClient;
  let carol: TestClient;
  const others: TestClient[] = [];

  before(async () => {
    server = await startTestServer();
    for (const name of ['alice', 'bob', 'carol', 'frank']) await server.addUser(name);
    [alice, bob, carol] = await Promise.all([
      connect(server, 'alice'),
      connect(server, 'bob'),
      connect(server, 'carol'),
    ]);
    // Alice shares her presence with bob (her roster: bob `from`; his: alice `to`); carol is a stranger to both.
    await sharePresence(alice, bob);
  });
  after(async () => {
    await Promise.all([alice, bob, carol, ...others].map((c) => c.stop()));
    await server.stop();
  });

  test('ping: the server answers pings to itself and to the sender’s own account', async () => {
    await get(alice, server.domain, xml('ping', { xmlns: PING }));
    await get(alice, bare(alice), xml('ping', { xmlns: PING }));
    await get(alice, undefined, xml('ping', { xmlns: PING }));
  });

  test('ping: the server does not answer for someone else’s account', async () => {
    assert.equal(await condition(bob.iq(iq(bare(alice), xml('ping', { xmlns: PING })))), 'service-unavailable');
  });

  test('time: UTC with offset +00:00, so the server’s time zone is not disclosed', async () => {
    const reply = await get(alice, server.domain, xml('time', { xmlns: TIME }));
    const time = reply.getChild('time', TIME) as Element;
    assert.equal(time.getChildText('tzo'), '+00:00');
    const utc = time.getChildText('utc') as string;
    assert.match(utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(Math.abs(Date.parse(utc) - Date.now()) < 5000, utc);
  });

  test('version: not disclosed by default (service-unavailable)', async () => {
    assert.equal(await condition(alice.iq(iq(server.domain, xml('query', { xmlns: VERSION })))), 'service-unavailable');
  });

  test('last: the server answers with its uptime, without text', async () => {
    const { seconds, status } = lastOf(await get(alice, server.domain, lastQuery()));
    const uptime = (Date.now() - server.running.server.startedAt.getTime()) / 1000;
    assert.ok(seconds >= 0 && seconds <= uptime + 1, `${seconds} ≤ ${uptime}`);
    assert.equal(status, '');
  });

  test('last: 0 while the user is online, to the user and to a contact who sees their presence', async () => {
    assert.equal(lastOf(await get(alice, undefined, lastQuery())).seconds, 0);
    assert.equal(lastOf(await get(bob, bare(alice), lastQuery())).seconds, 0);
  });

  test('last: forbidden to anyone the user does not share presence with', async () => {
    assert.equal(await condition(carol.iq(iq(bare(alice), lastQuery()))), 'forbidden', 'a stranger');
    // Bob sees alice's presence, but alice does not see his.
    assert.equal(await condition(alice.iq(iq(bare(bob), lastQuery()))), 'forbidden', 'the other direction');
    assert.equal(await condition(carol.iq(iq(alice.jid, lastQuery()))), 'forbidden', 'also at a full JID');
  });

  test('last: service-unavailable for an account that does not exist', async () => {
    assert.equal(await condition(carol.iq(iq(`nobody@${server.domain}`, lastQuery()))), 'service-unavailable');
  });

  test('last: at a full JID the client answers, for a contact who sees the presence', async () => {
    alice.xmpp.iqCallee.get(LAST, 'query', () => xml('query', { xmlns: LAST, seconds: '123' }));
    assert.equal(lastOf(await get(bob, alice.jid, lastQuery())).seconds, 123);
  });

  test('last: after logout, the seconds since and the status of the last unavailable presence', async () => {
    const { db, privacy } = server.running.server;
    const owner = Jid.parse(bare(alice));
    await alice.send(xml('presence', { type: 'unavailable' }, xml('status', {}, 'Heading Home')));
    await alice.stop();
    const category = privacy.get('last-activity');
    assert.ok(category, 'last activity is a registered data category');
    for (let i = 0; i < 50 && (await category.count(owner)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await category.count(owner), 1, 'one row per account');
    const first = lastOf(await get(bob, bare(alice), lastQuery()));
    assert.ok(first.seconds <= 2, String(first.seconds));
    assert.equal(first.status, 'Heading Home');
    // The answer counts from the stored logout time (XEP-0012 §3's example: 903 seconds).
    await db.run('UPDATE last_activity SET logout_at = ? WHERE owner = ?', [
      new Date(Date.now() - 903_000).toISOString(),
      owner.toString(),
    ]);
    const later = lastOf(await get(bob, bare(alice), lastQuery()));
    assert.ok(later.seconds >= 903 && later.seconds <= 905, String(later.seconds));
    const exported = [];
    for await (const record of category.export(owner)) exported.push(record);
    assert.equal(exported.length, 1);
    assert.equal(exported[0]?.status, 'Heading Home');
  });

  test('last: a connected user who has not sent presence is not given away as online', async () => {
    const hidden = await connect(server, 'alice', { resource: 'hidden', presence: false });
    others.push(hidden);
    assert.ok(lastOf(await get(bob, bare(alice), lastQuery())).seconds > 0);
  });

  test('last: service-unavailable when nothing is known yet (never logged out, not available)', async () => {
    const frank = await connect(server, 'frank', { presence: false });
    others.push(frank);
    assert.equal(await condition(frank.iq(iq(undefined, lastQuery()))), 'service-unavailable');
  });

  test('last: one write per logout, only when the last session goes', async () => {
    const owner = Jid.parse(`carol@${server.domain}`);
    const second = await connect(server, 'carol', { resource: 'second' });
    await second.stop();
    await new Promise((r) => setTimeout(r, 200));
    const category = server.running.server.privacy.get('last-activity');
    assert.equal(await category?.count(owner), 0, 'carol still has a session');
  });
});

describe('with the version disclosed', () => {
  test('name and version, and the OS name only when configured', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const os of [false, true]) {
      const server = await startTestServer({ version: { disclose: true, os } });
      await server.addUser('alice');
      const alice = await connect(server, 'alice');
      try {
        const query = (await get(alice, server.domain, xml('query', { xmlns: VERSION }))).getChild(
          'query',
          VERSION,
        ) as Element;
        assert.equal(query.getChildText('name'), 'Lethe');
        assert.equal(query.getChildText('version'), pkg.version);
        assert.equal(query.getChildText('os'), os ? type() : null);
      } finally {
        await alice.stop();
        await server.stop();
      }
    }
  });
});
