import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Jid } from '../src/xml/jid.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { connect, xml } from './support/xmpp.js';

/** XEP-0077 in-band registration, password change and account removal, over real sockets. */

const REGISTER = (body: string, id = 'reg') =>
  `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'>${body}</query></iq>`;

async function preAuth(server: TestServer): Promise<RawClient> {
  const raw = await RawClient.connect(server.port);
  await raw.startTls(server.domain);
  return raw;
}

describe('registration disabled (the default)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('no register feature, and attempts are answered service-unavailable', async () => {
    const raw = await RawClient.connect(server.port);
    const features = await raw.startTls(server.domain);
    assert.doesNotMatch(features, /iq-register/);
    await raw.write(REGISTER('<username>mallory</username><password>password123</password>'));
    await raw.waitFor(/<iq type="error" id="reg">.*<service-unavailable/);
    assert.equal(await server.running.server.accounts.exists(Jid.parse(`mallory@${server.domain}`)), false);
    raw.destroy();
  });
});

describe('registration enabled', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ register: { enabled: true, attemptsPerAddress: 6 } });
  });
  after(() => server.stop());

  test('the feature is offered over TLS only, with a form and the legacy fields', async () => {
    const plain = await RawClient.connect(server.port);
    assert.doesNotMatch(await plain.open(server.domain), /iq-register/);
    plain.destroy();
    const raw = await RawClient.connect(server.port);
    assert.match(await raw.startTls(server.domain), /<register xmlns="http:\/\/jabber.org\/features\/iq-register"\/>/);
    await raw.write(`<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>`);
    const reply = await raw.waitFor(/<iq type="result" id="g1">.*?<\/iq>/);
    assert.match(reply, /<username\/><password\/>/);
    assert.match(reply, /<field var="FORM_TYPE" type="hidden"><value>jabber:iq:register<\/value><\/field>/);
    raw.destroy();
  });

  test('legacy fields and data forms both create an account one can log in to', async () => {
    const raw = await preAuth(server);
    await raw.write(REGISTER('<username>Newbie</username><password>a good password</password>', 'r1'));
    await raw.waitFor(/<iq type="result" id="r1"/);
    await raw.write(
      REGISTER(
        `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>jabber:iq:register</value></field><field var='username'><value>formuser</value></field><field var='password'><value>form password</value></field></x>`,
        'r2',
      ),
    );
    await raw.waitFor(/<iq type="result" id="r2"/);
    raw.destroy();
    const a = await connect(server, 'newbie', { password: 'a good password' });
    const b = await connect(server, 'formuser', { password: 'form password' });
    await Promise.all([a.stop(), b.stop()]);
  });

  test('taken, invalid and weak choices are refused with the XEP-0077 conditions', async () => {
    await server.addUser('taken');
    const raw = await preAuth(server);
    await raw.write(REGISTER('<username>taken</username><password>long enough</password>', 'c1'));
    await raw.waitFor(/id="c1">.*?<conflict/);
    await raw.write(REGISTER('<username>short</username><password>x</password>', 'c2'));
    await raw.waitFor(/id="c2">.*?<not-acceptable/);
    await raw.write(REGISTER('<username>a@b</username><password>long enough</password>', 'c3'));
    await raw.waitFor(/id="c3">.*?<not-acceptable/);
    await raw.write(REGISTER('<username>nopass</username>', 'c4'));
    await raw.waitFor(/id="c4">.*?<not-acceptable/);
    raw.destroy();
  });

  test('too many attempts from one address are refused (counted in memory only)', async () => {
    const raw = await preAuth(server);
    let refused = false;
    for (let i = 0; i < 8 && !refused; i++) {
      await raw.write(REGISTER(`<username>flood${i}</username><password>long enough</password>`, `f${i}`));
      const reply = await raw.waitFor(new RegExp(`id="f${i}"[^>]*>(.*?</iq>)?`));
      refused = /resource-constraint/.test(raw.buffer);
      void reply;
    }
    assert.ok(refused, 'the limiter refused further attempts');
    const tables = await server.running.server.db.describe();
    for (const { table } of tables) {
      const rows = await server.running.server.db.all(`SELECT * FROM "${table}"`);
      assert.doesNotMatch(JSON.stringify(rows), /127\.0\.0\.1/, `no address stored in ${table}`);
    }
    raw.destroy();
  });

  test('a logged-in user can change the password in-band', async () => {
    await server.addUser('changer', 'old password');
    const c = await connect(server, 'changer', { password: 'old password' });
    const info = await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:register' })));
    assert.ok(info.getChild('query')?.getChild('registered'));
    await c.iq(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'jabber:iq:register' },
          xml('username', {}, 'changer'),
          xml('password', {}, 'new password'),
        ),
      ),
    );
    await c.stop();
    await assert.rejects(connect(server, 'changer', { password: 'old password' }), /not-authorized/);
    const again = await connect(server, 'changer', { password: 'new password' });
    await again.stop();
  });

  test('<remove/> with the password requests erasure: the account is locked and its sessions end', async () => {
    const jid = await server.addUser('leaver');
    const other = await connect(server, 'leaver', { resource: 'other' });
    const c = await connect(server, 'leaver', { resource: 'main' });
    const closed = new Promise<void>((resolve) => other.xmpp.on('close', () => resolve()));
    const remove = (...extra: ReturnType<typeof xml>[]) =>
      xml('query', { xmlns: 'jabber:iq:register' }, xml('remove'), ...extra);
    // A bare <remove/> is answered with the cancellation form asking for the password (§3.2).
    await c.send(xml('iq', { type: 'set', id: 'rm1' }, remove()));
    const asked = await c.waitFor((el) => el.is('iq') && el.attrs.id === 'rm1', 5000, 'the cancellation form');
    assert.equal(asked.attrs.type, 'error');
    assert.match(asked.toString(), /jabber:iq:register:cancel/);
    await c.iq(xml('iq', { type: 'set' }, remove(xml('password', {}, PASSWORD))));
    await closed;
    assert.equal(await server.running.server.accounts.exists(jid), false);
    assert.equal((await server.running.server.accounts.get(jid))?.status, 'locked');
    await assert.rejects(connect(server, 'leaver'), /account-disabled/);
  });
});
