import type { UnauthenticatedIqEvent } from '../c2s/stream.js';
import { AttemptLimiter } from '../core/attempt-limiter.js';
import { errorReply, StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import { acceptanceProblem, termsFields } from '../privacy/consent/form.js';
import { consent, REGISTER_PATH } from '../privacy/consent/service.js';
import { requestErasure } from '../privacy/erasure.js';
import { buildForm, readSubmittedForm } from '../xml/dataform.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid, JidError } from '../xml/jid.js';
import { invitations } from './invite/index.js';
import { ACCEPTED_BEFORE_LOGIN } from './tos.js';

/**
 * XEP-0077 in-band registration: creating an account before authentication (off unless
 * `register.enabled`), and for logged-in users changing the password and removing the account: with
 * the password, that requests erasure (src/privacy/erasure.ts), after the grace period like `lethe user erase`.
 */
const NS = 'jabber:iq:register';
const NS_FEATURE = 'http://jabber.org/features/iq-register';

function registrationForm(server: Server, invitedAs: string | undefined): XmlElement {
  const policy = consent(server).current;
  return buildForm(
    'form',
    [
      { var: 'FORM_TYPE', type: 'hidden', values: [NS] },
      {
        var: 'username',
        type: 'text-single',
        label: 'Username',
        required: true,
        ...(invitedAs !== undefined && { values: [invitedAs], desc: 'The invitation is for this name.' }),
      },
      { var: 'password', type: 'text-private', label: 'Password', required: true },
      ...(policy ? termsFields(server, policy) : []),
    ],
    {
      title: 'Create an account',
      instructions: policy
        ? 'Choose a username and a password, and read and accept the terms of use.'
        : 'Choose a username and a password.',
    },
  );
}

/** The invitation this stream presented before registering (src/modules/invite), if any. */
function invitationOf(state: Map<string, unknown>): { token: string; username?: string } | undefined {
  return state.get('invite') as { token: string; username?: string } | undefined;
}

/** Username and password from a data form or the legacy fields (clients use both). */
function submittedCredentials(query: XmlElement): { username?: string; password?: string } {
  const form = readSubmittedForm(query);
  if (form) return { username: form.get('username')?.[0], password: form.get('password')?.[0] };
  return { username: query.getChildText('username'), password: query.getChildText('password') };
}

const NS_CANCEL = 'jabber:iq:register:cancel';

function cancellationForm(): XmlElement {
  return buildForm(
    'form',
    [
      { var: 'FORM_TYPE', type: 'hidden', values: [NS_CANCEL] },
      { var: 'username', type: 'text-single', label: 'Username' },
      { var: 'password', type: 'text-private', label: 'Password', required: true },
    ],
    {
      title: 'Delete your account',
      instructions:
        'Confirm with your password. The account is locked at once and erased, with everything the server keeps for you, when the grace period ends.',
    },
  );
}

/**
 * A removal request (§3.2) and the password confirming it: `<remove/>` with the legacy `<password/>`,
 * or the returned cancellation form, with or without `<remove/>`. Undefined when the query is no removal.
 */
function removal(query: XmlElement): { username?: string; password?: string } | undefined {
  const form = readSubmittedForm(query);
  if (form?.get('FORM_TYPE')?.[0] === NS_CANCEL)
    return { username: form.get('username')?.[0], password: form.get('password')?.[0] };
  if (!query.getChild('remove')) return undefined;
  if (form) return { username: form.get('username')?.[0], password: form.get('password')?.[0] };
  return { username: query.getChildText('username'), password: query.getChildText('password') };
}

/** The form's example gives the bare JID as username, legacy clients the localpart. */
function sameAccount(username: string, account: Jid): boolean {
  const name = username.toLowerCase();
  return name === account.local || name === account.bareString();
}

export const registerModule: LetheModule = {
  name: 'register',
  features: [NS],
  load(server: Server) {
    const cfg = server.config.register;
    const limiter = new AttemptLimiter(cfg.attemptsPerAddress, cfg.windowSeconds * 1000);
    const encryptionOk = (secure: boolean) => secure || !server.config.c2s.requireEncryption;

    server.hooks.on<{ features: XmlElement; authenticated: boolean; secure: boolean }>('stream-features', (ev) => {
      if (cfg.enabled && !ev.authenticated && encryptionOk(ev.secure)) ev.features.c('register', { xmlns: NS_FEATURE });
    });

    server.hooks.on<UnauthenticatedIqEvent>(`c2s/unauthenticated-iq/${NS}:query`, async (ev) => {
      const answer = (payload?: XmlElement) => ev.reply(x('iq', { type: 'result', id: ev.stanza.attrs.id }, payload));
      try {
        const invitation = invitationOf(ev.state);
        if (!cfg.enabled && !invitation)
          throw new StanzaError(
            'service-unavailable',
            'in-band registration is disabled here; ask the operator for an invitation',
          );
        if (!encryptionOk(ev.secure)) throw new StanzaError('not-acceptable', 'register after STARTTLS');
        const query = ev.stanza.getChild('query', NS) as XmlElement;
        const policy = consent(server).current;
        if (ev.stanza.attrs.type === 'get') {
          // With terms to accept, only the form can carry the acceptance: legacy fields are left out.
          answer(
            policy
              ? x('query', { xmlns: NS }, registrationForm(server, invitation?.username))
              : x(
                  'query',
                  { xmlns: NS },
                  x('instructions', {}, 'Choose a username and a password.'),
                  x('username'),
                  x('password'),
                  registrationForm(server, invitation?.username),
                ),
          );
          return true;
        }
        if (ev.stanza.attrs.type !== 'set') throw new StanzaError('bad-request');
        if (ev.peer && !limiter.allow(ev.peer))
          throw new StanzaError('resource-constraint', 'too many registration attempts from your address; try later');
        const { username, password } = submittedCredentials(query);
        if (!username || !password) throw new StanzaError('not-acceptable', 'a username and a password are required');
        if (password.length < cfg.minPasswordLength)
          throw new StanzaError(
            'not-acceptable',
            `the password must have at least ${cfg.minPasswordLength} characters`,
          );
        if (policy && ev.state.get(ACCEPTED_BEFORE_LOGIN) !== policy.version) {
          const form = readSubmittedForm(query);
          const problem = form
            ? acceptanceProblem(form, policy)
            : `this server asks you to accept its terms of service and privacy policy (version ${policy.version}): use a client that shows the registration form or the terms command (urn:xmpp:tos:0)${webHint(server)}`;
          if (problem) throw new StanzaError('not-acceptable', problem);
        }
        let jid: Jid;
        try {
          jid = server.accounts.checkJid(new Jid(username, ev.host));
        } catch (err) {
          if (err instanceof JidError) throw new StanzaError('not-acceptable', `invalid username: ${err.message}`);
          throw err;
        }
        if (invitation?.username !== undefined && invitation.username !== jid.local)
          throw new StanzaError('not-allowed', `the invitation is for the name ${invitation.username}`);
        if (invitation && !(await invitations(server).claim(invitation.token, jid)))
          throw new StanzaError('not-allowed', 'the invitation was used or has expired meanwhile');
        try {
          await server.accounts.create(jid, password);
        } catch (err) {
          if (invitation) await invitations(server).release(invitation.token);
          throw err;
        }
        if (invitation) ev.state.delete('invite');
        if (policy)
          await consent(server).accept(jid, invitation ? 'invitation' : 'in-band-registration', policy.version);
        answer();
      } catch (err) {
        if (!(err instanceof StanzaError)) throw err;
        ev.reply(errorIq(ev.stanza, err));
      }
      return true;
    });

    const registered = ({ stanza, from }: StanzaEvent) => {
      server.router.reply(stanza, x('query', { xmlns: NS }, x('registered'), x('username', {}, from.local)));
      return true;
    };
    const change = async ({ stanza, from }: StanzaEvent) => {
      const query = stanza.getChild('query', NS) as XmlElement;
      const account = from.bare;
      const removing = removal(query);
      if (removing) {
        if (!cfg.allowRemove) throw new StanzaError('not-allowed', 'accounts cannot be removed in-band here');
        if (!removing.password) {
          // §3.2: a deployment that needs more before cancelling returns a form in the error.
          const reply = errorReply(stanza, new StanzaError('not-authorized', 'confirm with your password', 'modify'));
          reply.setAttr('from', reply.attrs.from ?? account.bareString());
          reply.append(x('query', { xmlns: NS }, cancellationForm()));
          await server.router.route(reply);
          return true;
        }
        if (removing.username && !sameAccount(removing.username, account))
          throw new StanzaError('not-authorized', 'you can only delete your own account');
        if (!(await server.accounts.checkPassword(account, removing.password)))
          throw new StanzaError('not-authorized', 'wrong password');
        // §3.2: answer first; the request then locks the account and ends its sessions.
        server.router.reply(stanza);
        await requestErasure(server, account, { by: account.bareString(), reason: 'asked in-band (XEP-0077)' });
        return true;
      }
      if (!cfg.allowPasswordChange) throw new StanzaError('not-allowed', 'passwords cannot be changed in-band here');
      const { username, password } = submittedCredentials(query);
      if (!password) throw new StanzaError('bad-request', 'no new password given');
      if (username && username.toLowerCase() !== account.local)
        throw new StanzaError('not-authorized', 'you can only change your own password');
      if (password.length < cfg.minPasswordLength)
        throw new StanzaError('not-acceptable', `the password must have at least ${cfg.minPasswordLength} characters`);
      await server.accounts.setPassword(account, password);
      server.router.reply(stanza);
      return true;
    };
    // A logged-in client addresses its server with no `to` (self) or with the domain (host).
    for (const target of ['self', 'host']) {
      server.hooks.on(`iq-get/${target}/${NS}:query`, registered);
      server.hooks.on(`iq-set/${target}/${NS}:query`, change);
    }
  },
};

function webHint(server: Server): string {
  return server.http.listening ? `, or register at ${server.http.url(REGISTER_PATH)}` : '';
}

function errorIq(iq: XmlElement, err: StanzaError): XmlElement {
  const error = x('error', { type: err.type }, x(err.condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }));
  if (err.text) error.c('text', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas', 'xml:lang': 'en' }).t(err.text);
  return x('iq', { type: 'error', id: iq.attrs.id }, error);
}
