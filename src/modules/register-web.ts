import { AttemptLimiter } from '../core/attempt-limiter.js';
import { StanzaError } from '../core/errors.js';
import { escapeHtml, htmlPage } from '../core/html-page.js';
import type { HttpRequest, HttpResponse } from '../core/http-routes.js';
import type { LetheModule } from '../core/module.js';
import { consent, REGISTER_PATH } from '../privacy/consent/service.js';
import { Jid, JidError } from '../xml/jid.js';
import { type Invitation, invitations } from './invite/index.js';

/**
 * The web registration page on the HTTPS listener: open when `register.enabled`, otherwise only with an
 * invitation link (`?token=`, see src/modules/invite/index.ts). When terms are published the user must
 * accept the current version, which is recorded in the consent ledger with the account. Attempts are
 * counted per client address in memory only; passwords are never logged or echoed back.
 */

const para = (text: string) => `<p>${escapeHtml(text)}</p>`;

/** Who may register now: anyone (open registration), the holder of a valid invitation, or nobody. */
type Access =
  | { kind: 'open' }
  | { kind: 'invited'; token: string; invitation: Invitation }
  | { kind: 'refused'; status: number; message: string };

interface FormState {
  access: Extract<Access, { kind: 'open' | 'invited' }>;
  username?: string | undefined;
  domain?: string | undefined;
  /** Shown above the form: why the last attempt was refused. */
  error?: string | undefined;
}

export const registerWebModule: LetheModule = {
  name: 'register-web',
  load(server) {
    if (!server.config.http.enabled) return;
    const cfg = server.config.register;
    const limiter = new AttemptLimiter(cfg.attemptsPerAddress, cfg.windowSeconds * 1000);
    const domains = [...server.hosts];

    const access = async (token: string | null): Promise<Access> => {
      const orOpen = cfg.enabled ? ` You can also <a href="${REGISTER_PATH}">register without one</a>.` : '';
      if (token) {
        if (!server.config.invites.enabled)
          return { kind: 'refused', status: 403, message: `Invitations are not accepted on this server.${orOpen}` };
        const invitation = await invitations(server).check(token);
        if (!invitation)
          return {
            kind: 'refused',
            status: 404,
            message: `This invitation is not valid: it was used already, withdrawn, or it has expired. Ask whoever invited you for a new one.${orOpen}`,
          };
        return { kind: 'invited', token, invitation };
      }
      if (cfg.enabled) return { kind: 'open' };
      return {
        kind: 'refused',
        status: 403,
        message:
          'Registration on this server is by invitation only. Ask someone who has an account here, or the operator, for an invitation link.',
      };
    };

    /** The form, with what the user typed before (never the password). */
    const form = (status: number, state: FormState): HttpResponse => {
      const { access: a } = state;
      const invited = a.kind === 'invited' ? a.invitation : undefined;
      const fixedName = invited?.username;
      const domain = invited?.domain ?? state.domain ?? (domains[0] as string);
      const parts: string[] = [];
      if (invited)
        parts.push(
          para(
            fixedName
              ? `You are invited to register ${fixedName}@${invited.domain}. The invitation is valid until ${utc(invited.expiresAt)}.`
              : `You are invited to create an account on ${invited.domain}. The invitation is valid until ${utc(invited.expiresAt)}.`,
          ),
        );
      if (state.error) parts.push(`<p role="alert"><strong>${escapeHtml(state.error)}</strong></p>`);
      const name = escapeHtml(fixedName ?? state.username ?? '');
      const domainField =
        invited || domains.length === 1
          ? `@${escapeHtml(domain)}`
          : `@<select name="domain">${domains
              .map((d) => `<option${d === domain ? ' selected' : ''}>${escapeHtml(d)}</option>`)
              .join('')}</select>`;
      const fields = [
        `<p><label>Username <input name="username" value="${name}" autocomplete="username" required${
          fixedName ? ' readonly' : ''
        }></label> ${domainField}</p>`,
        `<p><label>Password <input name="password" type="password" autocomplete="new-password" minlength="${cfg.minPasswordLength}" required></label></p>`,
        `<p><label>Password again <input name="password2" type="password" autocomplete="new-password" minlength="${cfg.minPasswordLength}" required></label></p>`,
      ];
      const current = consent(server).current;
      if (current) {
        const service = consent(server);
        const links = current.documents.map(
          (d) =>
            `the <a href="${escapeHtml(service.documentUrl(current.version, d.id) ?? '')}" target="_blank" rel="noopener noreferrer">${escapeHtml(d.title)}</a>`,
        );
        fields.push(
          `<p><label><input type="checkbox" name="accept" value="yes" required> I have read and accept ${links.join(
            ' and ',
          )} (version ${escapeHtml(current.version)}).</label></p>`,
          `<input type="hidden" name="version" value="${escapeHtml(current.version)}">`,
        );
      }
      if (a.kind === 'invited') fields.push(`<input type="hidden" name="token" value="${escapeHtml(a.token)}">`);
      parts.push(
        `<form method="post" action="${REGISTER_PATH}">
${fields.join('\n')}
<p><button type="submit">Create my account</button></p>
</form>`,
      );
      return htmlPage(status, `Create an account on ${domain}`, parts.join('\n'));
    };

    const refused = (a: Extract<Access, { kind: 'refused' }>) =>
      // The message is ours and may carry a link; nothing the client sent is in it.
      htmlPage(a.status, 'Create an account', `<p>${a.message}</p>`);

    server.http.route('GET', REGISTER_PATH, async (request: HttpRequest) => {
      const a = await access(request.query.get('token'));
      return a.kind === 'refused' ? refused(a) : form(200, { access: a });
    });

    server.http.route('POST', REGISTER_PATH, async (request: HttpRequest) => {
      if (request.peer && !limiter.allow(request.peer))
        return htmlPage(
          429,
          'Create an account',
          para('Too many registration attempts from your address; try again later.'),
        );
      const submitted = new URLSearchParams(request.body.toString('utf8'));
      const a = await access(submitted.get('token'));
      if (a.kind === 'refused') return refused(a);
      const invited = a.kind === 'invited' ? a.invitation : undefined;
      const chosen = submitted.get('domain');
      const domain = invited?.domain ?? (chosen && server.hosts.has(chosen) ? chosen : (domains[0] as string));
      const username = invited?.username ?? (submitted.get('username') ?? '').trim();
      const again = (status: number, error: string) => form(status, { access: a, username, domain, error });

      if (!username) return again(400, 'Choose a username.');
      let jid: Jid;
      try {
        jid = server.accounts.checkJid(new Jid(username, domain));
      } catch (err) {
        if (err instanceof JidError || err instanceof StanzaError)
          return again(400, `That username cannot be used: ${err.message}.`);
        throw err;
      }
      const password = submitted.get('password') ?? '';
      if (password.length < cfg.minPasswordLength)
        return again(400, `The password must have at least ${cfg.minPasswordLength} characters.`);
      if (password !== submitted.get('password2')) return again(400, 'The two passwords differ; type them again.');
      const current = consent(server).current;
      if (current) {
        const documents = current.documents.map((d) => d.title).join(' and ');
        if (submitted.get('accept') !== 'yes')
          return again(400, `To create an account you must accept the ${documents}: tick the box after reading them.`);
        if (submitted.get('version') !== current.version)
          return again(
            409,
            `The ${documents} changed while you were registering: version ${current.version} is now in force. Please read it and accept it again.`,
          );
      }

      if (a.kind === 'invited' && !(await invitations(server).claim(a.token, jid)))
        return refused({
          kind: 'refused',
          status: 404,
          message: 'This invitation was used meanwhile or is not valid for that address. Ask for a new one.',
        });
      try {
        await server.accounts.create(jid, password);
      } catch (err) {
        if (a.kind === 'invited') await invitations(server).release(a.token);
        if (err instanceof StanzaError) return again(err.condition === 'conflict' ? 409 : 400, err.message);
        throw err;
      }
      if (current)
        await consent(server).accept(jid, a.kind === 'invited' ? 'invitation' : 'web-registration', current.version);
      return htmlPage(200, 'Your account is ready', welcome(jid));
    });
  },
};

function utc(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function welcome(jid: Jid): string {
  return [
    para(`Your account ${jid} has been created.`),
    para(
      `To log in, add an existing account in an XMPP client (for example Conversations, Monal, Gajim or Dino) with the address ${jid} and the password you chose.`,
    ),
  ].join('\n');
}
