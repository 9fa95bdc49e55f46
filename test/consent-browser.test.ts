import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PolicyVersion } from '../src/privacy/consent/policies.js';
import { type ConsentService, consent } from '../src/privacy/consent/service.js';
import { Jid } from '../src/xml/jid.js';
import { skipWithoutBrowser, useBrowser, watchPage } from './support/browser.js';
import { DOMAIN, PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { connect, type Element, messageRefused, type TestClient } from './support/xmpp.js';

/**
 * The consent page in real headless Chromium: a user held back by the gate follows the link of their
 * terms notice, sees what changed, ticks the box and accepts; their client, still connected, can write
 * again at once. A second user logs in on the page with their password instead. Any CSP violation fails.
 */

const DAY = 86_400_000;

function policy(version: string, terms: string): PolicyVersion {
  return {
    version,
    publishedAt: Date.now(),
    changes: version === 'v2' ? 'Rule 2 added.' : null,
    documents: [{ id: 'terms', title: 'Terms of Service', markdown: terms, template: terms }],
  };
}

const isNotice = (el: Element) => el.is('message') && el.attrs.from === `notices@${DOMAIN}`;

describe('the consent page in Chromium', () => {
  let server: TestServer;
  let service: ConsentService;
  let alice: TestClient;
  let bob: TestClient;
  const aliceJid = Jid.parse(`alice@${DOMAIN}`);
  const bobJid = Jid.parse(`bob@${DOMAIN}`);
  const chromium = useBrowser({ args: [`--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`] });

  before(async () => {
    if (skipWithoutBrowser) return;
    server = await startTestServer({ consent: { graceDays: 1 } });
    service = consent(server.running.server);
    await service.publish(policy('v1', '# Terms\n\n1. Be kind.'));
    for (const name of ['alice', 'bob']) await service.accept(await server.addUser(name), 'operator');
    alice = await connect(server, 'alice');
    bob = await connect(server, 'bob');
    await service.publish(policy('v2', '# Terms\n\n1. Be kind.\n2. Send no spam.'));
    service.clock = () => Date.now() + 2 * DAY;
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await server?.stop();
  });

  test('the link of the notice: see what changed, accept, and write again without reconnecting', {
    skip: skipWithoutBrowser,
  }, async () => {
    const notice = await alice.waitFor(isNotice, 5000, 'the terms notice');
    assert.ok(await messageRefused(alice, bobJid, 'before'), 'held back after the grace period');
    const link = /https:\/\/\S+/.exec(notice.getChildText('body') ?? '')?.[0] as string;

    const page = await chromium.page();
    const problems = await watchPage(page);
    assert.equal((await page.goto(link))?.status(), 200);
    await page.getByText(`Hello ${aliceJid}`).waitFor();
    assert.match(String(await page.locator('ins').first().textContent()), /Send no spam/);
    await page.getByText('Version v2: Rule 2 added.').waitFor();

    const terms = page.getByRole('link', { name: 'Terms of Service' }).first();
    assert.match(String(await terms.getAttribute('href')), /\/policy\/v2\/terms$/);

    const posted = page.waitForResponse((r) => r.request().method() === 'POST');
    await page.getByLabel(/I have read and accept/).check();
    await page.getByRole('button', { name: 'Accept' }).click();
    assert.equal((await posted).status(), 200);
    await page.getByText('accepted version v2').waitFor();
    assert.deepEqual(problems.csp(), [], 'no Content-Security-Policy violation');

    assert.equal(await messageRefused(alice, bobJid, 'after'), undefined, 'the same connection may write again');
    await bob.waitFor((el) => el.getChildText('body') === 'after', 5000, 'the message');
    const last = (await service.ledger.history(aliceJid)).at(-1);
    assert.deepEqual([last?.version, last?.method], ['v2', 'web']);
  });

  test('logging in on the page with a password, then accepting, lifts the gate too', {
    skip: skipWithoutBrowser,
  }, async () => {
    assert.ok(await messageRefused(bob, aliceJid, 'bob-before'));
    const page = await chromium.page();
    const problems = await watchPage(page);
    const url = service.pageUrl() as string;
    await page.goto(url);
    await page.getByLabel('Address').fill(bobJid.toString());
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText(`Hello ${bobJid}`).waitFor();
    await page.getByLabel(/I have read and accept/).check();
    await page.getByRole('button', { name: 'Accept' }).click();
    await page.getByText('accepted version v2').waitFor();
    assert.deepEqual(problems.csp(), []);
    assert.equal(await messageRefused(bob, aliceJid, 'bob-after'), undefined);
  });
});
