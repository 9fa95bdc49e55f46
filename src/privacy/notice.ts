import { randomUUID } from 'node:crypto';
import type { Server } from '../core/server.js';
import { type XmlElement, x } from '../xml/element.js';
import type { Jid } from '../xml/jid.js';

/** Server notices: plain messages from the server's domain to a user, about what happens to their account. */

function notice(to: Jid, text: string): XmlElement {
  return x(
    'message',
    // The namespace is explicit: stored offline and exported (XEP-0227), the message stands on its own.
    { xmlns: 'jabber:client', from: to.domain, to: to.toString(), type: 'normal', id: randomUUID() },
    x('subject', {}, 'About your account'),
    x('body', {}, text),
  );
}

/**
 * Tells the user through the router: their online sessions get it, otherwise offline storage keeps it
 * for their next login. Only for an active account: a locked one can neither log in nor receive.
 */
export async function tellUser(server: Server, jid: Jid, text: string): Promise<void> {
  if (!(await server.accounts.exists(jid))) return;
  await server.router.route(notice(jid.bare, text));
}

/** Straight to each session of the account, for the moment it is being locked (and routing would refuse it). */
export function tellSessions(server: Server, jid: Jid, text: string): number {
  const sessions = server.sessions.resources(jid.bareString());
  // <no-store/>: what the closing session leaves unacknowledged must not be kept offline (XEP-0334), for an account being erased.
  for (const session of sessions)
    session.send(notice(session.jid, text).append(x('no-store', { xmlns: 'urn:xmpp:hints' })));
  return sessions.length;
}
