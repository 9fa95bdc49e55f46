import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { rosterStore } from '../src/modules/roster/store.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** jabber:iq:roster (RFC 6121 §2) with roster versioning (XEP-0237), over real client connections. */

const ROSTER = 'jabber:iq:roster';
const MAX_ITEMS = 5;

let server: TestServer;
let domain: string;
const clients: TestClient[] = [];

before(async () => {
  server = await startTestServer({ roster: { maxItems: MAX_ITEMS } });
  domain = server.domain;
  for (const name of ['alice', 'bob', 'carol', 'dora', 'erin']) await server.addUser(name);
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server.stop();
});

async function login(user: string, resource: string): Promise<TestClient> {
  const c = await connect(server, user, { resource, presence: false });
  clients.push(c);
  return c;
}

function rosterGet(ver?: string): Element {
  return xml('iq', { type: 'get' }, xml('query', { xmlns: ROSTER, ver }));
}

function rosterSet(item: Record<string, string>, ...groups: string[]): Element {
  return xml(
    'iq',
    { type: 'set' },
    xml('query', { xmlns: ROSTER }, xml('item', item, ...groups.map((g) => xml('group', {}, g)))),
  );
}

/** A roster push for `jid` that has not been looked at yet (pushes are counted, so each is consumed once). */
function pushFor(c: TestClient, jid: string, seen: Set<Element>) {
  return c
    .waitFor(
      (el) =>
        !seen.has(el) &&
        el.is('iq') &&
        el.attrs.type === 'set' &&
        el.getChild('query', ROSTER)?.getChild('item')?.attrs.jid === jid,
      5000,
      `a roster push for ${jid}`,
    )
    .then((el) => {
      seen.add(el);
      return el;
    });
}

function pushItem(push: Element): Element {
  return push.getChild('query', ROSTER)?.getChild('item') as Element;
}

function isPush(el: Element): boolean {
  return el.is('iq') && el.attrs.type === 'set' && el.getChild('query', ROSTER) !== undefined;
}

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

test('the roster version feature and the pre-approval feature are advertised after authentication', async () => {
  const features: Element[] = [];
  const c = await connect(server, 'erin', {
    presence: false,
    setup: (xmpp) => xmpp.on('element', (el: Element) => el.is('features') && features.push(el)),
  });
  clients.push(c);
  const last = features.at(-1) as Element;
  assert.ok(last.getChild('bind', 'urn:ietf:params:xml:ns:xmpp-bind'), 'the post-authentication features');
  assert.ok(last.getChild('ver', 'urn:xmpp:features:rosterver'));
  assert.ok(last.getChild('sub', 'urn:xmpp:features:pre-approval'));
  assert.ok(!features[0]?.getChild('ver', 'urn:xmpp:features:rosterver'), 'not before authentication');
  await c.stop();
});

test('an empty roster, then versioned gets: full roster on a stale or empty ver, empty result when current', async () => {
  const c = await login('alice', 'desk');
  const first = await c.iq(rosterGet(''));
  const query = first.getChild('query', ROSTER) as Element;
  assert.equal(query.getChildren('item').length, 0);
  const ver = query.attrs.ver as string;
  assert.ok(ver !== undefined, 'a ver attribute when the client asked with ver');

  const current = await c.iq(rosterGet(ver));
  assert.equal(current.getChild('query'), undefined, 'an up-to-date cache gets an empty result');

  const plain = await c.iq(rosterGet());
  assert.equal(plain.getChild('query', ROSTER)?.attrs.ver, undefined, 'no ver for a client that does not version');

  await c.iq(rosterSet({ jid: `nurse@${domain}`, name: 'Nurse' }, 'Servants'));
  const stale = await c.iq(rosterGet(ver));
  const items = stale.getChild('query', ROSTER)?.getChildren('item') ?? [];
  assert.deepEqual(
    items.map((i) => [i.attrs.jid, i.attrs.name, i.attrs.subscription, i.getChildText('group')]),
    [[`nurse@${domain}`, 'Nurse', 'none', 'Servants']],
  );
  assert.notEqual(stale.getChild('query', ROSTER)?.attrs.ver, ver, 'the version changed');
  await c.stop();
});

test('a roster set is pushed to every interested resource, including the sender, and not to others', async () => {
  const phone = await login('bob', 'phone');
  const laptop = await login('bob', 'laptop');
  const quiet = await login('bob', 'quiet');
  await phone.iq(rosterGet(''));
  const before = await laptop.iq(rosterGet(''));
  const ver = before.getChild('query', ROSTER)?.attrs.ver;
  const seen = new Set<Element>();

  const contact = `friar@${domain}`;
  const result = await phone.iq(rosterSet({ jid: contact, name: 'Friar Laurence' }, 'Church', 'Verona'));
  assert.equal(result.attrs.type, 'result');
  assert.equal(result.getChild('query'), undefined, 'the result carries no payload');
  for (const c of [phone, laptop]) {
    const push = await pushFor(c, contact, seen);
    const item = pushItem(push);
    assert.equal(push.attrs.to, c.jid, 'each push is addressed to its resource');
    assert.ok(push.attrs.from === undefined || push.attrs.from === `bob@${domain}`, 'from the account or the server');
    assert.equal(item.attrs.name, 'Friar Laurence');
    assert.equal(item.attrs.subscription, 'none');
    assert.equal(item.attrs.ask, undefined);
    assert.deepEqual(
      item.getChildren('group').map((g) => g.text()),
      ['Church', 'Verona'],
    );
    const pushVer = push.getChild('query', ROSTER)?.attrs.ver;
    assert.ok(pushVer && pushVer !== ver, 'pushes carry the new version');
  }
  await quiet.expectNothing(isPush, 300);

  // An update keeps the subscription state and replaces name and groups.
  await laptop.iq(
    rosterSet({ jid: contact, name: 'Laurence', subscription: 'both', ask: 'subscribe', approved: 'true' }),
  );
  const update = pushItem(await pushFor(phone, contact, seen));
  await pushFor(laptop, contact, seen);
  assert.equal(update.attrs.name, 'Laurence');
  assert.equal(update.attrs.subscription, 'none', 'a client cannot set the subscription');
  assert.equal(update.attrs.ask, undefined, 'nor ask');
  assert.equal(update.attrs.approved, undefined, 'nor approved');
  assert.equal(update.getChildren('group').length, 0);

  // Removal is pushed as subscription='remove'.
  await phone.iq(rosterSet({ jid: contact, subscription: 'remove' }));
  for (const c of [phone, laptop]) assert.equal(pushItem(await pushFor(c, contact, seen)).attrs.subscription, 'remove');
  const after = await phone.iq(rosterGet());
  assert.equal(after.getChild('query', ROSTER)?.getChildren('item').length, 0);
  await Promise.all([phone.stop(), laptop.stop(), quiet.stop()]);
});

test('invalid roster sets are refused with the RFC 6121 §2.3.3 conditions', async () => {
  const c = await login('carol', 'desk');
  const twoItems = xml(
    'iq',
    { type: 'set' },
    xml('query', { xmlns: ROSTER }, xml('item', { jid: `a@${domain}` }), xml('item', { jid: `b@${domain}` })),
  );
  assert.equal(await condition(c.iq(twoItems)), 'bad-request', 'two items');
  assert.equal(await condition(c.iq(rosterSet({ jid: `a@${domain}` }, 'G', 'G'))), 'bad-request', 'duplicate groups');
  assert.equal(await condition(c.iq(rosterSet({ jid: `a@${domain}` }, ''))), 'not-acceptable', 'empty group');
  assert.equal(
    await condition(c.iq(rosterSet({ jid: `a@${domain}` }, 'g'.repeat(1025)))),
    'not-acceptable',
    'group too long',
  );
  assert.equal(
    await condition(c.iq(rosterSet({ jid: `a@${domain}`, name: 'n'.repeat(1025) }))),
    'not-acceptable',
    'name too long',
  );
  assert.equal(await condition(c.iq(rosterSet({ jid: 'a@b@c' }))), 'jid-malformed', 'invalid jid');
  assert.equal(await condition(c.iq(rosterSet({ name: 'nobody' }))), 'bad-request', 'no jid');
  assert.equal(await condition(c.iq(rosterSet({ jid: `a@${domain}/res` }))), 'bad-request', 'a full JID');
  assert.equal(await condition(c.iq(rosterSet({ jid: `carol@${domain}` }))), 'not-allowed', 'oneself');
  assert.equal(
    await condition(c.iq(rosterSet({ jid: `ghost@${domain}`, subscription: 'remove' }))),
    'item-not-found',
    'removing an item that is not there',
  );
  const getWithItem = xml('iq', { type: 'get' }, xml('query', { xmlns: ROSTER }, xml('item', { jid: `a@${domain}` })));
  assert.equal(await condition(c.iq(getWithItem)), 'bad-request', 'a get with an item');

  // Only the account itself manages its roster (§2.1.5): another user's bare or full JID is forbidden.
  const toBob = xml('iq', { type: 'get', to: `bob@${domain}` }, xml('query', { xmlns: ROSTER }));
  assert.equal(await condition(c.iq(toBob)), 'forbidden');
  const setBob = xml(
    'iq',
    { type: 'set', to: `bob@${domain}/phone` },
    xml('query', { xmlns: ROSTER }, xml('item', { jid: `x@${domain}` })),
  );
  assert.equal(await condition(c.iq(setBob)), 'forbidden');
  // Addressed to the own bare JID is the same as no address.
  const own = await c.iq(xml('iq', { type: 'get', to: `carol@${domain}` }, xml('query', { xmlns: ROSTER })));
  assert.equal(own.getChild('query', ROSTER)?.getChildren('item').length, 0, 'nothing was added by the refused sets');
  await c.stop();
});

test('items for remote contacts are allowed, and the roster size limit is enforced with not-allowed', async () => {
  const c = await login('dora', 'desk');
  await c.iq(rosterSet({ jid: 'juliet@capulet.example' }));
  await c.iq(rosterSet({ jid: 'conference.capulet.example', name: 'a service' }));
  for (let i = 2; i < MAX_ITEMS; i++) await c.iq(rosterSet({ jid: `friend${i}@${domain}` }));
  assert.equal(await condition(c.iq(rosterSet({ jid: `onetoomany@${domain}` }))), 'not-allowed');
  // Updating an existing item is still possible at the limit.
  await c.iq(rosterSet({ jid: 'juliet@capulet.example', name: 'Juliet' }));
  const roster = await c.iq(rosterGet());
  const items = roster.getChild('query', ROSTER)?.getChildren('item') ?? [];
  assert.equal(items.length, MAX_ITEMS);
  assert.equal(items.find((i) => i.attrs.jid === 'juliet@capulet.example')?.attrs.name, 'Juliet');
  await c.stop();
});

test('the roster cache holds a user only while they have a session', async () => {
  const store = rosterStore(server.running.server);
  const owner = `erin@${domain}`;
  const a = await login('erin', 'one');
  const b = await login('erin', 'two');
  await a.iq(rosterGet());
  assert.ok(store.cached(owner), 'cached while online');
  await a.stop();
  await b.iq(rosterGet());
  assert.ok(store.cached(owner), 'still cached while one session remains');
  await b.stop();
  const deadline = Date.now() + 2000;
  while (store.cached(owner) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(store.cached(owner), undefined, 'dropped after the last session');
});

test('the roster data category counts, exports and erases, and declares the contacts it mentions', async () => {
  const { privacy, db } = server.running.server;
  const category = privacy.get('roster');
  assert.ok(category);
  const dora = (await import('../src/xml/jid.js')).Jid.parse(`dora@${domain}`);
  assert.equal(await category.count(dora), MAX_ITEMS);
  const exported = [];
  for await (const record of category.export(dora)) exported.push(record);
  assert.equal(exported.length, MAX_ITEMS);
  assert.deepEqual(
    exported.find((r) => r.jid === 'juliet@capulet.example'),
    {
      jid: 'juliet@capulet.example',
      name: 'Juliet',
      subscription: 'none',
      ask: null,
      approved: false,
      groups: [],
    },
  );
  assert.deepEqual(category.mentions, [{ table: 'roster_items', column: 'contact', ownerColumn: 'owner' }]);
  const removed = await db.transaction((tx) => category.erase(dora, tx));
  assert.equal(removed, MAX_ITEMS);
  assert.equal(await category.count(dora), 0);
  assert.equal(
    (await db.get<{ n: number }>('SELECT count(*) AS n FROM roster_versions WHERE owner = ?', [dora.toString()]))?.n,
    0,
  );
  assert.ok(privacy.get('subscription-requests'), 'pending requests are a category of their own');
});
