import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newItem, rosterStore } from '../src/modules/roster/store.js';
import {
  inbound,
  outbound,
  type SubState,
  type Subscription,
  type SubscriptionType,
} from '../src/modules/roster/subscription.js';
import { requestErasure } from '../src/privacy/erasure.js';
import { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Presence subscriptions and presence (RFC 6121 §3, §4 and Appendix A), over real client connections. */

const ROSTER = 'jabber:iq:roster';

// Appendix A's nine states, written as the RFC names them.
const STATES = [
  'None',
  'None+PendingOut',
  'None+PendingIn',
  'None+PendingOut+PendingIn',
  'To',
  'To+PendingIn',
  'From',
  'From+PendingOut',
  'Both',
] as const;
type StateName = (typeof STATES)[number];

function parseState(name: StateName, approved = false): SubState {
  const [base] = name.split('+');
  return {
    subscription: (base as string).toLowerCase() as Subscription,
    pendingOut: name.includes('PendingOut'),
    pendingIn: name.includes('PendingIn'),
    approved,
  };
}

function nameOf(s: SubState): string {
  const base = s.subscription[0]?.toUpperCase() + s.subscription.slice(1);
  return [base, s.pendingOut && 'PendingOut', s.pendingIn && 'PendingIn'].filter(Boolean).join('+');
}

/** [state before, state after, routed/delivered?] for every state, per stanza type, from Appendix A. */
type Table = Record<StateName, [StateName, boolean]>;

const OUTBOUND: Record<SubscriptionType, Table> = {
  // A.2.1: the user's server routes a subscribe in every state.
  subscribe: {
    None: ['None+PendingOut', true],
    'None+PendingOut': ['None+PendingOut', true],
    'None+PendingIn': ['None+PendingOut+PendingIn', true],
    'None+PendingOut+PendingIn': ['None+PendingOut+PendingIn', true],
    To: ['To', true],
    'To+PendingIn': ['To+PendingIn', true],
    From: ['From+PendingOut', true],
    'From+PendingOut': ['From+PendingOut', true],
    Both: ['Both', true],
  },
  // A.2.2: without a pending request, `subscribed` is a pre-approval and is not routed.
  subscribed: {
    None: ['None', false],
    'None+PendingOut': ['None+PendingOut', false],
    'None+PendingIn': ['From', true],
    'None+PendingOut+PendingIn': ['From+PendingOut', true],
    To: ['To', false],
    'To+PendingIn': ['Both', true],
    From: ['From', true],
    'From+PendingOut': ['From+PendingOut', true],
    Both: ['Both', true],
  },
  // A.2.3
  unsubscribe: {
    None: ['None', true],
    'None+PendingOut': ['None', true],
    'None+PendingIn': ['None+PendingIn', true],
    'None+PendingOut+PendingIn': ['None+PendingIn', true],
    To: ['None', true],
    'To+PendingIn': ['None+PendingIn', true],
    From: ['From', true],
    'From+PendingOut': ['From', true],
    Both: ['From', true],
  },
  // A.2.4
  unsubscribed: {
    None: ['None', true],
    'None+PendingOut': ['None+PendingOut', true],
    'None+PendingIn': ['None', true],
    'None+PendingOut+PendingIn': ['None+PendingOut', true],
    To: ['To', true],
    'To+PendingIn': ['To', true],
    From: ['None', true],
    'From+PendingOut': ['None+PendingOut', true],
    Both: ['To', true],
  },
};

const INBOUND: Record<SubscriptionType, Table> = {
  // A.3.1 (From and Both are answered `subscribed` automatically, checked below)
  subscribe: {
    None: ['None+PendingIn', true],
    'None+PendingOut': ['None+PendingOut+PendingIn', true],
    'None+PendingIn': ['None+PendingIn', false],
    'None+PendingOut+PendingIn': ['None+PendingOut+PendingIn', false],
    To: ['To+PendingIn', true],
    'To+PendingIn': ['To+PendingIn', false],
    From: ['From', false],
    'From+PendingOut': ['From+PendingOut', false],
    Both: ['Both', false],
  },
  // A.3.2
  subscribed: {
    None: ['None', false],
    'None+PendingOut': ['To', true],
    'None+PendingIn': ['None+PendingIn', false],
    'None+PendingOut+PendingIn': ['To+PendingIn', true],
    To: ['To', false],
    'To+PendingIn': ['To+PendingIn', false],
    From: ['From', false],
    'From+PendingOut': ['Both', true],
    Both: ['Both', false],
  },
  // A.3.3
  unsubscribe: {
    None: ['None', false],
    'None+PendingOut': ['None+PendingOut', false],
    'None+PendingIn': ['None', true],
    'None+PendingOut+PendingIn': ['None+PendingOut', true],
    To: ['To', false],
    'To+PendingIn': ['To', true],
    From: ['None', true],
    'From+PendingOut': ['None+PendingOut', true],
    Both: ['To', true],
  },
  // A.3.4
  unsubscribed: {
    None: ['None', false],
    'None+PendingOut': ['None', true],
    'None+PendingIn': ['None+PendingIn', false],
    'None+PendingOut+PendingIn': ['None+PendingIn', true],
    To: ['None', true],
    'To+PendingIn': ['None+PendingIn', true],
    From: ['From', false],
    'From+PendingOut': ['From', true],
    Both: ['From', true],
  },
};

describe('the subscription state machine (RFC 6121 Appendix A)', () => {
  for (const [direction, tables, fn] of [
    ['outbound', OUTBOUND, outbound],
    ['inbound', INBOUND, inbound],
  ] as const)
    for (const type of Object.keys(tables) as SubscriptionType[])
      test(`${direction} ${type} in each of the nine states`, () => {
        for (const state of STATES) {
          const [expected, forward] = tables[type][state];
          const outcome = fn(type, parseState(state));
          assert.equal(nameOf(outcome.state), expected, `${direction} ${type} in ${state}`);
          assert.equal(outcome.forward, forward, `${direction} ${type} in ${state}: forwarded`);
          const subscribed = state.startsWith('From') || state === 'Both';
          const autoReply = direction === 'inbound' && type === 'subscribe' && subscribed;
          assert.equal(outcome.autoReply, autoReply, `${direction} ${type} in ${state}: auto-reply`);
        }
      });

  test('pre-approval (§3.4): an approved contact’s request is answered at once and the approval is used up', () => {
    for (const [state, expected] of [
      ['None', 'From'],
      ['None+PendingOut', 'From+PendingOut'],
      ['To', 'Both'],
    ] as const) {
      const outcome = inbound('subscribe', parseState(state, true));
      assert.equal(nameOf(outcome.state), expected);
      assert.equal(outcome.state.approved, false);
      assert.equal(outcome.autoReply, true);
      assert.equal(outcome.forward, false, 'the contact is not asked');
    }
    assert.equal(
      outbound('subscribed', parseState('None')).state.approved,
      true,
      'subscribed without a request pre-approves',
    );
    assert.equal(outbound('unsubscribed', parseState('None', true)).state.approved, false, 'unsubscribed withdraws it');
  });
});

describe('subscriptions and presence between real clients', () => {
  let server: TestServer;
  let domain: string;
  const clients: TestClient[] = [];
  const bare = (user: string) => `${user}@${domain}`;

  before(async () => {
    server = await startTestServer();
    domain = server.domain;
    for (const name of [
      'alice',
      'bob',
      'carol',
      'dave',
      'erin',
      'frank',
      'grace',
      'hank',
      'ivy',
      'jack',
      'kate',
      'leo',
      'mia',
      'nina',
      'oscar',
      'pat',
      'quinn',
      'rose',
      'sam',
    ])
      await server.addUser(name);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await server.stop();
  });

  async function login(user: string, resource = 'r', presence = false): Promise<TestClient> {
    const c = await connect(server, user, { resource, presence: false });
    clients.push(c);
    // As real clients do: the roster first (so roster pushes come), then initial presence.
    await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: ROSTER })));
    if (presence) await c.send(xml('presence'));
    return c;
  }

  /** Sets one side of a subscription directly in storage, for tests that start from a given state. */
  async function setItem(owner: string, contact: string, subscription: Subscription, ask = false): Promise<void> {
    await rosterStore(server.running.server).transition(bare(owner), bare(contact), (current) => ({
      item: { ...(current.item ?? newItem(bare(contact))), subscription, ask },
      request: current.request,
    }));
  }

  async function friends(a: string, b: string): Promise<void> {
    await setItem(a, b, 'both');
    await setItem(b, a, 'both');
  }

  const presenceFrom =
    (from: string, type?: string) =>
    (el: Element): boolean =>
      el.is('presence') && el.attrs.from === from && el.attrs.type === type;

  /** A roster push for `jid` whose item matches. */
  async function push(c: TestClient, jid: string, match: (item: Element) => boolean, what: string): Promise<Element> {
    const el = await c.waitFor(
      (e) => {
        const item = e.is('iq') && e.attrs.type === 'set' ? e.getChild('query', ROSTER)?.getChild('item') : undefined;
        return item?.attrs.jid === jid && match(item);
      },
      5000,
      what,
    );
    return el.getChild('query', ROSTER)?.getChild('item') as Element;
  }

  async function rosterItem(c: TestClient, jid: string): Promise<Element | undefined> {
    const result = await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: ROSTER })));
    return result
      .getChild('query', ROSTER)
      ?.getChildren('item')
      .find((i) => i.attrs.jid === jid);
  }

  test('a full handshake both ways, then each side cancels: every stanza, push and presence along the way', async () => {
    const alice = await login('alice', 'home', true);
    const bob = await login('bob', 'phone', true);
    const [A, B] = [bare('alice'), bare('bob')];

    // alice asks, addressing bob's full JID: both sides see bare JIDs only (§3.1.2, §3.1.3).
    await alice.send(xml('presence', { to: `${B}/phone`, type: 'subscribe' }, xml('status', {}, 'hi, it is alice')));
    await push(alice, B, (i) => i.attrs.subscription === 'none' && i.attrs.ask === 'subscribe', 'alice: none + ask');
    const request = await bob.waitFor(presenceFrom(A, 'subscribe'), 5000, 'the subscribe request');
    assert.equal(request.attrs.to, B);
    assert.equal(request.getChildText('status'), 'hi, it is alice');
    assert.equal(await rosterItem(bob, A), undefined, 'pending in creates no roster item');

    // bob approves: alice now sees bob (To), bob is seen by alice (From).
    await bob.send(xml('presence', { to: A, type: 'subscribed' }));
    await push(bob, A, (i) => i.attrs.subscription === 'from', 'bob: from');
    await alice.waitFor(presenceFrom(B, 'subscribed'), 5000, 'subscribed');
    await push(alice, B, (i) => i.attrs.subscription === 'to' && i.attrs.ask === undefined, 'alice: to');
    await alice.waitFor(presenceFrom(bob.jid), 5000, 'bob’s presence after the approval');

    // And the other way round: Both.
    await bob.send(xml('presence', { to: A, type: 'subscribe' }));
    await push(bob, A, (i) => i.attrs.subscription === 'from' && i.attrs.ask === 'subscribe', 'bob: from + ask');
    await alice.waitFor(presenceFrom(B, 'subscribe'), 5000, 'bob’s request');
    await alice.send(xml('presence', { to: B, type: 'subscribed' }));
    await push(alice, B, (i) => i.attrs.subscription === 'both', 'alice: both');
    await push(bob, A, (i) => i.attrs.subscription === 'both' && i.attrs.ask === undefined, 'bob: both');
    await bob.waitFor(presenceFrom(alice.jid), 5000, 'alice’s presence after the approval');

    // alice stops seeing bob (unsubscribe): bob is told, and bob's presence is withdrawn from alice.
    await alice.send(xml('presence', { to: B, type: 'unsubscribe' }));
    await push(alice, B, (i) => i.attrs.subscription === 'from', 'alice: from');
    await bob.waitFor(presenceFrom(A, 'unsubscribe'), 5000, 'unsubscribe');
    await push(bob, A, (i) => i.attrs.subscription === 'to', 'bob: to');
    await alice.waitFor(presenceFrom(bob.jid, 'unavailable'), 5000, 'bob unavailable to alice');

    // alice stops bob from seeing her (unsubscribed): None on both sides.
    await alice.send(xml('presence', { to: B, type: 'unsubscribed' }));
    await push(alice, B, (i) => i.attrs.subscription === 'none', 'alice: none');
    await bob.waitFor(presenceFrom(A, 'unsubscribed'), 5000, 'unsubscribed');
    await push(bob, A, (i) => i.attrs.subscription === 'none', 'bob: none');
    await bob.waitFor(presenceFrom(alice.jid, 'unavailable'), 5000, 'alice unavailable to bob');
    await Promise.all([alice.stop(), bob.stop()]);
  });

  test('pre-approval: the later request is answered at once and never shown to the contact', async () => {
    const carol = await login('carol', 'r', true);
    const dave = await login('dave', 'r', true);
    const [C, D] = [bare('carol'), bare('dave')];
    await carol.send(xml('presence', { to: D, type: 'subscribed' }));
    await push(carol, D, (i) => i.attrs.approved === 'true' && i.attrs.subscription === 'none', 'carol: approved');
    await dave.expectNothing(presenceFrom(C, 'subscribed'), 300);

    await dave.send(xml('presence', { to: C, type: 'subscribe' }));
    await dave.waitFor(presenceFrom(C, 'subscribed'), 5000, 'the automatic approval');
    await push(dave, C, (i) => i.attrs.subscription === 'to', 'dave: to');
    await push(carol, D, (i) => i.attrs.subscription === 'from' && i.attrs.approved === undefined, 'carol: from');
    await carol.expectNothing(presenceFrom(D, 'subscribe'), 300);
    await Promise.all([carol.stop(), dave.stop()]);
  });

  test('a request to an offline user is stored, redelivered on initial presence, and can be declined', async () => {
    const frank = await login('frank', 'r', true);
    const [E, F] = [bare('erin'), bare('frank')];
    await frank.send(
      xml(
        'presence',
        { to: E, type: 'subscribe' },
        xml('status', {}, 'remember me?'),
        xml('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'Frankie'),
      ),
    );
    await push(frank, E, (i) => i.attrs.ask === 'subscribe', 'frank: ask');
    await new Promise((r) => setTimeout(r, 100));

    const erin = await login('erin', 'r', false);
    await erin.expectNothing(presenceFrom(F, 'subscribe'), 200);
    await erin.send(xml('presence'));
    const request = await erin.waitFor(presenceFrom(F, 'subscribe'), 5000, 'the stored request');
    assert.equal(request.getChildText('status'), 'remember me?');
    assert.equal(request.getChild('nick', 'http://jabber.org/protocol/nick')?.text(), 'Frankie');

    await erin.send(xml('presence', { to: F, type: 'unsubscribed' }));
    await frank.waitFor(presenceFrom(E, 'unsubscribed'), 5000, 'the refusal');
    await push(frank, E, (i) => i.attrs.subscription === 'none' && i.attrs.ask === undefined, 'frank: none, no ask');
    await erin.stop();

    const again = await login('erin', 'r2', true);
    await again.expectNothing(presenceFrom(F, 'subscribe'), 300);
    await Promise.all([frank.stop(), again.stop()]);
  });

  test('initial presence goes to subscribers and own resources, probes answer with contacts’ presence, directed presence is tracked, and disconnect sends unavailable', async () => {
    await friends('grace', 'hank');
    const hank = await login('hank', 'h', true);
    const ivy = await login('ivy', 'i', true);
    const g1 = await login('grace', 'one', false);
    await g1.send(xml('presence', {}, xml('show', {}, 'chat'), xml('priority', {}, '5')));
    const toHank = await hank.waitFor(presenceFrom(g1.jid), 5000, 'grace’s initial presence at hank');
    assert.equal(toHank.attrs.to, bare('hank'));
    assert.equal(toHank.getChildText('show'), 'chat');
    const probeAnswer = await g1.waitFor(presenceFrom(hank.jid), 5000, 'hank’s presence, answering the probe');
    assert.equal(probeAnswer.attrs.to, g1.jid, 'answers go to the resource that came online');
    await g1.waitFor(presenceFrom(g1.jid), 5000, 'its own presence, reflected');
    await ivy.expectNothing(presenceFrom(g1.jid), 200);

    const g2 = await login('grace', 'two', true);
    await g1.waitFor(presenceFrom(g2.jid), 5000, 'the second resource’s presence at the first');
    await g2.waitFor(presenceFrom(g1.jid), 5000, 'the first resource’s presence at the second');
    await g2.waitFor(presenceFrom(hank.jid), 5000, 'hank’s presence at the second resource');

    // A subsequent presence is broadcast too.
    await g1.send(xml('presence', {}, xml('show', {}, 'away')));
    await hank.waitFor((el) => presenceFrom(g1.jid)(el) && el.getChildText('show') === 'away', 5000, 'away at hank');
    await g2.waitFor((el) => presenceFrom(g1.jid)(el) && el.getChildText('show') === 'away', 5000, 'away at g2');

    // Directed presence to someone who is not subscribed, at a full JID.
    await g1.send(xml('presence', { to: ivy.jid }, xml('status', {}, 'just for you')));
    const directed = await ivy.waitFor(
      (el) => presenceFrom(g1.jid)(el) && el.getChildText('status') === 'just for you',
      5000,
      'directed',
    );
    assert.equal(directed.attrs.to, ivy.jid);

    // Disconnecting: everyone who had g1's presence learns it is gone.
    await g1.stop();
    await hank.waitFor(presenceFrom(g1.jid, 'unavailable'), 5000, 'unavailable at hank');
    await ivy.waitFor(presenceFrom(g1.jid, 'unavailable'), 5000, 'unavailable at ivy (directed)');
    await g2.waitFor(presenceFrom(g1.jid, 'unavailable'), 5000, 'unavailable at the other resource');

    // An explicit unavailable is broadcast with its status.
    await g2.send(xml('presence', { type: 'unavailable' }, xml('status', {}, 'bye')));
    const gone = await hank.waitFor(presenceFrom(g2.jid, 'unavailable'), 5000, 'explicit unavailable');
    assert.equal(gone.getChildText('status'), 'bye');
    await ivy.expectNothing(presenceFrom(g2.jid, 'unavailable'), 200);
    await Promise.all([hank.stop(), ivy.stop(), g2.stop()]);
  });

  test('a probe to an offline contact is answered unavailable; an unsubscribed answer repairs a stale roster', async () => {
    await friends('jack', 'kate');
    const jack = await login('jack', 'r', true);
    const gone = await jack.waitFor(presenceFrom(bare('kate'), 'unavailable'), 5000, 'kate is offline');
    assert.equal(gone.attrs.to, jack.jid);

    // leo believes he is subscribed to mia, but mia's roster says nothing of it.
    await setItem('leo', 'mia', 'to');
    const leo = await login('leo', 'r', true);
    await leo.waitFor(presenceFrom(bare('mia'), 'unsubscribed'), 5000, 'mia’s server refuses the probe');
    await push(leo, bare('mia'), (i) => i.attrs.subscription === 'none', 'leo: none');
    await Promise.all([jack.stop(), leo.stop()]);
  });

  test('invalid presence is refused with bad-request; presence to unknown accounts is dropped silently', async () => {
    const nina = await login('nina', 'r', false);
    const isError = (el: Element) => el.is('presence') && el.attrs.type === 'error';
    await nina.send(xml('presence', {}, xml('priority', {}, '200')));
    let err = await nina.waitFor(isError, 5000, 'priority out of range');
    assert.ok(err.getChild('error')?.getChild('bad-request', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    nina.received.length = 0;
    await nina.send(xml('presence', {}, xml('priority', {}, 'high')));
    err = await nina.waitFor(isError, 5000, 'priority not a number');
    assert.ok(err.getChild('error')?.getChild('bad-request', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    nina.received.length = 0;
    await nina.send(xml('presence', { to: bare('oscar'), type: 'invisible' }));
    err = await nina.waitFor(isError, 5000, 'unknown type');
    assert.ok(err.getChild('error')?.getChild('bad-request', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    nina.received.length = 0;

    await nina.send(xml('presence', {}, xml('priority', {}, '-128')));
    await nina.send(xml('presence', { to: `ghost@${domain}` }));
    await nina.expectNothing(isError, 300);
    await nina.stop();
  });

  test('a request to an account that does not exist is answered unsubscribed; one to a remote contact stays pending', async () => {
    const oscar = await login('oscar', 'r', true);
    const ghost = `ghost@${domain}`;
    await oscar.send(xml('presence', { to: ghost, type: 'subscribe' }));
    await oscar.waitFor(presenceFrom(ghost, 'unsubscribed'), 5000, 'unsubscribed from the nonexistent account');
    await push(oscar, ghost, (i) => i.attrs.subscription === 'none' && i.attrs.ask === undefined, 'oscar: none');

    const remote = 'juliet@capulet.example';
    await oscar.send(xml('presence', { to: remote, type: 'subscribe' }));
    await push(oscar, remote, (i) => i.attrs.ask === 'subscribe', 'oscar: pending out to a remote contact');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await rosterItem(oscar, remote))?.attrs.ask, 'subscribe', 'still pending');
    await oscar.stop();
  });

  test('removing a contact ends both subscriptions (§2.5.2)', async () => {
    await friends('pat', 'quinn');
    const pat = await login('pat', 'r', true);
    const quinn = await login('quinn', 'r', true);
    await quinn.waitFor(presenceFrom(pat.jid), 5000, 'pat is online');
    await pat.iq(
      xml(
        'iq',
        { type: 'set' },
        xml('query', { xmlns: ROSTER }, xml('item', { jid: bare('quinn'), subscription: 'remove' })),
      ),
    );
    await push(pat, bare('quinn'), (i) => i.attrs.subscription === 'remove', 'pat: removed');
    await quinn.waitFor(presenceFrom(bare('pat'), 'unsubscribe'), 5000, 'unsubscribe');
    await quinn.waitFor(presenceFrom(bare('pat'), 'unsubscribed'), 5000, 'unsubscribed');
    await quinn.waitFor(presenceFrom(pat.jid, 'unavailable'), 5000, 'pat’s presence withdrawn');
    await push(quinn, bare('pat'), (i) => i.attrs.subscription === 'none', 'quinn: none');
    await Promise.all([pat.stop(), quinn.stop()]);
  });

  test('removing an account tells its contacts and leaves their items at none', async () => {
    await friends('rose', 'sam');
    const rose = await login('rose', 'r', true);
    const sam = await login('sam', 'r', true);
    await sam.waitFor(presenceFrom(rose.jid), 5000, 'rose is online');
    await requestErasure(server.running.server, Jid.parse(bare('rose')), { by: 'operator', reason: 'test', now: true });
    await sam.waitFor(presenceFrom(rose.jid, 'unavailable'), 5000, 'rose went offline');
    await push(sam, bare('rose'), (i) => i.attrs.subscription === 'none', 'sam: none');
    assert.equal((await rosterItem(sam, bare('rose')))?.attrs.subscription, 'none', 'sam keeps his own item');
    await Promise.all([rose.stop(), sam.stop()]);
  });
});
