import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';

/**
 * Delivery to local accounts (RFC 6121 §8.5): messages to bare and full JIDs, and iq to full JIDs.
 * This is the per-message path: no database access while a recipient is online, and the stanza
 * is handed to each session as is, never copied.
 *
 * When no resource can take a message, `message/offline` fires with the original event; a handler
 * that stores it returns true. Otherwise chat and normal messages are answered `service-unavailable`.
 */

const unavailable = () => new StanzaError('service-unavailable');

/**
 * §8.5.2.1.1: chat and normal messages to the bare JID go to every available resource with this
 * priority, the highest among them; -1 (or lower) means none may have them. Carbons use it too, to
 * tell which resources got a message directly.
 */
export function topPriority(resources: ReadonlyMap<string, ClientSession>): number {
  let best = -1;
  for (const session of resources.values())
    if (session.presence !== undefined && session.priority > best) best = session.priority;
  return best;
}

function toBare(server: Server, event: StanzaEvent): boolean | Promise<boolean> {
  const { stanza } = event;
  const type = stanza.attrs.type;
  if (type === 'error') return true;
  // §8.5.2.1.1: a groupchat message to a user's bare JID is never delivered.
  if (type === 'groupchat') {
    server.router.reject(stanza, unavailable());
    return true;
  }
  const resources = server.sessions.byResource(event.to.bareString());
  if (resources) {
    if (type === 'headline') {
      // Every available resource with a non-negative priority.
      let sent = false;
      for (const session of resources.values())
        if (session.presence !== undefined && session.priority >= 0) {
          session.send(stanza);
          sent = true;
        }
      if (sent) return true;
    } else {
      // normal, chat and unknown types (treated as normal, RFC 6121 §5.2.2): the highest non-negative priority, all that tie.
      const best = topPriority(resources);
      if (best >= 0) {
        for (const session of resources.values())
          if (session.presence !== undefined && session.priority === best) session.send(stanza);
        return true;
      }
    }
    // Only connected resources, or negative priorities: as if none were available (§8.5.2.1).
    return offline(server, event);
  }
  return server.accounts.exists(event.to.bare).then((exists) => {
    if (exists) return offline(server, event);
    server.router.reject(stanza, unavailable());
    return true;
  });
}

/** §8.5.2.2: the offline module may take the message; if nobody does, chat and normal bounce. */
function offline(server: Server, event: StanzaEvent): boolean | Promise<boolean> {
  const finish = (handled: boolean): boolean => {
    const type = event.stanza.attrs.type;
    if (!handled && type !== 'headline') server.router.reject(event.stanza, unavailable());
    return true;
  };
  const handled = server.hooks.fire('message/offline', event);
  return handled instanceof Promise ? handled.then(finish) : finish(handled);
}

function toFull(server: Server, event: StanzaEvent): boolean | Promise<boolean> {
  const session = server.sessions.get(event.to.bareString(), event.to.resource);
  if (session) {
    session.send(event.stanza);
    return true;
  }
  // §8.5.3.2.1: no such resource.
  const type = event.stanza.attrs.type;
  if (type === 'groupchat') {
    server.router.reject(event.stanza, unavailable());
    return true;
  }
  if (type === 'headline' || type === 'error') return true;
  return toBare(server, event);
}

export const messageModule: LetheModule = {
  name: 'message',
  load(server) {
    const { hooks, sessions } = server;
    // Priority -1: delivery is the last word; carbons, archiving or blocking hook in before it.
    hooks.on('message/bare', (e: StanzaEvent) => toBare(server, e), -1);
    hooks.on('message/full', (e: StanzaEvent) => toFull(server, e), -1);
    // §8.5.3: an iq to a full JID goes to that session; without one the router answers service-unavailable.
    hooks.on(
      'iq/full',
      (e: StanzaEvent) => {
        const session = sessions.get(e.to.bareString(), e.to.resource);
        if (!session) return false;
        session.send(e.stanza);
        return true;
      },
      -1,
    );
  },
};
