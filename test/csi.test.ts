import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { NS_CSI, NS_SM, StreamClient } from './support/stream-client.js';

/** Client state indication (XEP-0352): what an inactive client is spared, and when it gets it. */

let server: TestServer;
let alice: StreamClient;
const senders: Record<string, StreamClient> = {};
const clients: StreamClient[] = [];

async function login(user: string, resource?: string): Promise<StreamClient> {
  const c = await StreamClient.login(server, user, resource);
  clients.push(c);
  return c;
}

/** Directed presence from `user` to alice, with a status to tell updates apart. */
function presence(user: string, status: string): Promise<boolean> {
  return (senders[user] as StreamClient).send(`<presence to='${alice.jid}'><status>${status}</status></presence>`);
}

const statuses = (els: XmlElement[]) =>
  els.filter((el) => el.name === 'presence' && el.attrs.type === undefined).map((el) => el.getChildText('status'));

before(async () => {
  server = await startTestServer({ csi: { maxHeld: 3 } });
  for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) await server.addUser(name);
  for (const name of ['bob', 'carol', 'dave', 'erin']) senders[name] = await login(name, 'desk');
  alice = await login('alice', 'phone');
  await alice.send('<presence/>');
  await alice.next((el) => el.name === 'presence' && el.attrs.from === alice.jid);
});
after(async () => {
  for (const c of clients) c.raw.destroy();
  await server.stop();
});

/** Waits until the server has processed everything alice sent so far (her stanzas are handled in order). */
async function processed(): Promise<void> {
  const id = `sync-${Math.random()}`;
  await alice.send(`<iq type='get' id='${id}'><query xmlns='jabber:iq:roster'/></iq>`);
  await alice.next((el) => el.attrs.id === id);
}

test('client state indication is offered after authentication', () => {
  assert.match(alice.features, /<csi xmlns="urn:xmpp:csi:0"\/>/);
});

test('while inactive, presence is held (latest per sender) and chat states are dropped; <active/> releases in order', async () => {
  await alice.send(`<inactive xmlns='${NS_CSI}'/>`);
  await processed();
  const mark = alice.received.length;
  await presence('bob', 'b1');
  await presence('carol', 'c1');
  await presence('bob', 'b2');
  await senders.bob?.send(
    `<message to='${alice.jid}' type='chat' id='typing'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
  );
  assert.deepEqual(statuses((await alice.settle()).slice(mark)), [], 'nothing while inactive');
  await alice.send(`<active xmlns='${NS_CSI}'/>`);
  await alice.next((el) => el.getChildText('status') === 'b2');
  const after = (await alice.settle()).slice(mark);
  assert.deepEqual(statuses(after), ['c1', 'b2'], 'only the latest from bob, in the order they last changed');
  assert.ok(!after.some((el) => el.attrs.id === 'typing'), 'the chat state was dropped');
});

test('urgent stanzas (a message with a body, an iq, a subscription request) send what was held first', async () => {
  await alice.send(`<inactive xmlns='${NS_CSI}'/>`);
  await processed();
  const urgent = [
    `<message to='${alice.jid}' type='chat' id='u1'><body>hello</body></message>`,
    `<iq type='get' id='u2' to='${alice.jid}'><query xmlns='urn:example:q'/></iq>`,
    `<presence type='subscribe' id='u3' to='alice@${server.domain}'/>`,
  ];
  for (const [i, stanza] of urgent.entries()) {
    const mark = alice.received.length;
    await presence('dave', `d${i}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(statuses(alice.received.slice(mark)), [], 'held');
    await senders.dave?.send(stanza);
    const flushed = await alice.next((el) => el.attrs.id === `u${i + 1}`);
    const got = alice.received.slice(mark);
    assert.deepEqual(statuses(got), [`d${i}`]);
    assert.ok(
      got.findIndex((el) => el.getChildText('status') === `d${i}`) < got.indexOf(flushed),
      'the held presence came first',
    );
  }
  await alice.send(`<active xmlns='${NS_CSI}'/>`);
});

test('more held updates than csi.maxHeld are sent at once', async () => {
  await alice.send(`<inactive xmlns='${NS_CSI}'/>`);
  await processed();
  const mark = alice.received.length;
  for (const user of ['bob', 'carol', 'dave']) await presence(user, `${user}-x`);
  assert.deepEqual(statuses((await alice.settle()).slice(mark)), [], 'three fit');
  await presence('erin', 'erin-x');
  await alice.next((el) => el.getChildText('status') === 'erin-x');
  assert.deepEqual(statuses(alice.received.slice(mark)), ['bob-x', 'carol-x', 'dave-x', 'erin-x']);
  await alice.send(`<active xmlns='${NS_CSI}'/>`);
});

test('a resumed stream starts active: what was held arrives after <resumed/>', async () => {
  const phone = await login('carol', 'phone');
  const enabled = await phone.enable("resume='true'");
  await phone.send(`<presence/><inactive xmlns='${NS_CSI}'/>`);
  await phone.next((el) => el.name === 'presence' && el.attrs.from === phone.jid);
  await (senders.bob as StreamClient).send(`<presence to='${phone.jid}'><status>while-away</status></presence>`);
  assert.ok(!statuses(await phone.settle()).includes('while-away'), 'held');
  await phone.kill();
  const again = await login('carol');
  await again.send(`<resume xmlns='${NS_SM}' previd='${enabled.attrs.id}' h='1'/>`);
  await again.next((el) => el.name === 'resumed');
  await again.next((el) => el.getChildText('status') === 'while-away');
});
