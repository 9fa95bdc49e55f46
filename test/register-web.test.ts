import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { invitations } from '../src/modules/invite/index.js';
import { consent } from '../src/privacy/consent/service.js';
import { Jid } from '../src/xml/jid.js';
import { fetchHttps } from './support/https.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect } from './support/xmpp.js';

/** The web registration page: open or by invitation, with the terms to accept, rate-limited. */

const PASSWORD = 'web password 1';

function client(server: () => TestServer) {
  const port = () => server().running.ports.http as number;
  return {
    get: (path: string) => fetchHttps(port(), path),
    post: (fields: Record<string, string>) =>
      fetchHttps(port(), '/register', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      }),
  };
}

const exists = (server: TestServer, name: string) =>
  server.running.server.accounts.exists(new Jid(name, server.domain));

describe('by invitation only (register.enabled off)', () => {
  let server: TestServer;
  const http = client(() => server);
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('without an invitation the page says so, and a POST creates nothing', async () => {
    const page = await http.get('/register');
    assert.equal(page.status, 403);
    assert.match(page.body.toString(), /by invitation only/);
    assert.doesNotMatch(page.body.toString(), /<form/);
    const post = await http.post({ username: 'gatecrasher', password: PASSWORD, password2: PASSWORD });
    assert.equal(post.status, 403);
    assert.equal(await exists(server, 'gatecrasher'), false);
    assert.equal((await http.get('/register?token=forged')).status, 404);
  });

  test('an invitation link works once', async () => {
    const { token, webUrl } = await invitations(server.running.server).create({ domain: server.domain, by: 'test' });
    const path = new URL(webUrl as string).pathname + new URL(webUrl as string).search;
    const page = await http.get(path);
    assert.equal(page.status, 200);
    const html = page.body.toString();
    assert.match(html, /<form method="post" action="\/register">/);
    assert.ok(html.includes(`name="token" value="${token}"`), 'the token travels in a hidden field');
    assert.match(String(page.headers['content-security-policy']), /form-action 'self'/);

    const ok = await http.post({ token, username: 'Guest', password: PASSWORD, password2: PASSWORD });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.match(ok.body.toString(), /guest@lethe\.test/);
    const c = await connect(server, 'guest', { password: PASSWORD });
    await c.stop();

    const twice = await http.post({ token, username: 'guest2', password: PASSWORD, password2: PASSWORD });
    assert.equal(twice.status, 404);
    assert.match(twice.body.toString(), /not valid/);
    assert.equal(await exists(server, 'guest2'), false);
    assert.equal((await http.get(path)).status, 404);
  });

  test('a named invitation fixes the username; a failure keeps the invitation usable', async () => {
    const service = invitations(server.running.server);
    const { token } = await service.create({ domain: server.domain, username: 'named', by: 'test' });
    const html = (await http.get(`/register?token=${encodeURIComponent(token)}`)).body.toString();
    assert.match(html, /name="username" value="named"[^>]* readonly/);
    const mismatch = await http.post({ token, username: 'named', password: PASSWORD, password2: 'something else' });
    assert.equal(mismatch.status, 400);
    assert.ok(!mismatch.body.toString().includes(PASSWORD), 'the password is never echoed');
    assert.ok(await service.check(token));
    const ok = await http.post({ token, username: 'someone-else', password: PASSWORD, password2: PASSWORD });
    assert.equal(ok.status, 200);
    assert.equal(await exists(server, 'named'), true);
    assert.equal(await exists(server, 'someone-else'), false);
  });
});

describe('with terms to accept (register.enabled on)', () => {
  let server: TestServer;
  const http = client(() => server);
  const fields = (username: string, extra: Record<string, string> = {}) => ({
    username,
    password: PASSWORD,
    password2: PASSWORD,
    ...extra,
  });
  before(async () => {
    server = await startTestServer({ register: { enabled: true, attemptsPerAddress: 50 } });
    await consent(server.running.server).publish({
      version: '1',
      publishedAt: Date.now(),
      changes: null,
      documents: [{ id: 'terms', title: 'Terms of Service', markdown: '# T', template: '# T' }],
    });
  });
  after(() => server.stop());

  test('the form asks to accept the current version, linking to it', async () => {
    const page = await http.get('/register');
    assert.equal(page.status, 200);
    const html = page.body.toString();
    assert.match(html, /<input type="checkbox" name="accept" value="yes" required> I have read and accept/);
    assert.match(html, /href="https:\/\/lethe\.test:\d+\/policy\/1\/terms"[^>]*>Terms of Service<\/a> \(version 1\)/);
    assert.match(html, /<input type="hidden" name="version" value="1">/);
  });

  test('refused without accepting the terms', async () => {
    const r = await http.post(fields('undecided', { version: '1' }));
    assert.equal(r.status, 400);
    assert.match(r.body.toString(), /you must accept the Terms of Service/);
    assert.equal(await exists(server, 'undecided'), false);
  });

  test('refused when the terms changed since the form was shown', async () => {
    const r = await http.post(fields('stale', { accept: 'yes', version: '0' }));
    assert.equal(r.status, 409);
    assert.match(r.body.toString(), /version 1 is now in force/);
    assert.match(r.body.toString(), /name="version" value="1"/, 'the form shows the new version');
    assert.equal(await exists(server, 'stale'), false);
  });

  test('with acceptance the account is created and the consent recorded', async () => {
    const r = await http.post(fields('webuser', { accept: 'yes', version: '1' }));
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.body.toString(), /webuser@lethe\.test/);
    const history = await consent(server.running.server).ledger.history(new Jid('webuser', server.domain));
    assert.deepEqual(
      history.map(({ purpose, action, version, method }) => ({ purpose, action, version, method })),
      [{ purpose: 'terms', action: 'given', version: '1', method: 'web-registration' }],
    );
  });

  test('by invitation the consent is recorded as such', async () => {
    const { token } = await invitations(server.running.server).create({ domain: server.domain, by: 'test' });
    const r = await http.post(fields('invited', { token, accept: 'yes', version: '1' }));
    assert.equal(r.status, 200, r.body.toString());
    const history = await consent(server.running.server).ledger.history(new Jid('invited', server.domain));
    assert.equal(history[0]?.method, 'invitation');
  });

  test('weak, mismatched, invalid and taken choices are refused with a reason', async () => {
    await server.addUser('occupied');
    const cases: [Record<string, string>, number, RegExp][] = [
      [fields('weak', { password: 'short', password2: 'short' }), 400, /at least 8 characters/],
      [fields('typo', { password2: 'other password' }), 400, /passwords differ/],
      [fields('a@b'), 400, /cannot be used/],
      [fields(''), 400, /Choose a username/],
      [fields('occupied'), 409, /already exists/],
    ];
    for (const [submitted, status, message] of cases) {
      const r = await http.post({ ...submitted, accept: 'yes', version: '1' });
      assert.equal(r.status, status, submitted.username);
      assert.match(r.body.toString(), message);
    }
    assert.equal(await exists(server, 'weak'), false);
    assert.equal(await exists(server, 'typo'), false);
  });
});

describe('limits and switches', () => {
  test('attempts per client address are limited', async () => {
    const server = await startTestServer({ register: { enabled: true, attemptsPerAddress: 2 } });
    const http = client(() => server);
    try {
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await http.post({ username: `flood${i}`, password: 'x' })).status);
      assert.deepEqual(statuses, [400, 400, 429]);
    } finally {
      await server.stop();
    }
  });

  test('no page without the HTTPS listener', async () => {
    const server = await startTestServer({ register: { enabled: true }, http: { enabled: false } });
    try {
      assert.equal(server.running.server.http.match('GET', '/register').kind, 'none');
    } finally {
      await server.stop();
    }
  });
});
