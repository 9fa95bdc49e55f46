import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { invitations } from '../src/modules/invite/index.js';
import { createToken, verifyToken } from '../src/modules/invite/token.js';
import { Jid } from '../src/xml/jid.js';
import { runCli, writeConfig } from './support/cli.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { connect } from './support/xmpp.js';

/** Invitations: the preauth-ibr token format, single use and expiry, pre-authenticated IBR, reserved names, the CLI. */

const DAY = 86_400_000;

describe('preauth-ibr tokens', () => {
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
  const expiry = 1_767_225_600_000;

  test('follow the algorithm of the ProtoXEP, written out', () => {
    const jids = 'juliet@example.com:example.org';
    const signature = createHmac('sha256', key).update(`${jids}:${expiry}`).digest('base64url');
    const expected = `${signature}:${Buffer.from(jids).toString('base64url')}:${expiry}`;
    assert.equal(createToken(key, ['juliet@example.com', 'example.org'], expiry), expected);
    // Rounded up to a whole millisecond.
    assert.equal(createToken(key, ['example.org'], expiry - 0.5).split(':')[2], String(expiry));
  });

  test('are URL safe', () => {
    for (let i = 0; i < 50; i++)
      assert.match(createToken(key, [`user${i}@example.com`], expiry + i), /^[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:\d+$/);
  });

  test('verify only when genuine and unexpired', () => {
    const token = createToken(key, ['juliet@example.com'], expiry);
    assert.deepEqual(verifyToken(key, token, expiry - 1), { jids: ['juliet@example.com'], expiresAt: expiry });
    assert.equal(verifyToken(key, token, expiry), undefined, 'expired at its expiry');
    assert.equal(verifyToken(Buffer.alloc(32, 7), token, 0), undefined, 'another key');
    const [sig, jids, exp] = token.split(':') as [string, string, string];
    const otherJids = Buffer.from('romeo@example.com').toString('base64url');
    assert.equal(verifyToken(key, `${sig}:${otherJids}:${exp}`, 0), undefined, 'other JIDs');
    assert.equal(verifyToken(key, `${sig}:${jids}:${expiry + DAY}`, 0), undefined, 'a later expiry');
    const flipped = `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    assert.equal(verifyToken(key, `${flipped}:${jids}:${exp}`, 0), undefined, 'another signature');
    for (const bad of ['', 'a:b', `${token}:x`, `${sig}:${jids}:`, `${sig}:${jids}:12e3`, `${sig}+:${jids}:${exp}`])
      assert.equal(verifyToken(key, bad, 0), undefined, JSON.stringify(bad));
  });
});

const PREAUTH = (token: string, id: string) =>
  `<iq type='set' id='${id}' to='lethe.test'><preauth xmlns='urn:xmpp:pars:0' token='${token}'/></iq>`;
const REGISTER = (username: string, password: string, id: string) =>
  `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'><username>${username}</username><password>${password}</password></query></iq>`;

describe('invitations (open registration off)', () => {
  let server: TestServer;
  const domain = 'lethe.test';
  const service = () => invitations(server.running.server);
  const jid = (name: string) => new Jid(name, domain);
  const preAuth = async () => {
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    return raw;
  };

  before(async () => {
    server = await startTestServer({ register: { enabled: false, attemptsPerAddress: 50 } });
  });
  after(() => server.stop());

  test('an invitation works once, and only until it expires', async () => {
    const { token } = await service().create({ domain, by: 'test' });
    assert.ok(await service().check(token));
    assert.equal(await service().claim(token, jid('first')), true);
    assert.equal(await service().claim(token, jid('second')), false, 'used');
    assert.equal(await service().check(token), undefined);

    const short = await service().create({ domain, validDays: 1, by: 'test' });
    assert.ok(await service().check(short.token, Date.now() + DAY - 60_000));
    assert.equal(await service().check(short.token, Date.now() + DAY + 60_000), undefined, 'expired');
    assert.equal(await service().check(`${short.token}x`), undefined, 'altered');
  });

  test('a failed registration releases it; revoked ones are gone; list shows unused ones', async () => {
    const a = await service().create({ domain, by: 'test' });
    assert.equal(await service().claim(a.token, jid('released')), true);
    await service().release(a.token);
    assert.ok(await service().check(a.token));
    assert.ok((await service().list()).some((i) => i.id === a.id));
    assert.equal(await service().revoke(a.id), true);
    assert.equal(await service().check(a.token), undefined);
    assert.equal(await service().revoke(a.id), false);
    assert.ok(!(await service().list()).some((i) => i.id === a.id));
  });

  test('links: xmpp: URIs (ibr-token) and the web page', async () => {
    const open = await service().create({ domain, by: 'test' });
    assert.match(open.xmppUri, /^xmpp:lethe\.test\?register;preauth=[A-Za-z0-9_-]+%3A[A-Za-z0-9_-]+%3A\d+$/);
    assert.equal(open.webUrl, server.running.server.http.url(`/register?token=${open.token}`));
    const named = await service().create({ domain, username: 'Juliet', by: 'test' });
    assert.equal(named.username, 'juliet');
    assert.match(named.xmppUri, /^xmpp:juliet@lethe\.test\?register;preauth=/);
    // A client that passes the parameter on undecoded still gets in.
    assert.ok(await service().check(named.xmppUri.split('preauth=')[1] as string));
    await assert.rejects(service().create({ domain: 'elsewhere.test', by: 'test' }), /not a domain this server hosts/);
  });

  test('a named invitation reserves its name until it expires; taken names cannot be invited', async () => {
    await server.addUser('taken');
    await assert.rejects(service().create({ domain, username: 'taken', by: 'test' }), /already exists/);
    const romeo = await service().create({ domain, username: 'romeo', validDays: 1, by: 'test' });
    await assert.rejects(server.addUser('romeo'), /reserved/);
    await assert.rejects(service().create({ domain, username: 'romeo', by: 'test' }), /reserved/);
    assert.equal(await service().claim(romeo.token, jid('benvolio')), false, 'only for romeo');
    const saved = service().clock;
    service().clock = () => Date.now() + DAY + 60_000;
    try {
      await server.addUser('romeo');
    } finally {
      service().clock = saved;
    }
  });

  test('the invite stream feature is offered over TLS only', async () => {
    const plain = await RawClient.connect(server.port);
    assert.doesNotMatch(await plain.open(server.domain), /urn:xmpp:invite/);
    plain.destroy();
    const raw = await RawClient.connect(server.port);
    assert.match(await raw.startTls(server.domain), /<register xmlns="urn:xmpp:invite"\/>/);
    raw.destroy();
  });

  test('pre-authenticated IBR: a token lets a client register once; without one it cannot', async () => {
    const { token } = await service().create({ domain, by: 'test' });
    const raw = await preAuth();
    await raw.write(REGISTER('nobody', 'long enough', 'r0'));
    await raw.waitFor(/id="r0"[^>]*>.*?<service-unavailable/);
    await raw.write(PREAUTH(token, 'p1'));
    await raw.waitFor(/<iq type="result" id="p1"/);
    await raw.write(REGISTER('invitee', 'a good password', 'r1'));
    await raw.waitFor(/<iq type="result" id="r1"/);
    raw.destroy();
    const c = await connect(server, 'invitee', { password: 'a good password' });
    await c.stop();
    assert.equal(await server.running.server.accounts.exists(jid('nobody')), false);

    const again = await preAuth();
    await again.write(PREAUTH(token, 'p2'));
    const refused = await again.waitFor(/<iq [^>]*type="error" id="p2".*?<\/iq>/);
    assert.match(refused, /<error type="cancel"><item-not-found .*The provided token is invalid or expired/);
    await again.write(REGISTER('second', 'a good password', 'r2'));
    await again.waitFor(/id="r2"[^>]*>.*?<service-unavailable/);
    again.destroy();
    assert.equal(await server.running.server.accounts.exists(jid('second')), false);
  });

  test('pre-authenticated IBR: the named user only, and nobody else can take that name', async () => {
    const named = await service().create({ domain, username: 'mercutio', by: 'test' });
    const open = await service().create({ domain, by: 'test' });
    const other = await preAuth();
    await other.write(PREAUTH(open.token, 'p1'));
    await other.waitFor(/<iq type="result" id="p1"/);
    await other.write(REGISTER('mercutio', 'a good password', 'r1'));
    await other.waitFor(/id="r1"[^>]*>.*?<conflict .*reserved/);
    other.destroy();
    assert.ok(await service().check(open.token), 'released after the refusal');

    const invitee = await preAuth();
    await invitee.write(PREAUTH(named.token, 'p2'));
    await invitee.waitFor(/<iq type="result" id="p2"/);
    await invitee.write(REGISTER('tybalt', 'a good password', 'r2'));
    await invitee.waitFor(/id="r2"[^>]*>.*?<not-allowed/);
    await invitee.write(REGISTER('mercutio', 'a good password', 'r3'));
    await invitee.waitFor(/<iq type="result" id="r3"/);
    invitee.destroy();
    assert.equal(await server.running.server.accounts.exists(jid('mercutio')), true);
    assert.equal(await server.running.server.accounts.exists(jid('tybalt')), false);
  });

  test('pre-authenticated IBR: expired tokens are refused, and a stream gets few tries', async () => {
    const { token } = await service().create({ domain, validDays: 1, by: 'test' });
    const raw = await preAuth();
    const saved = service().clock;
    service().clock = () => Date.now() + DAY + 60_000;
    try {
      await raw.write(PREAUTH(token, 'e1'));
      await raw.waitFor(/id="e1"[^>]*>.*?<item-not-found/);
    } finally {
      service().clock = saved;
    }
    await raw.write(PREAUTH('bogus', 'e2'));
    await raw.waitFor(/id="e2"[^>]*>.*?<item-not-found/);
    await raw.write(PREAUTH(`${token}0`, 'e3'));
    await raw.waitFor(/id="e3"[^>]*>.*?<item-not-found/);
    await raw.write(PREAUTH(token, 'e4'));
    await raw.waitFor(/id="e4"[^>]*>.*?<resource-constraint/);
    raw.destroy();
    assert.ok(await service().check(token), 'a fresh stream may still use it');
  });

  test('the data category: export, erasure, expiry', async () => {
    const lethe = server.running.server;
    const category = lethe.privacy.get('invitations');
    assert.ok(category);
    const alice = await server.addUser('alice');
    const used = await service().create({ domain, by: 'test' });
    assert.equal(await service().claim(used.token, alice), true);
    assert.equal(await category.count(alice), 1);
    const exported = [];
    for await (const record of category.export(alice)) exported.push(record);
    assert.equal(exported.length, 1);
    assert.equal(exported[0]?.kind, 'registered with');
    assert.equal(await lethe.db.transaction((tx) => category.erase(alice, tx)), 1);
    assert.equal(await category.count(alice), 0);
    assert.equal((await lethe.db.all('SELECT 1 FROM invites WHERE used_by = ?', [alice.bareString()])).length, 0);

    const saved = service().clock;
    service().clock = () => Date.now() - 31 * DAY;
    const oldUsed = await service().create({ domain, by: 'test' });
    try {
      assert.equal(await service().claim(oldUsed.token, jid('oldtimer')), true);
    } finally {
      service().clock = saved;
    }
    const expired = await service().create({ domain, validDays: 1, by: 'test' });
    const recentUsed = await service().create({ domain, by: 'test' });
    assert.equal(await service().claim(recentUsed.token, jid('newcomer')), true);
    const fresh = await service().create({ domain, by: 'test' });
    assert.ok(((await category.expire?.(new Date(Date.now() + 2 * DAY))) ?? 0) >= 2);
    const left = new Set((await lethe.db.all<{ id: number }>('SELECT id FROM invites')).map((r) => r.id));
    assert.ok(!left.has(oldUsed.id), 'a used one goes 30 days after its use');
    assert.ok(!left.has(expired.id), 'an unused one goes once expired');
    assert.ok(left.has(recentUsed.id), 'a recently used one stays');
    assert.ok(left.has(fresh.id), 'a valid one stays');
  });
});

describe('lethe invite', () => {
  const { path, dir } = writeConfig();
  const lethe = (args: string[]) => runCli(['--config', path, ...args]);

  test('create prints working links; list shows it without the token; revoke withdraws it', async () => {
    const created = lethe(['invite', 'create', '--user', 'juliet', '--valid-days', '3']);
    assert.equal(created.status, 0, created.stderr);
    const uri = /xmpp:juliet@cli\.test\?register;preauth=(\S+)/.exec(created.stdout);
    const web = /https:\/\/cli\.test:\d+\/register\?token=(\S+)/.exec(created.stdout);
    assert.ok(uri && web, created.stdout);
    const token = web[1] as string;
    assert.equal(decodeURIComponent(uri[1] as string), token);
    const id = /invitation (\d+) for juliet@cli\.test/.exec(created.stdout)?.[1];
    assert.ok(id, created.stdout);

    const server = await startTestServer({ domain: 'cli.test' }, join(dir, 'data'));
    try {
      const found = await invitations(server.running.server).check(token);
      assert.equal(found?.username, 'juliet');
      const days = ((found?.expiresAt.getTime() ?? 0) - Date.now()) / DAY;
      assert.ok(days > 2.9 && days <= 3, `valid 3 days, not ${days}`);
    } finally {
      await server.stop();
    }

    const listed = lethe(['invite', 'list']);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^${id}\\tcli\\.test\\tjuliet\\t`, 'm'));
    assert.ok(!listed.stdout.includes(token.split(':')[0] as string), 'no token in the list');

    assert.equal(lethe(['invite', 'revoke', id]).status, 0);
    assert.doesNotMatch(lethe(['invite', 'list']).stdout, /juliet/);
    const again = lethe(['invite', 'revoke', id]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /no unused invitation/);
    assert.match(lethe(['invite', 'create', '--valid-days', '0']).stderr, /at least 1/);
  });
});
