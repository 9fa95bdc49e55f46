import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkConsentNow } from '../src/privacy/consent/index.js';
import { queueNotice } from '../src/privacy/consent/notices.js';
import type { PolicyVersion } from '../src/privacy/consent/policies.js';
import { type ConsentService, consent } from '../src/privacy/consent/service.js';
import { exportUser } from '../src/privacy/export.js';
import { Jid } from '../src/xml/jid.js';
import { fetchHttps } from './support/https.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { readZip } from './support/portability.js';
import { RawClient } from './support/raw.js';
import { connect, type Element, messageRefused, type TestClient, xml } from './support/xmpp.js';

/**
 * Consent end to end (issue #5): versioned terms, acceptance at in-band registration, one notice per
 * version, the gate after the grace period (a fake clock), and acceptance in-band and on the web page
 * lifting it without reconnecting.
 */

const NS_COMMANDS = 'http://jabber.org/protocol/commands';
const NS_TOS = 'urn:xmpp:tos:0';
const DAY = 86_400_000;

function policy(version: string, terms: string, changes: string | null = null): PolicyVersion {
  return {
    version,
    publishedAt: Date.now(),
    changes,
    documents: [
      { id: 'terms', title: 'Terms of Service', markdown: terms, template: terms },
      { id: 'privacy', title: 'Privacy Policy', markdown: '# Privacy\n\nWe keep little.', template: '# Privacy' },
    ],
  };
}

function form(fields: Record<string, string>): string {
  return `<x xmlns='jabber:x:data' type='submit'>${Object.entries(fields)
    .map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`)
    .join('')}</x>`;
}

const isNotice = (server: TestServer) => (el: Element) =>
  el.is('message') && el.attrs.from === `notices@${server.domain}` && !!el.getChild('tos-push', NS_TOS);

function submit(fields: Record<string, string>): Element {
  return xml(
    'x',
    { xmlns: 'jabber:x:data', type: 'submit' },
    ...Object.entries(fields).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
  );
}

async function tosCommand(
  client: TestClient,
  server: TestServer,
  accept: boolean,
  more: Record<string, string> = {},
): Promise<Element> {
  const start = await client.iq(
    xml(
      'iq',
      { type: 'set', to: server.domain },
      xml('command', { xmlns: NS_COMMANDS, node: NS_TOS, action: 'execute' }, xml('tos-support', { xmlns: NS_TOS })),
    ),
  );
  const command = start.getChild('command', NS_COMMANDS) as Element;
  const version = command.getChild('tos', NS_TOS)?.attrs.version as string;
  const reply = await client.iq(
    xml(
      'iq',
      { type: 'set', to: server.domain },
      xml(
        'command',
        { xmlns: NS_COMMANDS, node: NS_TOS, sessionid: command.attrs.sessionid, action: 'complete' },
        submit({
          FORM_TYPE: NS_TOS,
          [`${NS_TOS}#version`]: version,
          [`${NS_TOS}#accept`]: accept ? 'true' : 'false',
          ...more,
        }),
      ),
    ),
  );
  return reply.getChild('command', NS_COMMANDS) as Element;
}

describe('consent: terms, notices and the gate', () => {
  let server: TestServer;
  let service: ConsentService;
  let alice: Jid;
  let bob: Jid;
  let carol: Jid;
  let a: TestClient;
  let b: TestClient;

  before(async () => {
    server = await startTestServer({ register: { enabled: true }, consent: { graceDays: 7 } });
    service = consent(server.running.server);
    await service.publish(policy('v1', '# Terms\n\nBe kind.'));
    bob = await server.addUser('bob');
    await service.accept(bob, 'operator');
    carol = await server.addUser('carol');
    await service.accept(carol, 'operator');
    alice = Jid.parse(`alice@${server.domain}`);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await server.stop();
  });

  test('in-band registration shows the terms and refuses to register without acceptance', async () => {
    const raw = await RawClient.connect(server.port);
    assert.match(await raw.startTls(server.domain), /<tos xmlns="urn:xmpp:tos:0"\/>/);
    await raw.write(`<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>`);
    const get = await raw.waitFor(/<iq type="result" id="g">.*?<\/iq>/);
    assert.match(get, /var="urn:xmpp:tos:0#version" type="hidden"><value>v1</);
    assert.match(get, /var="urn:xmpp:tos:0#accept" type="boolean".*?<required\/>/);
    assert.match(get, /\/policy\/v1\/terms/);
    // The form of version v1, as alice fills it in (accepting or not).
    const registration = (id: string, accept: boolean) =>
      `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'>${form({
        FORM_TYPE: 'jabber:iq:register',
        username: 'alice',
        password: 'a fine password',
        [`${NS_TOS}#version`]: 'v1',
        [`${NS_TOS}#accept`]: String(accept),
      })}</query></iq>`;
    await raw.write(
      `<iq type='set' id='legacy'><query xmlns='jabber:iq:register'><username>alice</username><password>a fine password</password></query></iq>`,
    );
    await raw.waitFor(/id="legacy">.*?<not-acceptable.*?accept its terms/);
    await raw.write(registration('no', false));
    await raw.waitFor(/id="no">.*?<not-acceptable.*?you have to accept the terms/);
    assert.equal(await server.running.server.accounts.exists(alice), false);
    await raw.write(registration('yes', true));
    await raw.waitFor(/<iq type="result" id="yes"/);
    raw.destroy();
    const history = await service.ledger.history(alice);
    assert.deepEqual(
      history.map((e) => [e.purpose, e.action, e.version, e.method]),
      [['terms', 'given', 'v1', 'in-band-registration']],
    );
  });

  test('the terms can be read, and accepted for a registration, with the tos command before authentication', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    await raw.write(
      `<iq type='set' id='t1' to='${server.domain}'><command xmlns='${NS_COMMANDS}' node='${NS_TOS}' action='execute'><tos-support xmlns='${NS_TOS}'/></command></iq>`,
    );
    const reply = await raw.waitFor(/<iq type="result" id="t1".*?<\/iq>/);
    assert.match(reply, /status="executing"/);
    assert.match(reply, /<tos xmlns="urn:xmpp:tos:0" version="v1"><document><title>Terms of Service<\/title>/);
    assert.match(reply, /<required-flag var="urn:xmpp:tos:0#accept"\/>/);
    const session = /sessionid="([^"]+)"/.exec(reply)?.[1];
    // Accepting before authentication counts for a registration on the same stream, legacy fields included.
    await raw.write(
      `<iq type='set' id='t2' to='${server.domain}'><command xmlns='${NS_COMMANDS}' node='${NS_TOS}' sessionid='${session}' action='complete'>${form(
        { FORM_TYPE: NS_TOS, [`${NS_TOS}#version`]: 'v1', [`${NS_TOS}#accept`]: 'true' },
      )}</command></iq>`,
    );
    await raw.waitFor(/<iq type="result" id="t2".*?status="completed".*?register now/);
    await raw.write(
      `<iq type='set' id='r' ><query xmlns='jabber:iq:register'><username>dora</username><password>a fine password</password></query></iq>`,
    );
    await raw.waitFor(/<iq type="result" id="r"/);
    raw.destroy();
    const dora = Jid.parse(`dora@${server.domain}`);
    assert.deepEqual(
      (await service.ledger.history(dora)).map((e) => [e.version, e.method]),
      [['v1', 'in-band-registration']],
    );
  });

  test('a new version: one notice to those online, at once, with a link that works once', async () => {
    a = await connect(server, 'alice', { password: 'a fine password' });
    b = await connect(server, 'bob');
    await a.expectNothing(isNotice(server), 300);
    await service.publish(policy('v2', '# Terms\n\nBe kind.\n\nNo spam.', 'No spam any more.'));
    const notice = await a.waitFor(isNotice(server), 5000, 'the terms notice');
    const body = notice.getChildText('body') ?? '';
    assert.match(body, /version v2/);
    assert.match(body, /What changed: No spam any more\./);
    assert.match(body, /https:\/\/[^ ]+\/consent\?token=/);
    const push = notice.getChild('tos-push', NS_TOS) as Element;
    assert.equal(push.getChild('tos')?.attrs.version, 'v2');
    assert.ok(Date.parse(push.getChildText('deadline') ?? '') > Date.now() + 6 * DAY);
    await b.waitFor(isNotice(server), 5000, 'bob’s notice');
    // Publishing is noticed again by the poller: still no second notice.
    await checkConsentNow(server.running.server);
    await a.expectNothing((el) => isNotice(server)(el) && el !== notice, 500);
    assert.equal(a.received.filter(isNotice(server)).length, 1);
  });

  test('an offline user gets the notice at their next login, once', async () => {
    const c1 = await connect(server, 'carol');
    await c1.waitFor(isNotice(server), 5000, 'carol’s notice at login');
    await c1.stop();
    const c2 = await connect(server, 'carol');
    await c2.expectNothing(isNotice(server), 700);
    await c2.stop();
  });

  test('within the grace period everything works', async () => {
    await a.send(xml('message', { to: bob.toString(), type: 'chat' }, xml('body', {}, 'still fine')));
    await b.waitFor((el) => el.getChildText('body') === 'still fine', 5000, 'the message');
  });

  test('after it, messages and subscription requests to others fail with policy-violation and the link', async () => {
    service.clock = () => Date.now() + 8 * DAY;
    const error = await messageRefused(a, bob, 'blocked');
    assert.ok(error, 'the message is refused');
    const err = error.getChild('error') as Element;
    assert.equal(err.attrs.type, 'cancel');
    assert.ok(err.getChild('policy-violation', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    assert.ok(err.getChild('agreement-required', NS_TOS));
    assert.match(err.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '', /https:\/\/[^ ]+\/consent/);
    await b.expectNothing((el) => el.getChildText('body') === 'blocked', 300);
    await a.send(xml('presence', { to: carol.toString(), type: 'subscribe', id: 'sub' }));
    const refused = await a.waitFor((el) => el.is('presence') && el.attrs.type === 'error', 3000, 'refused subscribe');
    assert.ok(refused.getChild('error')?.getChild('policy-violation', 'urn:ietf:params:xml:ns:xmpp-stanzas'));
    // Bob accepted v2? No: he is held back too, but alice may still read, and talk to the server.
    await a.iq(xml('iq', { type: 'get', to: server.domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    await a.send(xml('message', { to: `notices@${server.domain}`, type: 'chat' }, xml('body', {}, 'help?')));
    const answer = await a.waitFor(
      (el) => el.is('message') && el.attrs.from === `notices@${server.domain}` && !el.getChild('tos-push', NS_TOS),
      3000,
      'the notice sender’s answer',
    );
    assert.match(answer.getChildText('body') ?? '', /version v2.*\/consent/);
  });

  test('accepting with the in-band command lifts the gate at once, without reconnecting', async () => {
    const refused = await tosCommand(a, server, false);
    assert.equal(refused.attrs.status, 'executing', 'not accepted: the form again');
    assert.equal(refused.getChild('note')?.attrs.type, 'error');
    assert.ok(await messageRefused(a, bob, 'still blocked'));
    const done = await tosCommand(a, server, true);
    assert.equal(done.attrs.status, 'completed');
    assert.match(done.getChildText('note') ?? '', /accepted version v2/);
    assert.equal(await messageRefused(a, bob, 'free again'), undefined);
    await b.waitFor((el) => el.getChildText('body') === 'free again', 5000, 'the message after acceptance');
    const last = (await service.ledger.history(alice)).at(-1);
    assert.deepEqual([last?.version, last?.method], ['v2', 'ad-hoc']);
  });

  test('accepting on the web page with the notice’s link lifts the gate too, and the link works once', async () => {
    assert.ok(await messageRefused(b, alice, 'bob blocked'));
    const notice = b.received.find(isNotice(server)) as Element;
    const link = new URL(/https:\/\/\S+/.exec(notice.getChildText('body') ?? '')?.[0] as string);
    const port = server.running.ports.http as number;
    const page = await fetchHttps(port, `${link.pathname}${link.search}`);
    assert.equal(page.status, 200);
    const html = page.body.toString();
    assert.match(html, /Hello bob@lethe\.test/);
    assert.match(html, /<ins>[^<]*No spam/);
    const token = link.searchParams.get('token') as string;
    const post = (body: string) =>
      fetchHttps(port, '/consent', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
    const accepted = await post(new URLSearchParams({ token, version: 'v2', accept: 'yes' }).toString());
    assert.equal(accepted.status, 200);
    assert.match(accepted.body.toString(), /accepted version v2/);
    assert.equal(await messageRefused(b, alice, 'bob free'), undefined);
    const again = await post(new URLSearchParams({ token, version: 'v2', accept: 'yes' }).toString());
    assert.equal(again.status, 403, 'a used link works no more');
    const last = (await service.ledger.history(bob)).at(-1);
    assert.deepEqual([last?.version, last?.method], ['v2', 'web']);
  });

  test('the archive opt-in of the terms command is consent given and withdrawn in the same ledger', async () => {
    const archive = 'urn:lethe:consent#archive';
    const on = await tosCommand(a, server, true, { [archive]: 'true' });
    assert.match(
      on
        .getChildren('note')
        .map((n) => n.text())
        .join(' '),
      /archive is on/,
    );
    const off = await tosCommand(a, server, true, { [archive]: 'false' });
    assert.match(
      off
        .getChildren('note')
        .map((n) => n.text())
        .join(' '),
      /archive is off/,
    );
    const entries = (await service.ledger.history(alice)).filter((e) => e.purpose === 'archive');
    assert.deepEqual(
      entries.map((e) => [e.action, e.method]),
      [
        ['given', 'ad-hoc'],
        ['withdrawn', 'ad-hoc'],
      ],
    );
  });

  test('the consent page takes a password instead of a link, and refuses a wrong one', async () => {
    const port = server.running.ports.http as number;
    const post = (fields: Record<string, string>) =>
      fetchHttps(port, '/consent', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      });
    assert.equal((await post({ jid: carol.toString(), password: 'wrong' })).status, 403);
    const page = await post({ jid: carol.toString(), password: 'correct horse battery staple' });
    assert.equal(page.status, 200);
    const token = /name="token" value="([^"]+)"/.exec(page.body.toString())?.[1] as string;
    assert.ok(token);
    const done = await post({ token, version: 'v2', accept: 'yes' });
    assert.match(done.body.toString(), /accepted version v2/);
    assert.equal(await service.mustAccept(carol), false);
  });

  test('the operator’s notices reach online users at once and offline users at login', async () => {
    const lethe = server.running.server;
    await queueNotice(lethe.db, { to: alice, subject: 'Maintenance', body: 'Down at noon.' });
    await queueNotice(lethe.db, { to: carol, body: 'Welcome back.' });
    await checkConsentNow(lethe);
    const got = await a.waitFor((el) => el.getChildText('body') === 'Down at noon.', 5000, 'the notice');
    assert.equal(got.attrs.from, `notices@${server.domain}`);
    assert.equal(got.getChildText('subject'), 'Maintenance');
    const c = await connect(server, 'carol');
    await c.waitFor((el) => el.getChildText('body') === 'Welcome back.', 5000, 'the stored notice');
    await c.stop();
  });

  test('the notice sender cannot be registered, and the export holds the consent history (json/consent.json)', async () => {
    await assert.rejects(server.addUser('notices'), /notice sender/);
    const lethe = server.running.server;
    const out = join(await mkdtemp(join(tmpdir(), 'lethe-consent-')), 'alice.zip');
    await exportUser(lethe, alice, { out, reason: 'access request', actor: 'tester' });
    const files = await readZip(out);
    const { items: records } = JSON.parse((files.get('json/consent.json') as Buffer).toString()) as {
      items: Record<string, unknown>[];
    };
    await rm(dirname(out), { recursive: true });
    assert.deepEqual(
      records.map((r) => [r.purpose, r.action, r.version]),
      [
        ['terms', 'accepted', 'v1'],
        ['terms', 'accepted', 'v2'],
        ['archive', 'given', undefined],
        ['archive', 'withdrawn', undefined],
      ],
    );
  });
});
