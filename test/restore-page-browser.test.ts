import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { RESTORE_PATH, requestErasure, restorePageUrl } from '../src/privacy/erasure.js';
import type { Jid } from '../src/xml/jid.js';
import { PAGE_TIMEOUT_MS, skipWithoutBrowser, useBrowser, watchPage } from './support/browser.js';
import { fetchHttps } from './support/https.js';
import { DOMAIN, PASSWORD, startTestServer, type TestServer } from './support/lethe.js';

/**
 * The restore page (src/privacy/restore-page.ts) in real headless Chromium, at the address the
 * erasure notice gives: a browser enforces the page's Content-Security-Policy, form-action included,
 * which the plain HTTPS tests (test/restore-page.test.ts) cannot see. Any CSP violation fails.
 */

/** Polls `check` until it holds, for at most `ms`. */
async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (check()) return true;
  return check();
}

describe('the restore page in Chromium', () => {
  let server: TestServer;
  let url: string;
  // The address users are given (https://lethe.test:<port>/account/restore), resolved to the test listener.
  const chromium = useBrowser({ args: [`--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`] });
  const open = async () => {
    const page = await chromium.page();
    return { page, problems: await watchPage(page) };
  };
  const lockedUser = async (name: string): Promise<Jid> => {
    const jid = await server.addUser(name);
    await requestErasure(server.running.server, jid, { by: jid.bareString(), reason: 'leaving' });
    assert.equal(await server.running.server.accounts.exists(jid), false, 'locked while the erasure is pending');
    return jid;
  };
  const fill = async (page: Page, jid: string, password: string, options: { blocked?: boolean } = {}) => {
    await page.getByLabel('Address').fill(jid);
    await page.getByLabel('Password').fill(password);
    // A submission the browser refuses never navigates: do not wait for one then.
    await page.getByRole('button', { name: 'Keep my account' }).click({ noWaitAfter: options.blocked });
  };

  before(async () => {
    if (skipWithoutBrowser) return;
    server = await startTestServer({ erasure: { graceDays: 30 } });
    url = restorePageUrl(server.running.server) as string;
    assert.equal(new URL(url).pathname, RESTORE_PATH);
  });

  after(async () => {
    await server?.stop();
  });

  test('a user cancels the erasure with the form, after one wrong password, and no CSP rule is broken', {
    skip: skipWithoutBrowser,
  }, async () => {
    const alice = await lockedUser('alice');
    const { page, problems } = await open();

    const shown = await page.goto(url);
    assert.equal(shown?.status(), 200);
    assert.equal(await page.title(), 'Cancel the deletion of your account');
    assert.match(String(shown?.headers()['content-security-policy']), /form-action 'self'/);

    // The refusal answers with the form again, which must work as well as the first.
    const refused = page.waitForResponse((r) => r.request().method() === 'POST');
    await fill(page, alice.bareString(), 'not the password');
    assert.equal((await refused).status(), 403);
    await page.getByText('Nothing was restored').waitFor();
    assert.equal(await server.running.server.accounts.exists(alice), false, 'still locked');

    const restored = page.waitForResponse((r) => r.request().method() === 'POST');
    await fill(page, alice.bareString(), PASSWORD);
    const response = await restored;
    assert.equal(response.status(), 200);
    assert.equal(response.url(), url, 'the form posted back to the page itself');
    await page.getByText(`Your account ${alice.bareString()} is active again`).waitFor();
    assert.equal(await page.getByRole('button').count(), 0, 'no form once restored');
    assert.ok(await server.running.server.accounts.exists(alice), 'the account is active again');

    assert.deepEqual(problems.csp(), [], 'no Content-Security-Policy violation');
    // Chromium logs the refusal's 403 as a failed load; nothing else may appear.
    const [forbidden, ...others] = problems.all;
    assert.match(String(forbidden), /status of 403/);
    assert.deepEqual(others, [], 'no other console error or warning, no uncaught exception');
  });

  // The address field was type="email" once: Chromium refused to submit élodie@…, john(doe)@…, ann,bee@….
  test('an address that is a valid JID but not an e-mail address can be submitted', {
    skip: skipWithoutBrowser,
  }, async () => {
    const elodie = await lockedUser('élodie');
    const { page } = await open();
    let posted = false;
    page.on('request', (r) => {
      if (r.method() === 'POST') posted = true;
    });
    await page.goto(url);
    await fill(page, elodie.bareString(), PASSWORD, { blocked: true });
    if (!(await eventually(() => posted, 2_000))) {
      const refusal = await page
        .getByLabel('Address')
        .evaluate((input) => (input as { validationMessage: string }).validationMessage);
      assert.fail(`the browser did not submit: ${refusal}`);
    }
    await page.getByText('is active again').waitFor();
    assert.ok(await server.running.server.accounts.exists(elodie));
  });

  test("the CSP check is real: the page with the listener's form-action 'none' is caught", {
    skip: skipWithoutBrowser,
  }, async () => {
    // The listener's own policy forbids forms; were the page to lose its override, the browser would
    // refuse to submit. Serve the real page with that policy to show that the test sees it.
    const bob = await lockedUser('bob');
    const { page, problems } = await open();
    await page.route(url, async (route) => {
      if (route.request().method() !== 'GET') return route.continue();
      const real = await fetchHttps(server.running.ports.http as number, RESTORE_PATH);
      const headers = Object.fromEntries(Object.entries(real.headers).map(([k, v]) => [k, String(v)]));
      headers['content-security-policy'] = headers['content-security-policy']!.replace(
        "form-action 'self'",
        "form-action 'none'",
      );
      await route.fulfill({ status: real.status, headers, body: real.body });
    });
    let posted = false;
    page.on('request', (r) => {
      if (r.method() === 'POST') posted = true;
    });

    await page.goto(url);
    await fill(page, bob.bareString(), PASSWORD, { blocked: true });
    assert.ok(await eventually(() => problems.csp().length > 0, PAGE_TIMEOUT_MS), 'the violation is reported');
    assert.match(problems.csp().join('\n'), /form-action/);
    assert.equal(posted, false, 'the browser did not submit');
    assert.equal(await server.running.server.accounts.exists(bob), false, 'still locked');
  });
});
