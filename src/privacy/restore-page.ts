import { escapeHtml, htmlPage } from '../core/html-page.js';
import type { HttpRequest, HttpResponse } from '../core/http-routes.js';
import type { LetheModule } from '../core/module.js';
import { pendingErasure, RESTORE_PATH, restoreAccount } from './erasure.js';
import { WebLogins } from './web-login.js';

/**
 * The web page where a user cancels the erasure of their own account during the grace period: they
 * log in with their address and password (a locked account cannot log in over XMPP). Every failure
 * gets the same answer, so the page does not tell who exists or who is to be erased (src/privacy/web-login.ts).
 */

function page(status: number, message: string, withForm: boolean): HttpResponse {
  const form = withForm
    ? `<form method="post" action="${RESTORE_PATH}">
<p><label>Address <input name="jid" type="text" inputmode="email" autocapitalize="none" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Keep my account</button></p>
</form>`
    : '';
  return htmlPage(status, 'Cancel the deletion of your account', `<p>${escapeHtml(message)}</p>\n${form}`);
}

const INTRO =
  'If you asked for your account to be deleted and changed your mind, log in here before the date you were given: the account is restored at once, with everything in it.';
const REFUSED =
  'Nothing was restored: the address or password is wrong, no deletion is pending for it, or it has begun already.';

export const restorePageModule: LetheModule = {
  name: 'restore-page',
  load(server) {
    if (!server.config.http.enabled) return;
    const logins = new WebLogins(server);

    server.http.route('GET', RESTORE_PATH, () => page(200, INTRO, true));
    server.http.route('POST', RESTORE_PATH, async (request: HttpRequest) => {
      const form = new URLSearchParams(request.body.toString('utf8'));
      const login = await logins.check(form.get('jid') ?? '', form.get('password') ?? '', async (jid) =>
        Boolean(await pendingErasure(server, jid)),
      );
      if (!login.ok)
        return login.reason === 'too-many'
          ? page(429, 'Too many failed attempts for this address; try again in an hour.', false)
          : page(403, REFUSED, true);
      const key = login.jid.bareString();
      await restoreAccount(server, login.jid, { by: key, reason: 'cancelled by the user on the web page' });
      return page(200, `Your account ${key} is active again; nothing was deleted. You can log in as before.`, false);
    });
  },
};
