import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { addressHash } from '../src/privacy/address-hash.js';
import {
  deactivateAccount,
  erasureReceipt,
  pendingHolds,
  reactivateAccount,
  requestErasure,
  restoreAccount,
  sweepErasures,
} from '../src/privacy/erasure.js';
import { Jid } from '../src/xml/jid.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { sharePresence } from './support/subscriptions.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** The erasure lifecycle and deactivation, over real sockets (src/privacy/erasure.ts). */

const DAY = 86_400_000;
const NS_REGISTER = 'jabber:iq:register';

const removeWith = (...children: Element[]) =>
  xml('iq', { type: 'set' }, xml('query', { xmlns: NS_REGISTER }, xml('remove'), ...children));

const unavailableFrom = (bare: string) => (el: Element) =>
  el.is('presence') && el.attrs.type === 'unavailable' && String(el.attrs.from).startsWith(`${bare}/`);

let server: TestServer;
const lethe = () => server.running.server;

before(async () => {
  server = await startTestServer({ register: { enabled: true } });
});
after(() => server.stop());

/** An account with a contact who sees its presence, both online. */
async function pair(name: string): Promise<{ jid: Jid; user: TestClient; contact: TestClient; contactJid: Jid }> {
  const jid = await server.addUser(name);
  const contactJid = await server.addUser(`${name}-friend`);
  const user = await connect(server, name);
  const contact = await connect(server, `${name}-friend`);
  await sharePresence(user, contact);
  return { jid, user, contact, contactJid };
}

describe('in-band erasure request (XEP-0077 <remove/>)', () => {
  test('a wrong password is refused with not-authorized and changes nothing', async () => {
    const jid = await server.addUser('wrongpw');
    const c = await connect(server, 'wrongpw');
    await assert.rejects(c.iq(removeWith(xml('password', {}, 'not my password'))), /not-authorized/);
    // Someone else's name in the cancellation form is refused too.
    const form = xml(
      'x',
      { xmlns: 'jabber:x:data', type: 'submit' },
      xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'jabber:iq:register:cancel')),
      xml('field', { var: 'username' }, xml('value', {}, `other@${server.domain}`)),
      xml('field', { var: 'password' }, xml('value', {}, PASSWORD)),
    );
    await assert.rejects(
      c.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_REGISTER }, form))),
      /not-authorized/,
    );
    assert.equal((await lethe().accounts.get(jid))?.status, 'active');
    await c.stop();
  });

  test('the right password locks the account: told the date, sessions end, login refused with it, contacts see it go', async () => {
    const { jid, user, contact, contactJid } = await pair('leaving');
    const closed = new Promise<void>((resolve) => user.xmpp.on('close', () => resolve()));
    // The returned cancellation form (§3.2), without <remove/>, is accepted as the request.
    const form = xml(
      'x',
      { xmlns: 'jabber:x:data', type: 'submit' },
      xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'jabber:iq:register:cancel')),
      xml('field', { var: 'username' }, xml('value', {}, jid.toString())),
      xml('field', { var: 'password' }, xml('value', {}, PASSWORD)),
    );
    await user.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_REGISTER }, form)));
    const eraseOn = new Date(Date.now() + 30 * DAY).toISOString().slice(0, 10);
    const notice = await user.waitFor((el) => el.is('message') && el.attrs.from === server.domain, 5000, 'the notice');
    assert.match(notice.getChildText('body') ?? '', new RegExp(`will be erased on ${eraseOn}.*restore`));
    await closed;
    await contact.waitFor(unavailableFrom(jid.toString()), 5000, 'unavailable presence of the locked account');

    await assert.rejects(connect(server, 'leaving'), new RegExp(`account-disabled - .*erased on ${eraseOn}`));
    // A wrong password learns nothing about the lock.
    await assert.rejects(connect(server, 'leaving', { password: 'guess' }), /not-authorized/);
    // Messages bounce as for a missing account; a probe sees it unavailable.
    await contact.send(xml('message', { to: jid.toString(), type: 'chat', id: 'm1' }, xml('body', {}, 'hello?')));
    const bounce = await contact.waitFor((el) => el.is('message') && el.attrs.id === 'm1', 5000, 'the bounce');
    assert.equal(bounce.attrs.type, 'error');
    assert.ok(bounce.getChild('error')?.getChild('service-unavailable'));
    assert.equal((await pendingHolds(lethe()))[0]?.account, jid.toString());

    // Restoring brings everything back: login works, the roster is intact, the user is told.
    await restoreAccount(lethe(), jid, { by: 'operator', reason: 'the user changed their mind' });
    const back = await connect(server, 'leaving');
    const roster = await back.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
    assert.ok(
      roster
        .getChild('query')
        ?.getChildren('item')
        .some((i) => i.attrs.jid === contactJid.toString()),
    );
    await back.waitFor(
      (el) =>
        el.is('message') && /cancelled the erasure.*the user changed their mind/.test(el.getChildText('body') ?? ''),
      5000,
      'the restore notice',
    );
    await Promise.all([back.stop(), contact.stop()]);
    assert.deepEqual(await pendingHolds(lethe()), []);
  });
});

describe('grace period, sweeper and receipt', () => {
  test('the sweeper reminds before the date and erases when it has passed, with contacts told', async () => {
    const { jid, user, contact, contactJid } = await pair('graceful');
    await user.stop();
    const request = await requestErasure(lethe(), jid, { by: 'operator', reason: `asked by ${jid} by mail` });
    assert.ok(
      request.willErase.find((c) => c.category === 'roster' && c.count === 1),
      'the roster is to go',
    );
    assert.match(request.notice, /will be erased on/);
    const eraseAt = request.eraseAt.getTime();
    // Not yet: before the reminder window nothing happens; inside it, one reminder.
    assert.deepEqual(await sweepErasures(lethe(), new Date(eraseAt - 5 * DAY)), { erased: 0, reminded: 0 });
    assert.deepEqual(await sweepErasures(lethe(), new Date(eraseAt - 2 * DAY)), { erased: 0, reminded: 1 });
    assert.deepEqual(await sweepErasures(lethe(), new Date(eraseAt - 1 * DAY)), { erased: 0, reminded: 0 });
    assert.ok((await pendingHolds(lethe(), new Date(eraseAt - DAY)))[0]?.reminderDue);
    assert.equal((await lethe().accounts.get(jid))?.status, 'locked');

    assert.deepEqual(await sweepErasures(lethe(), new Date(eraseAt + 1000)), { erased: 1, reminded: 0 });
    assert.equal(await lethe().accounts.get(jid), undefined);
    // Contacts were sent unsubscribe/unsubscribed: the contact's own item stays, at none.
    await contact.waitFor(
      (el) => el.is('presence') && el.attrs.type === 'unsubscribed' && el.attrs.from === jid.toString(),
      5000,
      'unsubscribed from the erased account',
    );
    const roster = await contact.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
    const item = roster
      .getChild('query')
      ?.getChildren('item')
      .find((i) => i.attrs.jid === jid.toString());
    assert.equal(item?.attrs.subscription, 'none');
    await contact.stop();
    for (const { category, count } of await lethe().privacy.countAll(jid))
      if (!category.keeps) assert.equal(count, 0, `${category.id} still holds data`);

    const hash = addressHash(lethe().config, jid);
    const receipt = await erasureReceipt(lethe(), jid);
    assert.ok(receipt);
    assert.equal(receipt.tombstone, hash);
    assert.equal(receipt.requestedBy, 'the operator');
    assert.equal(receipt.reason, `asked by ${hash} by mail`, 'the address in the reason is pseudonymised');
    const erased = Object.fromEntries(receipt.erased.map((l) => [l.category, l.removed]));
    assert.equal(erased.account, 1);
    assert.equal(erased.credentials, 2);
    assert.equal(erased.roster, 1);
    const kept = Object.fromEntries(receipt.kept.map((k) => [k.category, k]));
    assert.equal(kept.tombstone?.items, 1);
    assert.equal(kept.tombstone?.howLong, 'forever');
    assert.ok((kept['audit-log']?.items ?? 0) >= 1, 'the audit entries are pseudonymised');
    assert.match(kept['audit-log']?.why ?? '', /accountability/);
    assert.ok(kept['erasure-receipt']);
    assert.doesNotMatch(JSON.stringify(receipt), /graceful@/i, 'the receipt names nobody');
    // The contact keeps their own roster item naming the erased address (email model).
    assert.ok(await lethe().accounts.exists(contactJid));
  });

  test('--now erases at once, and running it again returns the same receipt', async () => {
    const jid = await server.addUser('hasty');
    const c = await connect(server, 'hasty');
    const closed = new Promise<void>((resolve) => c.xmpp.on('close', () => resolve()));
    const request = await requestErasure(lethe(), jid, { by: 'operator', reason: 'spam account', now: true });
    await closed;
    assert.ok(request.receipt);
    assert.equal(await lethe().accounts.get(jid), undefined);
    assert.deepEqual(await erasureReceipt(lethe(), jid), request.receipt);
    await assert.rejects(requestErasure(lethe(), jid, { by: 'operator', now: true }), /does not exist/);
  });

  test('the tombstone stops the address from being registered again, in-band and by the operator', async () => {
    const jid = await server.addUser('ghost');
    await requestErasure(lethe(), jid, { by: 'operator', reason: 'test', now: true });
    await assert.rejects(
      lethe().accounts.create(Jid.parse(`GHOST@${server.domain}`), 'a new password'),
      /erased account/,
    );
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    await raw.write(
      `<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>ghost</username><password>another password</password></query></iq>`,
    );
    await raw.waitFor(/<iq type="error" id="r1">.*<conflict.*cannot be registered again/);
    raw.destroy();
    // Nothing stored names the address, only its keyed hash.
    const rows = await lethe().db.all('SELECT * FROM tombstones');
    assert.doesNotMatch(JSON.stringify(rows), /ghost/i);
    assert.ok(rows.some((r) => r.hash === addressHash(lethe().config, jid)));
  });
});

describe('deactivation', () => {
  test('locks and hides the account without deleting anything; reactivation undoes it', async () => {
    const { jid, user, contact } = await pair('paused');
    const closed = new Promise<void>((resolve) => user.xmpp.on('close', () => resolve()));
    const before = await lethe().privacy.countAll(jid);
    await deactivateAccount(lethe(), jid, { by: 'operator', reason: 'abuse report under review' });
    const notice = await user.waitFor((el) => el.is('message') && el.attrs.from === server.domain, 5000, 'notice');
    assert.match(notice.getChildText('body') ?? '', /deactivated.*abuse report under review/);
    await closed;
    await contact.waitFor(unavailableFrom(jid.toString()), 5000, 'unavailable presence');
    await assert.rejects(connect(server, 'paused'), /account-disabled - this account has been deactivated/);
    await contact.send(xml('message', { to: jid.toString(), type: 'chat', id: 'd1' }, xml('body', {}, 'there?')));
    const bounce = await contact.waitFor((el) => el.is('message') && el.attrs.id === 'd1', 5000, 'the bounce');
    assert.equal(bounce.attrs.type, 'error');
    await assert.rejects(deactivateAccount(lethe(), jid, { by: 'operator' }), /already deactivated/);
    await assert.rejects(restoreAccount(lethe(), jid, { by: 'operator' }), /no erasure/);

    await reactivateAccount(lethe(), jid, { by: 'operator', reason: 'cleared' });
    const after = new Map((await lethe().privacy.countAll(jid)).map(({ category, count }) => [category.id, count]));
    for (const { category, count } of before)
      if (count > 0 && category.id !== 'audit-log') assert.equal(after.get(category.id), count, `${category.id} kept`);
    const again = await connect(server, 'paused');
    await again.waitFor(
      (el) => el.is('message') && /reactivated your account.*cleared/.test(el.getChildText('body') ?? ''),
      5000,
      'the reactivation notice',
    );
    await Promise.all([again.stop(), contact.stop()]);
  });
});
