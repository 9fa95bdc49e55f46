import { escapeHtml, htmlPage } from '../../core/html-page.js';
import type { HttpRequest, HttpResponse } from '../../core/http-routes.js';
import type { LetheModule } from '../../core/module.js';
import type { Server } from '../../core/server.js';
import type { Jid } from '../../xml/jid.js';
import { WebLogins } from '../web-login.js';
import type { PolicyVersion } from './policies.js';
import { policyChangesHtml } from './render.js';
import { CONSENT_PATH, consent } from './service.js';

/**
 * The consent web page: the current terms and privacy policy, what changed since the version the user
 * accepted, and the acceptance itself. The user is known by a single-use link from their terms notice,
 * or logs in with address and password, which issues such a link for the next step; accepting spends
 * it. Acceptance lifts the gate on their sessions at once.
 */

const TITLE = 'Terms of service and privacy policy';

function day(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function documentLinks(server: Server, policy: PolicyVersion): string {
  const service = consent(server);
  const items = policy.documents.map(
    (d) =>
      `<li><a href="${escapeHtml(service.documentUrl(policy.version, d.id) ?? '#')}">${escapeHtml(d.title)}</a></li>`,
  );
  return `<p>Version ${escapeHtml(policy.version)}, published ${day(policy.publishedAt)}:</p>\n<ul>${items.join('')}</ul>`;
}

function loginForm(note?: string): string {
  return `${note ? `<p role="alert">${escapeHtml(note)}</p>\n` : ''}<p>Log in to accept them:</p>
<form method="post" action="${CONSENT_PATH}">
<p><label>Address <input name="jid" type="text" inputmode="email" autocapitalize="none" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Log in</button></p>
</form>`;
}

/** The page for a known user: where they stand, what changed, and the acceptance form carrying their token. */
async function acceptancePage(
  server: Server,
  user: Jid,
  token: string,
  policy: PolicyVersion,
  note?: string,
): Promise<HttpResponse> {
  const service = consent(server);
  const last = await service.ledger.lastAccepted(user);
  const parts = [`<p>Hello ${escapeHtml(user.bareString())}.</p>`, documentLinks(server, policy)];
  if (last?.version === policy.version)
    return htmlPage(
      200,
      TITLE,
      `${parts.join('\n')}<p>You accepted this version on ${day(last.at)}; there is nothing more to do.</p>`,
    );
  const earlier = last?.version ? await service.policies.get(last.version) : undefined;
  if (earlier) {
    parts.push(
      `<p>You accepted version ${escapeHtml(earlier.version)} on ${day(last?.at ?? 0)}. What changed since:</p>`,
    );
    for (const v of await service.policies.since(earlier.version))
      if (v.changes) parts.push(`<p>Version ${escapeHtml(v.version)}: ${escapeHtml(v.changes)}</p>`);
    parts.push(policyChangesHtml(earlier, policy));
  } else parts.push('<p>You have not accepted a version of these documents yet.</p>');
  const deadline = await service.deadline(user);
  if (deadline)
    parts.push(
      `<p>${
        deadline.getTime() <= service.clock()
          ? 'Until you accept them you cannot write to others.'
          : `Until ${day(deadline.getTime())} everything works as before; after that you can write to others only once you have accepted them.`
      }</p>`,
    );
  if (note) parts.push(`<p role="alert">${escapeHtml(note)}</p>`);
  parts.push(`<form method="post" action="${CONSENT_PATH}">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<input type="hidden" name="version" value="${escapeHtml(policy.version)}">
<p><label><input type="checkbox" name="accept" value="yes" required> I have read and accept the ${escapeHtml(
    policy.documents.map((d) => d.title).join(' and the '),
  )} (version ${escapeHtml(policy.version)})</label></p>
<p><button type="submit">Accept</button></p>
</form>`);
  return htmlPage(200, TITLE, parts.join('\n'));
}

export const consentPageModule: LetheModule = {
  name: 'consent-page',
  load(server) {
    if (!server.config.http.enabled) return;
    const service = consent(server);
    const logins = new WebLogins(server);
    const nothingPublished = () => htmlPage(404, TITLE, '<p>This server has published no terms of service.</p>');
    const expired = (policy: PolicyVersion) =>
      htmlPage(
        403,
        TITLE,
        `${documentLinks(server, policy)}\n${loginForm('This link has expired, was used already or is for an earlier version.')}`,
      );

    server.http.route('GET', CONSENT_PATH, async (request: HttpRequest) => {
      const policy = service.current;
      if (!policy) return nothingPublished();
      const token = request.query.get('token');
      if (!token) return htmlPage(200, TITLE, `${documentLinks(server, policy)}\n${loginForm()}`);
      const claim = await service.links.check(token, service.clock());
      if (!claim || claim.version !== policy.version) return expired(policy);
      return acceptancePage(server, claim.account, token, policy);
    });

    server.http.route('POST', CONSENT_PATH, async (request: HttpRequest) => {
      const policy = service.current;
      if (!policy) return nothingPublished();
      const form = new URLSearchParams(request.body.toString('utf8'));
      const token = form.get('token');
      if (token === null) {
        const login = await logins.check(form.get('jid') ?? '', form.get('password') ?? '', (jid) =>
          server.accounts.exists(jid),
        );
        if (!login.ok)
          return htmlPage(
            login.reason === 'too-many' ? 429 : 403,
            TITLE,
            `${documentLinks(server, policy)}\n${loginForm(
              login.reason === 'too-many'
                ? 'Too many failed attempts for this address; try again in an hour.'
                : 'The address or the password is wrong.',
            )}`,
          );
        const fresh = await service.links.issue(login.jid, policy.version, service.clock());
        return acceptancePage(server, login.jid, fresh, policy);
      }
      const claim = await service.links.check(token, service.clock());
      if (!claim || claim.version !== policy.version || form.get('version') !== policy.version) return expired(policy);
      if (form.get('accept') !== 'yes')
        return acceptancePage(server, claim.account, token, policy, 'Tick the box to accept, or close this page.');
      if (!(await service.links.use(token))) return expired(policy);
      if (await service.mustAccept(claim.account)) await service.accept(claim.account, 'web', policy.version);
      return htmlPage(
        200,
        TITLE,
        `<p>Thank you: ${escapeHtml(claim.account.bareString())} accepted version ${escapeHtml(
          policy.version,
        )}. Everything works again at once; there is no need to reconnect.</p>\n${documentLinks(server, policy)}`,
      );
    });
  },
};
