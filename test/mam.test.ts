import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CONFIGURE_NODE, DELETE_NODE, type MessageArchive, messageArchive } from '../src/modules/mam/index.js';
import { consent } from '../src/privacy/consent/service.js';
import { requestErasure } from '../src/privacy/erasure.js';
import type { SqliteDb } from '../src/storage/sqlite.js';
import { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** The message archive (XEP-0313, XEP-0441, urn:xmpp:mamtrim:0): opt-in, queries, paging, retention, erasure. */

const MAM = 'urn:xmpp:mam:2';
const RSM = 'http://jabber.org/protocol/rsm';
const SID = 'urn:xmpp:sid:0';
const COMMANDS = 'http://jabber.org/protocol/commands';
const DAY = 86_400_000;

interface Result {
  ids: string[];
  bodies: string[];
  messages: Element[];
  fin: Element;
  first: string | undefined;
  last: string | undefined;
  count: number;
  complete: boolean;
}

interface QueryOptions {
  fields?: Record<string, string | string[]>;
  max?: number;
  after?: string;
  before?: string;
  flip?: boolean;
}

let queries = 0;

async function query(c: TestClient, options: QueryOptions = {}): Promise<Result> {
  const queryid = `q${++queries}`;
  const children: Element[] = [];
  if (options.fields)
    children.push(
      xml(
        'x',
        { xmlns: 'jabber:x:data', type: 'submit' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, MAM)),
        ...Object.entries(options.fields).map(([name, v]) =>
          xml('field', { var: name }, ...(Array.isArray(v) ? v : [v]).map((value) => xml('value', {}, value))),
        ),
      ),
    );
  const set: Element[] = [];
  if (options.max !== undefined) set.push(xml('max', {}, String(options.max)));
  if (options.after !== undefined) set.push(xml('after', {}, options.after));
  if (options.before !== undefined) set.push(xml('before', {}, options.before));
  if (set.length) children.push(xml('set', { xmlns: RSM }, ...set));
  if (options.flip) children.push(xml('flip-page'));
  const reply = await c.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: MAM, queryid }, ...children)));
  const fin = reply.getChild('fin', MAM) as Element;
  const rsm = fin.getChild('set', RSM) as Element;
  const messages = c.received.filter((el) => el.is('message') && el.getChild('result', MAM)?.attrs.queryid === queryid);
  const inner = (m: Element) => m.getChild('result')?.getChild('forwarded')?.getChild('message');
  return {
    ids: messages.map((m) => m.getChild('result')?.attrs.id as string),
    bodies: messages.map((m) => inner(m)?.getChildText('body') ?? ''),
    messages,
    fin,
    first: rsm.getChildText('first') ?? undefined,
    last: rsm.getChildText('last') ?? undefined,
    count: Number(rsm.getChildText('count')),
    complete: fin.attrs.complete === 'true',
  };
}

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

function prefs(policy: string, always: string[] = [], never: string[] = []): Element {
  const list = (name: string, jids: string[]) => xml(name, {}, ...jids.map((j) => xml('jid', {}, j)));
  return xml(
    'iq',
    { type: 'set' },
    xml('prefs', { xmlns: MAM, default: policy }, list('always', always), list('never', never)),
  );
}

const chat = (to: string, body: string, ...extra: Element[]) =>
  xml('message', { to, type: 'chat', id: `m-${body}` }, xml('body', {}, body), ...extra);

const hasBody = (body: string) => (el: Element) => el.is('message') && el.getChildText('body') === body;

/** Sends and waits until the recipient has the message, so that the server has seen it. */
async function deliver(from: TestClient, to: string, body: string, recipient: TestClient): Promise<void> {
  await from.send(chat(to, body));
  await recipient.waitFor(hasBody(body));
}

/** Runs a one-stage ad-hoc command, submitting the given values. */
async function runCommand(c: TestClient, domain: string, node: string, values: Record<string, string>) {
  const first = await c.iq(xml('iq', { type: 'set', to: domain }, xml('command', { xmlns: COMMANDS, node })));
  const sessionid = first.getChild('command', COMMANDS)?.attrs.sessionid as string;
  const form = xml(
    'x',
    { xmlns: 'jabber:x:data', type: 'submit' },
    ...Object.entries(values).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))),
  );
  const done = await c.iq(
    xml(
      'iq',
      { type: 'set', to: domain },
      xml('command', { xmlns: COMMANDS, node, sessionid, action: 'complete' }, form),
    ),
  );
  return done.getChild('command', COMMANDS) as Element;
}

describe('message archive', () => {
  let server: TestServer;
  let archive: MessageArchive;
  let alice: TestClient;
  let tablet: TestClient;
  let bob: TestClient;
  let aliceJid: Jid;
  let bobJid: Jid;
  let carolJid: Jid;

  const archiveConsent = async (user: Jid) =>
    (await consent(server.running.server).ledger.history(user)).filter((e) => e.purpose === 'archive');
  const count = async (user: Jid) => {
    await archive.settled();
    return (await server.running.server.privacy.get('archive')?.count(user)) ?? -1;
  };

  before(async () => {
    server = await startTestServer({ mam: { maxPerUser: 12 }, erasure: { graceDays: 0 } });
    aliceJid = await server.addUser('alice');
    bobJid = await server.addUser('bob');
    carolJid = await server.addUser('carol');
    for (const name of ['dave', 'eve', 'frank']) await server.addUser(name);
    archive = messageArchive(server.running.server);
    [alice, tablet, bob] = await Promise.all([
      connect(server, 'alice', { resource: 'phone' }),
      connect(server, 'alice', { resource: 'tablet' }),
      connect(server, 'bob'),
    ]);
  });
  after(async () => {
    await Promise.all([alice, tablet, bob].map((c) => c.stop()));
    await server.stop();
  });

  test('nothing is archived before the user opts in', async () => {
    const reply = await alice.iq(xml('iq', { type: 'get' }, xml('prefs', { xmlns: MAM })));
    const p = reply.getChild('prefs', MAM) as Element;
    assert.equal(p.attrs.default, 'never');
    assert.ok(p.getChild('always') && p.getChild('never'), 'both lists, even empty');
    await alice.send(chat(bobJid.toString(), 'before-1'));
    await bob.waitFor(hasBody('before-1'));
    await bob.send(chat(aliceJid.toString(), 'before-2'));
    await alice.waitFor(hasBody('before-2'));
    const r = await query(alice);
    assert.deepEqual(r.ids, []);
    assert.equal(r.count, 0);
    assert.ok(r.complete);
    assert.equal(await count(aliceJid), 0);
    assert.equal(await count(bobJid), 0);
  });

  test('opting in records consent; both directions are archived under the stanza ids', async () => {
    const reply = await alice.iq(prefs('always', [], [`spam@${server.domain}`]));
    assert.equal(reply.getChild('prefs', MAM)?.attrs.default, 'always');
    const entries = await archiveConsent(aliceJid);
    assert.deepEqual(
      entries.map((e) => [e.action, e.method]),
      [['given', 'xep-0441']],
      'one consent entry in the consent ledger',
    );

    await tablet.iq(xml('iq', { type: 'set' }, xml('enable', { xmlns: 'urn:xmpp:carbons:2' })));
    await alice.send(chat(bobJid.toString(), 'out-1'));
    const sent = await tablet.waitFor((el) => el.getChild('sent', 'urn:xmpp:carbons:2') !== undefined);
    await bob.waitFor(hasBody('out-1'));
    await bob.send(chat(aliceJid.toString(), 'in-1'));
    const received = await alice.waitFor(hasBody('in-1'));
    // Not archived: chat states alone, no-store, no-permanent-store, errors.
    await bob.send(
      xml(
        'message',
        { to: aliceJid.toString(), type: 'chat' },
        xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' }),
      ),
    );
    await bob.send(chat(aliceJid.toString(), 'secret-1', xml('no-store', { xmlns: 'urn:xmpp:hints' })));
    await bob.send(chat(aliceJid.toString(), 'secret-2', xml('no-permanent-store', { xmlns: 'urn:xmpp:hints' })));
    await alice.waitFor(hasBody('secret-2'));

    const r = await query(alice);
    assert.deepEqual(r.bodies, ['out-1', 'in-1']);
    const [out, inn] = r.messages.map((m) => m.getChild('result')?.getChild('forwarded')) as Element[];
    assert.equal(out?.getChild('message')?.attrs.from, alice.jid, 'sent by alice');
    assert.equal(inn?.getChild('message')?.attrs.from, bob.jid, 'received from bob');
    assert.ok(out?.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp);
    assert.equal(r.messages[0]?.attrs.to, alice.jid, 'results go to the querying resource');
    // The archive id of a received message is the stanza-id the account stamped on it.
    const stamped = received.getChildren('stanza-id', SID).find((s) => s.attrs.by === aliceJid.toString());
    assert.equal(r.ids[1], stamped?.attrs.id);
    // The sent carbon names the sender's own archive id, not the recipient's.
    const carbonIds = sent
      .getChild('sent')
      ?.getChild('forwarded')
      ?.getChild('message')
      ?.getChildren('stanza-id', SID)
      .map((s) => [s.attrs.by, s.attrs.id]);
    assert.deepEqual(carbonIds, [[aliceJid.toString(), r.ids[0]]]);
    assert.equal(r.first, r.ids[0]);
    assert.equal(r.last, r.ids[1]);
    assert.equal(r.count, 2);
    assert.ok(r.complete);
    // bob did not opt in.
    assert.equal(await count(bobJid), 0);
  });

  test('a message to a user who is offline is archived at arrival', async () => {
    const carol = await connect(server, 'carol');
    await carol.iq(prefs('always'));
    await carol.stop();
    await bob.send(chat(carolJid.toString(), 'while-away'));
    for (let i = 0; i < 50 && (await count(carolJid)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await count(carolJid), 1);
  });

  test('the query form, the metadata, and refusals', async () => {
    const form = await alice.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: MAM })));
    const fields = form
      .getChild('query', MAM)
      ?.getChild('x', 'jabber:x:data')
      ?.getChildren('field')
      .map((f) => f.attrs.var);
    assert.deepEqual(fields, ['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
    const meta = (await alice.iq(xml('iq', { type: 'get' }, xml('metadata', { xmlns: MAM })))).getChild(
      'metadata',
      MAM,
    );
    const all = await query(alice);
    assert.equal(meta?.getChild('start')?.attrs.id, all.first);
    assert.equal(meta?.getChild('end')?.attrs.id, all.last);
    assert.equal(await condition(query(alice, { fields: { 'x-unknown': 'y' } })), 'feature-not-implemented');
    assert.equal(await condition(query(alice, { fields: { start: 'yesterday' } })), 'bad-request');
    for (const options of <QueryOptions[]>[
      { after: 'nope' },
      { before: 'nope' },
      { fields: { 'after-id': 'nope' } },
      { fields: { 'before-id': 'nope' } },
      { fields: { ids: [all.first as string, 'nope'] } },
    ])
      assert.equal(await condition(query(alice, options)), 'item-not-found', JSON.stringify(options));
    // Someone else's archive is not reachable.
    assert.equal(
      await condition(bob.iq(xml('iq', { type: 'set', to: aliceJid.toString() }, xml('query', { xmlns: MAM })))),
      'service-unavailable',
    );
  });

  describe('queries and paging over ten messages a minute apart', () => {
    let dave: TestClient;
    let eve: TestClient;
    const T0 = Date.parse('2026-01-01T10:00:00Z');
    let ids: string[] = [];
    const bodies = Array.from({ length: 10 }, (_, i) => `d${i}`);
    let clock: () => number;

    before(async () => {
      clock = archive.clock;
      [dave, eve] = await Promise.all([connect(server, 'dave'), connect(server, 'eve', { resource: 'desk' })]);
      await dave.iq(prefs('always'));
      for (const [i, body] of bodies.entries()) {
        archive.clock = () => T0 + i * 60_000;
        // Odd ones from eve, even ones from dave to eve; the last two to eve's other resource.
        if (i % 2) await deliver(eve, `dave@${server.domain}`, body, dave);
        // The message to eve's absent resource reaches her desk (RFC 6121 §8.5.3.2.1).
        else await deliver(dave, i >= 8 ? `eve@${server.domain}/other` : `eve@${server.domain}`, body, eve);
        await archive.settled();
      }
      archive.clock = clock;
      ids = (await query(dave)).ids;
      assert.equal(ids.length, 10);
    });
    after(async () => {
      archive.clock = clock;
      await Promise.all([dave.stop(), eve.stop()]);
    });

    test('everything in order, and with, start, end', async () => {
      assert.deepEqual((await query(dave)).bodies, bodies);
      assert.deepEqual((await query(dave, { fields: { with: `eve@${server.domain}` } })).bodies, bodies);
      assert.deepEqual((await query(dave, { fields: { with: `eve@${server.domain}/desk` } })).bodies, [
        'd1',
        'd3',
        'd5',
        'd7',
        'd9',
      ]);
      assert.deepEqual((await query(dave, { fields: { with: `eve@${server.domain}/other` } })).bodies, ['d8']);
      assert.deepEqual((await query(dave, { fields: { with: `bob@${server.domain}` } })).bodies, []);
      const iso = (i: number) => new Date(T0 + i * 60_000).toISOString();
      assert.deepEqual((await query(dave, { fields: { start: iso(7) } })).bodies, ['d7', 'd8', 'd9']);
      assert.deepEqual((await query(dave, { fields: { end: iso(1) } })).bodies, ['d0', 'd1']);
      const r = await query(dave, { fields: { start: iso(3), end: iso(5) } });
      assert.deepEqual(r.bodies, ['d3', 'd4', 'd5']);
      assert.equal(r.count, 3);
      assert.equal(r.messages[0]?.getChild('result')?.getChild('forwarded')?.getChild('delay')?.attrs.stamp, iso(3));
    });

    test('after-id, before-id and ids', async () => {
      assert.deepEqual((await query(dave, { fields: { 'after-id': ids[6] as string } })).bodies, ['d7', 'd8', 'd9']);
      assert.deepEqual((await query(dave, { fields: { 'before-id': ids[2] as string } })).bodies, ['d0', 'd1']);
      const between = await query(dave, { fields: { 'after-id': ids[2] as string, 'before-id': ids[5] as string } });
      assert.deepEqual(between.bodies, ['d3', 'd4']);
      assert.equal(between.count, 2);
      const some = await query(dave, { fields: { ids: [ids[8] as string, ids[1] as string] } });
      assert.deepEqual(some.bodies, ['d1', 'd8'], 'in archive order');
    });

    test('paging forwards: first, last, count, complete on the last page', async () => {
      const p1 = await query(dave, { max: 4 });
      assert.deepEqual(p1.bodies, ['d0', 'd1', 'd2', 'd3']);
      assert.equal(p1.first, ids[0]);
      assert.equal(p1.last, ids[3]);
      assert.equal(p1.count, 10);
      assert.equal(p1.complete, false);
      const p2 = await query(dave, { max: 4, after: p1.last as string });
      assert.deepEqual(p2.bodies, ['d4', 'd5', 'd6', 'd7']);
      assert.equal(p2.complete, false);
      const p3 = await query(dave, { max: 4, after: p2.last as string });
      assert.deepEqual(p3.bodies, ['d8', 'd9']);
      assert.ok(p3.complete);
      const exact = await query(dave, { max: 2, after: ids[7] as string });
      assert.deepEqual(exact.bodies, ['d8', 'd9']);
      assert.ok(exact.complete, 'a page that ends exactly at the end is complete');
    });

    test('paging backwards from the last page, with a filter', async () => {
      const p1 = await query(dave, { max: 4, before: '' });
      assert.deepEqual(p1.bodies, ['d6', 'd7', 'd8', 'd9'], 'the last page, in chronological order');
      assert.equal(p1.first, ids[6]);
      assert.equal(p1.complete, false);
      const p2 = await query(dave, { max: 4, before: p1.first as string });
      assert.deepEqual(p2.bodies, ['d2', 'd3', 'd4', 'd5']);
      const p3 = await query(dave, { max: 4, before: p2.first as string });
      assert.deepEqual(p3.bodies, ['d0', 'd1']);
      assert.ok(p3.complete, 'the first page is the last one backwards');
      const filtered = await query(dave, { fields: { with: `eve@${server.domain}/desk` }, max: 2, before: '' });
      assert.deepEqual(filtered.bodies, ['d7', 'd9']);
      assert.equal(filtered.count, 5);
    });

    test('flip-page reverses the page, not the result set', async () => {
      const flipped = await query(dave, { max: 4, before: '', flip: true });
      assert.deepEqual(flipped.bodies, ['d9', 'd8', 'd7', 'd6']);
      assert.equal(flipped.first, ids[6], 'first and last stay chronological');
      assert.equal(flipped.last, ids[9]);
      const counted = await query(dave, { max: 0 });
      assert.deepEqual(counted.ids, []);
      assert.equal(counted.count, 10);
    });

    test('retention: the server maximum, a shorter one the user chose, the count cap', async () => {
      const dJid = Jid.parse(`dave@${server.domain}`);
      // Nine days after d0: nothing is older than the maximum (30 days) yet.
      assert.equal(await archive.expire(new Date(T0 + 9 * DAY)), 0);
      // dave keeps a week: everything goes (the messages are nine days old).
      const done = await runCommand(dave, server.domain, CONFIGURE_NODE, { enabled: 'true', retention: '7' });
      assert.match(done.getChildText('note') ?? '', /kept 7 days/);
      assert.equal(archive.prefs.get(dJid.bareString()).retentionDays, 7);
      assert.equal(await count(dJid), 0, 'choosing a shorter retention applies to what is there');
      archive.clock = () => T0;
      for (let i = 0; i < 3; i++) await deliver(eve, `dave@${server.domain}`, `late${i}`, dave);
      await archive.settled();
      archive.clock = clock;
      assert.equal(await archive.expire(new Date(T0 + 6 * DAY)), 0);
      assert.equal(await archive.expire(new Date(T0 + 8 * DAY)), 3);
      // The count cap (12 in this test's configuration) drops the oldest.
      for (let i = 0; i < 15; i++) await eve.send(chat(`dave@${server.domain}`, `cap${i}`));
      await dave.waitFor(hasBody('cap14'));
      await archive.settled();
      assert.equal(await count(dJid), 15);
      await archive.expire(new Date());
      assert.equal(await count(dJid), 12);
      assert.deepEqual((await query(dave, { max: 1 })).bodies, ['cap3'], 'the oldest three went');
      // The server maximum for everyone.
      assert.ok((await archive.expire(new Date(Date.now() + 31 * DAY))) >= 12);
      assert.equal(await count(dJid), 0);
    });
  });

  test('trimming up to an id, then entirely; the ad-hoc command deletes the history', async () => {
    for (const b of ['t1', 't2', 't3']) await bob.send(chat(aliceJid.toString(), b));
    await alice.waitFor(hasBody('t3'));
    const before = await query(alice);
    const t2 = before.ids[before.bodies.indexOf('t2')] as string;
    const trim = (...children: Element[]) =>
      alice.iq(xml('iq', { type: 'set' }, xml('trim', { xmlns: 'urn:xmpp:mamtrim:0' }, ...children)));
    assert.equal(await condition(trim(xml('id', {}, 'unknown'))), 'item-not-found');
    await trim(xml('id', {}, t2));
    assert.deepEqual((await query(alice)).bodies, ['t3']);
    await trim();
    assert.equal(await count(aliceJid), 0);
    await bob.send(chat(aliceJid.toString(), 't4'));
    await alice.waitFor(hasBody('t4'));
    assert.equal(await count(aliceJid), 1);
    const kept = await runCommand(alice, server.domain, DELETE_NODE, { confirm: 'false' });
    assert.match(kept.getChildText('note') ?? '', /Nothing/);
    const done = await runCommand(alice, server.domain, DELETE_NODE, { confirm: 'true' });
    assert.match(done.getChildText('note') ?? '', /1 archived messages were deleted/);
    assert.equal(await count(aliceJid), 0);
  });

  test('the stored message is encrypted: its text is never in the database file', async () => {
    const marker = `plaintext-marker-${Math.random().toString(36).slice(2)}`;
    await bob.send(chat(aliceJid.toString(), marker));
    await alice.waitFor(hasBody(marker));
    assert.deepEqual((await query(alice)).bodies.slice(-1), [marker], 'archived and readable through the protocol');
    const db = server.running.server.db as SqliteDb;
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    const path = server.config.databasePath;
    const raw = Buffer.concat([
      readFileSync(path),
      existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0),
    ]);
    assert.ok(!raw.includes(marker), 'no plaintext body on disk');
  });

  test('opting out withdraws consent and purges the archive', async () => {
    await bob.send(chat(aliceJid.toString(), 'last words'));
    await alice.waitFor(hasBody('last words'));
    assert.ok((await count(aliceJid)) > 0);
    await alice.iq(prefs('never'));
    assert.equal(await count(aliceJid), 0, 'purged');
    assert.equal((await archiveConsent(aliceJid)).at(-1)?.action, 'withdrawn', 'the withdrawal is recorded');
    await bob.send(chat(aliceJid.toString(), 'after opt-out'));
    await alice.waitFor(hasBody('after opt-out'));
    assert.equal(await count(aliceJid), 0);
    // On again through the ad-hoc command: consent given a second time.
    await runCommand(alice, server.domain, CONFIGURE_NODE, { enabled: 'true', retention: '30' });
    assert.deepEqual(
      (await archiveConsent(aliceJid)).map((e) => [e.action, e.method]),
      [
        ['given', 'xep-0441'],
        ['withdrawn', 'xep-0441'],
        ['given', 'ad-hoc'],
      ],
    );
  });

  test('erasure removes the archive, the preferences and the consent record; the peer keeps their copy', async () => {
    await bob.iq(prefs('always'));
    await alice.send(chat(bobJid.toString(), 'to be forgotten'));
    await bob.waitFor(hasBody('to be forgotten'));
    assert.ok((await count(aliceJid)) > 0);
    assert.equal(await count(bobJid), 1);
    const lethe = server.running.server;
    const archiveExport = [];
    for await (const r of lethe.privacy.get('archive')?.export(aliceJid) ?? []) archiveExport.push(r);
    assert.equal(archiveExport.at(-1)?.direction, 'sent');
    assert.match(String(archiveExport.at(-1)?.stanza), /to be forgotten/, 'the export is readable');
    await requestErasure(lethe, aliceJid, { by: aliceJid.toString(), reason: 'leaving' });
    assert.deepEqual(await archiveConsent(aliceJid), [], 'her consent entries are no longer hers (pseudonymised)');
    for (const table of ['mam_messages', 'mam_prefs']) {
      const row = await lethe.db.get<{ n: number }>(`SELECT count(*) AS n FROM ${table} WHERE owner = ?`, [
        aliceJid.toString(),
      ]);
      assert.equal(row?.n, 0, table);
    }
    assert.equal(archive.prefs.has(aliceJid.toString()), false);
    assert.equal(await count(bobJid), 1, 'bob’s own copy stays (the email model)');
  });
});
