import { randomUUID } from 'node:crypto';
import type { Server } from '../../core/server.js';
import type { Xep0227Mapping } from '../../privacy/registry.js';
import { key } from '../../privacy/xep0227/names.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import { PURPOSE } from './archiver.js';

/**
 * The archive in XEP-0227, the way Prosody exports it: `<archive xmlns='urn:xmpp:pie:0#mam'/>` holding
 * each message as a MAM result (`<result id><forwarded><delay stamp/><message/></forwarded></result>`),
 * oldest first. Importing keeps the archive ids and times; direction and peer follow from the
 * message's addresses. It does not turn archiving on: the preference, and any consent to it, stays
 * the user's to give here.
 */

export const NS_PIE_MAM = 'urn:xmpp:pie:0#mam';
const NS_MAM = 'urn:xmpp:mam:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_DELAY = 'urn:xmpp:delay';

export interface ArchivedMessage {
  id: string;
  ts: number;
  message: XmlElement;
}

export function archiveXep0227(
  server: Server,
  messages: (user: Jid) => AsyncIterable<ArchivedMessage>,
): Xep0227Mapping {
  return {
    container: key(NS_PIE_MAM, 'archive'),
    elements: [key(NS_MAM, 'result')],
    async *export(user) {
      for await (const { id, ts, message } of messages(user))
        yield x(
          'result',
          { xmlns: NS_MAM, id },
          x(
            'forwarded',
            { xmlns: NS_FORWARD },
            x('delay', { xmlns: NS_DELAY, stamp: new Date(ts).toISOString() }),
            message,
          ),
        );
    },
    async import(user, result, { tx, warn }) {
      const forwarded = result.getChild('forwarded', NS_FORWARD);
      const message = forwarded?.getChild('message');
      const ts = Date.parse(forwarded?.getChild('delay', NS_DELAY)?.attrs.stamp ?? '');
      const from = Jid.tryParse(message?.attrs.from);
      const to = Jid.tryParse(message?.attrs.to);
      if (!message || Number.isNaN(ts) || !from || !to) {
        warn(`${user}: an archived message without a message, a time or both addresses was left out`);
        return;
      }
      const out = from.bare.equals(user.bare);
      const peer = out ? to : from;
      message.attrs.xmlns = 'jabber:client';
      const sealed = await server.keys.sealFor(user, message.toString(), PURPOSE, tx);
      // The same id twice (a merge into an archive that has it) keeps the copy already here.
      await tx.run(
        `INSERT OR IGNORE INTO mam_messages (owner, id, ts, peer, peer_resource, direction, sealed)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
        [
          user.bareString(),
          result.attrs.id ?? randomUUID(),
          ts,
          peer.bareString(),
          peer.resource,
          out ? 'out' : 'in',
          sealed,
        ],
      );
    },
  };
}
