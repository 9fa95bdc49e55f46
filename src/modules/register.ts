import type { UnauthenticatedIqEvent } from '../c2s/stream.js';
import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import { buildForm, readSubmittedForm } from '../xml/dataform.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid, JidError } from '../xml/jid.js';

/**
 * XEP-0077 in-band registration: creating an account before authentication (off unless
 * `register.enabled`), and for logged-in users changing the password and removing the account,
 * which erases it through the privacy registry like `lethe user remove`.
 */
const NS = 'jabber:iq:register';
const NS_FEATURE = 'http://jabber.org/features/iq-register';

/**
 * Attempts per peer address in a window. Kept in memory only and dropped when the window passes:
 * addresses are personal data and must never reach storage.
 */
class AttemptLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  allow(peer: string, now = Date.now()): boolean {
    if (this.windows.size > 10_000) for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
    const w = this.windows.get(peer);
    if (!w || w.resetAt <= now) {
      this.windows.set(peer, { count: 1, resetAt: now + this.windowMs });
      return true;
    }
    w.count++;
    return w.count <= this.limit;
  }
}

function registrationForm(): XmlElement {
  return buildForm(
    'form',
    [
      { var: 'FORM_TYPE', type: 'hidden', values: [NS] },
      { var: 'username', type: 'text-single', label: 'Username', required: true },
      { var: 'password', type: 'text-private', label: 'Password', required: true },
    ],
    { title: 'Create an account', instructions: 'Choose a username and a password.' },
  );
}

/** Username and password from a data form or the legacy fields (clients use both). */
function submittedCredentials(query: XmlElement): { username?: string; password?: string } {
  const form = readSubmittedForm(query);
  if (form) return { username: form.get('username')?.[0], password: form.get('password')?.[0] };
  return { username: query.getChildText('username'), password: query.getChildText('password') };
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
        if (!cfg.enabled) throw new StanzaError('service-unavailable', 'in-band registration is disabled here');
        if (!encryptionOk(ev.secure)) throw new StanzaError('not-acceptable', 'register after STARTTLS');
        const query = ev.stanza.getChild('query', NS) as XmlElement;
        if (ev.stanza.attrs.type === 'get') {
          answer(
            x(
              'query',
              { xmlns: NS },
              x('instructions', {}, 'Choose a username and a password.'),
              x('username'),
              x('password'),
              registrationForm(),
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
        let jid: Jid;
        try {
          jid = server.accounts.checkJid(new Jid(username, ev.host));
        } catch (err) {
          if (err instanceof JidError) throw new StanzaError('not-acceptable', `invalid username: ${err.message}`);
          throw err;
        }
        await server.accounts.create(jid, password);
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
      if (query.getChild('remove')) {
        if (!cfg.allowRemove) throw new StanzaError('not-allowed', 'accounts cannot be removed in-band here');
        if (query.elements().length !== 1) throw new StanzaError('bad-request', 'remove must be the only child');
        // XEP-0077 §3.2: answer first, then end every session of the account (accounts.remove does).
        server.router.reply(stanza);
        await server.accounts.remove(account);
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

function errorIq(iq: XmlElement, err: StanzaError): XmlElement {
  const error = x('error', { type: err.type }, x(err.condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }));
  if (err.text) error.c('text', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas', 'xml:lang': 'en' }).t(err.text);
  return x('iq', { type: 'error', id: iq.attrs.id }, error);
}
