import type { HttpRequest, HttpResponse } from '../core/http-routes.js';
import type { LetheModule } from '../core/module.js';
import { Jid } from '../xml/jid.js';
import { pendingErasure, RESTORE_PATH, restoreAccount } from './erasure.js';

/**
 * The web page where a user cancels the erasure of their own account during the grace period: they
 * log in with their address and password (a locked account cannot log in over XMPP). Every failure
 * gets the same answer, so the page does not tell who exists or who is to be erased. Failed attempts
 * are counted per address in memory only, to stop password guessing through this page.
 */

const MAX_FAILURES = 5;
const FAILURE_WINDOW_MS = 3_600_000;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(status: number, message: string, withForm: boolean): HttpResponse {
  const form = withForm
    ? `<form method="post" action="${RESTORE_PATH}">
<p><label>Address <input name="jid" type="email" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Keep my account</button></p>
</form>`
    : '';
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      // The listener's policy forbids forms; this page's one form posts back to itself.
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    },
    body: `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Cancel the deletion of your account</title></head>
<body><h1>Cancel the deletion of your account</h1>
<p>${escapeHtml(message)}</p>
${form}
</body></html>
`,
  };
}

const INTRO =
  'If you asked for your account to be deleted and changed your mind, log in here before the date you were given: the account is restored at once, with everything in it.';
const REFUSED =
  'Nothing was restored: the address or password is wrong, no deletion is pending for it, or it has begun already.';

export const restorePageModule: LetheModule = {
  name: 'restore-page',
  load(server) {
    if (!server.config.http.enabled) return;
    const failures = new Map<string, { count: number; resetAt: number }>();
    const blocked = (key: string, now: number) => {
      const f = failures.get(key);
      if (f && f.resetAt <= now) failures.delete(key);
      return (failures.get(key)?.count ?? 0) >= MAX_FAILURES;
    };
    const failed = (key: string, now: number) => {
      const f = failures.get(key) ?? { count: 0, resetAt: now + FAILURE_WINDOW_MS };
      f.count++;
      failures.set(key, f);
    };

    server.http.route('GET', RESTORE_PATH, () => page(200, INTRO, true));
    server.http.route('POST', RESTORE_PATH, async (request: HttpRequest) => {
      const form = new URLSearchParams(request.body.toString('utf8'));
      const jid = Jid.tryParse(form.get('jid') ?? '')?.bare;
      const password = form.get('password') ?? '';
      if (!jid?.local || !server.hosts.has(jid.domain)) return page(403, REFUSED, true);
      const key = jid.bareString();
      const now = Date.now();
      if (blocked(key, now))
        return page(429, 'Too many failed attempts for this address; try again in an hour.', false);
      const pending = await pendingErasure(server, jid);
      if (!pending || !(await server.accounts.checkPassword(jid, password))) {
        failed(key, now);
        return page(403, REFUSED, true);
      }
      await restoreAccount(server, jid, { by: key, reason: 'cancelled by the user on the web page' });
      failures.delete(key);
      return page(200, `Your account ${key} is active again; nothing was deleted. You can log in as before.`, false);
    });
  },
};
