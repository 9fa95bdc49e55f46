import { randomUUID } from 'node:crypto';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { XmlElement, XmlNode } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import type { AccountInfoEvent } from './disco.js';

/**
 * Unique and stable stanza ids (XEP-0359). Every message delivered to a local account gets
 * `<stanza-id by='<the account>' id='<random UUID>'/>` before anything else handles it, so that
 * what the account's clients, offline storage, stream management redelivery and any archive see
 * carries the same id. A stanza-id already in the message that names a local account or one of our
 * domains as `by` did not come from us and is removed (§6: the entity that would set that `by`
 * must delete it). Groupchat messages get no id from the account: there the room assigns them.
 */

export const NS_SID = 'urn:xmpp:sid:0';

/** Ids of messages local clients sent, by stanza: weak, so nothing outlives the message. */
const sentIds = new WeakMap<XmlElement, string>();

/**
 * The id under which the sender's own account keeps a message one of its clients sent: made on first
 * use, so the archive (XEP-0313) and the sent carbons (XEP-0280) of one message name the same id. It is
 * never put in the message itself: the recipient has no access to the sender's archive (XEP-0313 §3).
 */
export function sentStanzaId(stanza: XmlElement): string {
  let id = sentIds.get(stanza);
  if (id === undefined) {
    id = randomUUID();
    sentIds.set(stanza, id);
  }
  return id;
}

function stamp(server: Server, { stanza, to }: StanzaEvent): void {
  const type = stanza.attrs.type;
  if (type === 'error') return;
  // Backwards over the children, without copying them: this runs for every message.
  for (let i = stanza.children.length - 1; i >= 0; i--) {
    const child = stanza.children[i] as XmlNode;
    if (typeof child === 'string' || child.localName !== 'stanza-id' || child.xmlns !== NS_SID) continue;
    const by = Jid.tryParse(child.attrs.by);
    if (by && server.router.isLocal(by.domain)) stanza.remove(child);
  }
  if (type !== 'groupchat') stanza.c('stanza-id', { xmlns: NS_SID, by: to.bareString(), id: randomUUID() });
}

export const stanzaIdModule: LetheModule = {
  name: 'stanza-id',
  load(server) {
    const { hooks } = server;
    // Before every other handler of messages to local accounts (delivery is at -1).
    hooks.on('message/bare', (e: StanzaEvent) => stamp(server, e), 100);
    hooks.on('message/full', (e: StanzaEvent) => stamp(server, e), 100);
    // §8: the account, which is what `by` names, advertises that it follows these rules.
    hooks.on('disco-info/account', (e: AccountInfoEvent) => {
      e.info.features.push(NS_SID);
    });
  },
};
