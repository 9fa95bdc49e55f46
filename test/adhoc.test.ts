import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildConfig, ConfigError } from '../src/core/config.js';
import { type AdhocRegistry, adhocCommands } from '../src/modules/adhoc.js';
import { buildForm } from '../src/xml/dataform.js';
import { Jid } from '../src/xml/jid.js';
import { discoInfo, get } from './support/conformance.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Ad-hoc commands (XEP-0050): discovery, sessions, actions, errors, access, and the privacy summary. */

const NS = 'http://jabber.org/protocol/commands';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const SUMMARY = 'urn:lethe:privacy:summary';

interface Failure {
  condition: string;
  type: string | undefined;
  specific: string | undefined;
}

async function failure(p: Promise<unknown>): Promise<Failure> {
  try {
    await p;
  } catch (err) {
    const e = err as { condition: string; application?: Element; element?: Element };
    return { condition: e.condition, type: e.element?.attrs.type, specific: e.application?.name };
  }
  throw new Error('expected an error');
}

function values(pairs: Record<string, string>): Element {
  return xml(
    'x',
    { xmlns: 'jabber:x:data', type: 'submit' },
    ...Object.entries(pairs).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
  );
}

describe('ad-hoc commands', () => {
  let server: TestServer;
  let registry: AdhocRegistry;
  let alice: TestClient;
  let bob: TestClient;
  let root: TestClient;

  const command = (c: TestClient, attrs: Record<string, string>, ...payload: Element[]) =>
    c.iq(xml('iq', { type: 'set', to: server.domain }, xml('command', { xmlns: NS, ...attrs }, ...payload)));
  const cmd = (reply: Element) => reply.getChild('command', NS) as Element;

  before(async () => {
    server = await startTestServer({ admins: ['Root@lethe.test'] });
    for (const name of ['alice', 'bob', 'root', 'carol']) await server.addUser(name);
    registry = adhocCommands(server.running.server);
    // Two stages: a required name, then a colour that the stage checks; completes with what was submitted.
    registry.register({
      node: 'test:survey',
      name: 'Survey',
      access: 'user',
      stages: [
        { form: () => buildForm('form', [{ var: 'name', type: 'text-single', required: true }]) },
        {
          form: (ctx) =>
            buildForm('form', [
              { var: 'colour', type: 'text-single', label: `Colour for ${ctx.submitted[0]?.get('name')}` },
            ]),
          check: (v) => (v.get('colour')?.[0] === 'red' ? undefined : 'only red is accepted'),
        },
      ],
      execute: (ctx) => ({
        notes: [{ type: 'info', text: `${ctx.submitted[0]?.get('name')} likes ${ctx.submitted[1]?.get('colour')}` }],
      }),
    });
    registry.register({
      node: 'test:admin',
      name: 'Admin only',
      access: 'admin',
      execute: () => ({ notes: [{ type: 'info', text: 'done' }] }),
    });
    [alice, bob, root] = await Promise.all([connect(server, 'alice'), connect(server, 'bob'), connect(server, 'root')]);
  });
  after(async () => {
    await Promise.all([alice, bob, root].map((c) => c.stop()));
    await server.stop();
  });

  test('the server advertises commands and lists those the requester may run', async () => {
    const list = async (c: TestClient) => {
      const reply = await get(c, server.domain, xml('query', { xmlns: DISCO_ITEMS, node: NS }));
      const items = reply.getChild('query', DISCO_ITEMS)?.getChildren('item') ?? [];
      for (const item of items) assert.equal(item.attrs.jid, server.domain, 'only its own command nodes');
      return items.map((i) => i.attrs.node);
    };
    // Other modules' commands are listed too; these three show who sees what.
    const ours = async (c: TestClient) =>
      (await list(c)).filter((node) => [SUMMARY, 'test:survey', 'test:admin'].includes(node as string));
    assert.deepEqual(await ours(alice), [SUMMARY, 'test:survey']);
    assert.deepEqual(await ours(root), [SUMMARY, 'test:survey', 'test:admin']);
    const info = await discoInfo(alice, server.domain, SUMMARY);
    assert.deepEqual(info.getChild('identity')?.attrs, {
      category: 'automation',
      type: 'command-node',
      name: 'Show what this server keeps about me',
    });
    const features = info.getChildren('feature').map((f) => f.attrs.var);
    assert.deepEqual(features, [NS, 'jabber:x:data']);
    const forbidden = await failure(discoInfo(alice, server.domain, 'test:admin'));
    assert.equal(forbidden.condition, 'forbidden');
    assert.equal((await discoInfo(root, server.domain, 'test:admin')).getChild('identity')?.attrs.type, 'command-node');
  });

  test('a multi-stage command: next, prev, required fields, checks, complete', async () => {
    let reply = cmd(await command(alice, { node: 'test:survey', action: 'execute' }));
    assert.equal(reply.attrs.status, 'executing');
    const sessionid = reply.attrs.sessionid as string;
    assert.ok(sessionid);
    assert.equal(reply.getChild('actions')?.attrs.execute, 'next');
    assert.deepEqual(
      reply.getChild('actions')?.children.map((c) => (c as Element).name),
      ['next'],
      'no prev on the first stage',
    );
    assert.equal(reply.getChild('x', 'jabber:x:data')?.attrs.type, 'form');

    const at = (extra: Record<string, string>, ...payload: Element[]) =>
      command(alice, { node: 'test:survey', sessionid, ...extra }, ...payload);
    let f = await failure(at({ action: 'next' }));
    assert.deepEqual([f.condition, f.type, f.specific], ['bad-request', 'modify', 'bad-payload'], 'no form');
    f = await failure(at({ action: 'next' }, values({ name: '' })));
    assert.equal(f.specific, 'bad-payload', 'required field empty');
    f = await failure(at({ action: 'complete' }, values({ name: 'Alice' })));
    assert.equal(f.specific, 'bad-action', 'complete before the last stage');

    reply = cmd(await at({ action: 'next' }, values({ name: 'Alice' })));
    assert.equal(reply.attrs.sessionid, sessionid);
    assert.equal(reply.getChild('actions')?.attrs.execute, 'complete');
    assert.deepEqual(
      reply.getChild('actions')?.children.map((c) => (c as Element).name),
      ['prev', 'complete'],
    );
    assert.equal(reply.getChild('x')?.getChild('field')?.attrs.label, 'Colour for Alice');

    reply = cmd(await at({ action: 'prev' }));
    assert.equal(reply.getChild('actions')?.attrs.execute, 'next', 'back on the first stage');
    reply = cmd(await at({}, values({ name: 'Al' })));
    assert.equal(reply.getChild('x')?.getChild('field')?.attrs.label, 'Colour for Al', 'execute means next here');

    f = await failure(at({ action: 'complete' }, values({ colour: 'blue' })));
    assert.deepEqual([f.specific, f.condition], ['bad-payload', 'bad-request'], 'the stage’s check refuses it');
    reply = cmd(await at({ action: 'complete' }, values({ colour: 'red' })));
    assert.equal(reply.attrs.status, 'completed');
    assert.equal(reply.getChild('actions'), undefined);
    assert.equal(reply.getChildText('note'), 'Al likes red');

    f = await failure(at({ action: 'next' }, values({ name: 'again' })));
    assert.deepEqual([f.condition, f.type, f.specific], ['not-allowed', 'cancel', 'session-expired']);
    assert.equal(registry.liveSessions, 0);
  });

  test('cancel ends the session', async () => {
    const { sessionid } = cmd(await command(alice, { node: 'test:survey' })).attrs as { sessionid: string };
    const reply = cmd(await command(alice, { node: 'test:survey', sessionid, action: 'cancel' }));
    assert.equal(reply.attrs.status, 'canceled');
    const f = await failure(command(alice, { node: 'test:survey', sessionid }, values({ name: 'x' })));
    assert.equal(f.specific, 'session-expired');
  });

  test('unknown, foreign and malformed requests get the errors of XEP-0050 §4.4', async () => {
    let f = await failure(command(alice, { node: 'test:survey', sessionid: 'made-up' }, values({ name: 'x' })));
    assert.deepEqual([f.condition, f.type, f.specific], ['bad-request', 'modify', 'bad-sessionid']);
    const { sessionid } = cmd(await command(alice, { node: 'test:survey' })).attrs as { sessionid: string };
    f = await failure(command(bob, { node: 'test:survey', sessionid }, values({ name: 'x' })));
    assert.equal(f.specific, 'bad-sessionid', 'another user cannot continue alice’s session');
    f = await failure(command(alice, { node: SUMMARY, sessionid }));
    assert.equal(f.specific, 'bad-sessionid', 'the session belongs to another command');
    f = await failure(command(alice, { node: 'test:survey', sessionid, action: 'jump' }));
    assert.deepEqual([f.condition, f.specific], ['bad-request', 'malformed-action']);
    f = await failure(command(alice, { node: 'test:survey', sessionid, action: 'prev' }));
    assert.equal(f.specific, 'bad-action', 'no prev from the first stage');
    f = await failure(command(alice, { node: 'test:survey', action: 'next' }));
    assert.equal(f.specific, 'bad-action', 'a session starts with execute');
    f = await failure(command(alice, { node: 'test:nothing' }));
    assert.equal(f.condition, 'item-not-found');
    await command(alice, { node: 'test:survey', sessionid, action: 'cancel' });
  });

  test('an admin command is forbidden to others and runs for a configured admin', async () => {
    const f = await failure(command(alice, { node: 'test:admin' }));
    assert.deepEqual([f.condition, f.type], ['forbidden', 'cancel']);
    const reply = cmd(await command(root, { node: 'test:admin' }));
    assert.equal(reply.attrs.status, 'completed');
    assert.equal(reply.getChildText('note'), 'done');
  });

  test('abandoned sessions time out, and a client that leaves takes its sessions along', async () => {
    const { sessionid } = cmd(await command(bob, { node: 'test:survey' })).attrs as { sessionid: string };
    registry.sweep(Date.now() + server.config.adhoc.sessionTimeout * 1000 + 1);
    const f = await failure(command(bob, { node: 'test:survey', sessionid }, values({ name: 'x' })));
    assert.equal(f.specific, 'session-expired');
    const carol = await connect(server, 'carol');
    await command(carol, { node: 'test:survey' });
    assert.equal(registry.liveSessions, 1);
    await carol.stop();
    for (let i = 0; i < 50 && registry.liveSessions > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(registry.liveSessions, 0);
  });

  test('the privacy summary shows every category with this user’s item counts as stored', async () => {
    for (const contact of ['bob@lethe.test', 'dave@elsewhere.test'])
      await alice.iq(
        xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: contact }))),
      );
    await alice.iq(xml('iq', { type: 'set' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice'))));
    const reply = cmd(await command(alice, { node: SUMMARY }));
    assert.equal(reply.attrs.status, 'completed');
    const form = reply.getChild('x', 'jabber:x:data') as Element;
    assert.equal(form.attrs.type, 'result');
    const rows = form
      .getChildren('item')
      .map((item) => Object.fromEntries(item.getChildren('field').map((f) => [f.attrs.var, f.getChildText('value')])));
    const counts = Object.fromEntries(rows.map((r) => [r.category, Number(r.items)]));
    const stored = await server.running.server.privacy.countAll(Jid.parse('alice@lethe.test'));
    assert.deepEqual(counts, Object.fromEntries(stored.map((s) => [s.category.id, s.count])));
    assert.equal(counts.roster, 2);
    assert.equal(counts.vcard, 1);
    assert.equal(counts.account, 1);
    const roster = rows.find((r) => r.category === 'roster');
    assert.match(roster?.['legal-basis'] ?? '', /6\(1\)\(b\)/);
    assert.ok(roster?.retention && roster.description && roster.purpose);
    // Bob's summary is his own: no roster, no vCard.
    const bobs = cmd(await command(bob, { node: SUMMARY })).getChild('x', 'jabber:x:data') as Element;
    const bobRoster = bobs
      .getChildren('item')
      .find((i) => i.getChildren('field')[0]?.getChildText('value') === 'roster');
    assert.equal(
      bobRoster
        ?.getChildren('field')
        .find((f) => f.attrs.var === 'items')
        ?.getChildText('value'),
      '0',
    );
  });
});

test('admins must be bare JIDs', () => {
  assert.throws(
    () => buildConfig({ admins: ['example.org'] }, '/tmp'),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => /^admins\.0: .*name@domain/.test(p)),
  );
  assert.deepEqual(buildConfig({ admins: ['a@example.org'] }, '/tmp').admins, ['a@example.org']);
});
