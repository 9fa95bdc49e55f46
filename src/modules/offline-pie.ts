import type { Xep0227Mapping } from '../privacy/registry.js';
import { key, NS_PIE } from '../privacy/xep0227/names.js';
import type { Db } from '../storage/db.js';
import { type XmlElement, x } from '../xml/element.js';
import type { Jid } from '../xml/jid.js';

/**
 * Offline messages in XEP-0227 (§4.5): `<offline-messages/>` holds each stored message, oldest first,
 * with the XEP-0203 delay offline storage stamped on it, which is also how the arrival time travels.
 */

const NS_CLIENT = 'jabber:client';
const NS_DELAY = 'urn:xmpp:delay';

export function offlineXep0227(
  messages: (user: Jid) => AsyncIterable<XmlElement>,
  insert: (user: Jid, storedAt: number, stanza: string, tx: Db) => Promise<void>,
): Xep0227Mapping {
  return {
    container: key(NS_PIE, 'offline-messages'),
    elements: [key(NS_CLIENT, 'message')],
    async *export(user) {
      for await (const message of messages(user)) {
        // Inside <offline-messages/> an element without its own namespace would be in XEP-0227's.
        if (message.attrs.xmlns === undefined) message.attrs.xmlns = NS_CLIENT;
        yield message;
      }
    },
    async import(user, message, { tx }) {
      const delays = message.getChildren('delay', NS_DELAY);
      // Our own stamp (from the user's server) says when it arrived; another server's delay says when it was sent.
      const stamp = (delays.find((d) => d.attrs.from === user.domain) ?? delays[0])?.attrs.stamp;
      let storedAt = stamp === undefined ? Number.NaN : Date.parse(stamp);
      if (Number.isNaN(storedAt)) {
        // Without an arrival time, it arrives now: its retention starts with the import.
        storedAt = Date.now();
        message.append(
          x(
            'delay',
            { xmlns: NS_DELAY, from: user.domain, stamp: new Date(storedAt).toISOString() },
            'Offline Storage',
          ),
        );
      }
      await insert(user, storedAt, message.toString(), tx);
    },
  };
}
