import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { requestErasure, restorePageUrl } from '../src/privacy/erasure.js';
import type { Jid } from '../src/xml/jid.js';
import { fetchHttps } from './support/https.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { connect } from './support/xmpp.js';

/** The web page where a user cancels the pending erasure of their account during the grace period. */

let server: TestServer;
let alice: Jid;
let bob: Jid;
const port = () => server.running.ports.http as number;
const post = (fields: Record<string, string>) =>
  fetchHttps(port(), '/account/restore', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });

before(async () => {
  server = await startTestServer({ erasure: { graceDays: 30 } });
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  const lethe = server.running.server;
  await requestErasure(lethe, alice, { by: alice.bareString(), reason: 'leaving' });
});

after(async () => {
  await server.stop();
});

test('the notice and the login refusal point to the page', async () => {
  const url = restorePageUrl(server.running.server) as string;
  assert.match(url, /^https:\/\/lethe\.test:\d+\/account\/restore$/);
  await assert.rejects(connect(server, 'alice'), (err: Error) => err.message.includes('/account/restore'));
});

test('the page shows a login form', async () => {
  const reply = await fetchHttps(port(), '/account/restore');
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /text\/html/);
  assert.match(reply.body.toString(), /<form method="post" action="\/account\/restore">/);
  // A browser submits the form only when the policy allows posting back to this origin.
  assert.match(String(reply.headers['content-security-policy']), /form-action 'self'/);
  assert.match(String(reply.headers['content-security-policy']), /default-src 'none'/);
});

test('a wrong password, an account with nothing pending, or a foreign domain all get the same refusal', async () => {
  const answers = [
    await post({ jid: alice.bareString(), password: 'wrong' }),
    await post({ jid: bob.bareString(), password: PASSWORD }),
    await post({ jid: 'alice@elsewhere.example', password: PASSWORD }),
    await post({ jid: 'not a jid', password: PASSWORD }),
  ];
  assert.deepEqual(
    answers.map((a) => a.status),
    [403, 403, 403, 403],
  );
  assert.equal(new Set(answers.map((a) => a.body.toString())).size, 1, 'nothing tells them apart');
  assert.equal(await server.running.server.accounts.exists(alice), false, 'still locked');
});

test('the right password restores the account at once; the user can log in again', async () => {
  const reply = await post({ jid: alice.bareString(), password: PASSWORD });
  assert.equal(reply.status, 200, reply.body.toString());
  assert.match(reply.body.toString(), /active again/);
  assert.ok(await server.running.server.accounts.exists(alice));
  const c = await connect(server, 'alice');
  await c.stop();
  const audit = await server.running.server.audit.list({ account: alice });
  assert.ok(audit.some((e) => e.action === 'restore' && e.actor === alice.bareString()));
  assert.equal((await post({ jid: alice.bareString(), password: PASSWORD })).status, 403, 'nothing left to restore');
});

test('repeated failures for one address are refused for a while', async () => {
  const carol = await server.addUser('carol');
  await requestErasure(server.running.server, carol, { by: carol.bareString(), reason: 'leaving' });
  for (let i = 0; i < 5; i++)
    assert.equal((await post({ jid: carol.bareString(), password: `guess ${i}` })).status, 403);
  assert.equal(
    (await post({ jid: carol.bareString(), password: PASSWORD })).status,
    429,
    'even with the right password',
  );
  assert.equal(await server.running.server.accounts.exists(carol), false);
});
