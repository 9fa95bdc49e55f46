import type { Xep0227Mapping } from '../privacy/registry.js';
import { key } from '../privacy/xep0227/names.js';
import type { Db } from '../storage/db.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';

/**
 * The block list in XEP-0227. The XEP has no place for XEP-0191 block lists, only for privacy lists
 * (§4.8), and ejabberd keeps its block list as the privacy list "Blocked contacts": Lethe writes the
 * same, so ejabberd imports it, and reads it back, as well as a plain `<blocklist xmlns='urn:xmpp:blocking'/>`.
 */

const NS_PRIVACY = 'jabber:iq:privacy';
const NS_BLOCKING = 'urn:xmpp:blocking';
const LIST_NAME = 'Blocked contacts';

export function blocklistXep0227(
  items: (user: Jid) => AsyncIterable<{ jid: string }>,
  block: (user: Jid, jid: string, tx: Db) => Promise<void>,
): Xep0227Mapping {
  return {
    elements: [key(NS_PRIVACY, 'query'), key(NS_BLOCKING, 'blocklist')],
    async *export(user) {
      const list = x('list', { name: LIST_NAME });
      let order = 0;
      for await (const { jid } of items(user))
        list.c('item', { type: 'jid', value: jid, action: 'deny', order: String(order++) });
      if (order > 0) yield x('query', { xmlns: NS_PRIVACY }, x('default', { name: LIST_NAME }), list);
    },
    async import(user, el, { tx, warn }) {
      const blockedJid = (value: string | undefined): string => {
        const jid = value === undefined ? undefined : Jid.tryParse(value);
        if (!jid) throw new Error(`${user}: blocked address ${JSON.stringify(value ?? '')} is not a valid JID`);
        return jid.toString();
      };
      if (el.localName === 'blocklist') {
        for (const item of el.getChildren('item', NS_BLOCKING)) await block(user, blockedJid(item.attrs.jid), tx);
        return;
      }
      // Only what a block list can say: the default list's (or ejabberd's named list's) items that deny a JID everything.
      const lists = el.getChildren('list', NS_PRIVACY);
      const name = el.getChild('default', NS_PRIVACY)?.attrs.name ?? LIST_NAME;
      for (const list of lists) {
        if (list.attrs.name !== name) {
          warn(`${user}: privacy list ${JSON.stringify(list.attrs.name)} skipped (Lethe has block lists only)`);
          continue;
        }
        for (const item of list.getChildren('item', NS_PRIVACY)) {
          if (blocksEverything(item)) await block(user, blockedJid(item.attrs.value), tx);
          else warn(`${user}: privacy list item ${item.toString()} skipped (not a plain block of an address)`);
        }
      }
    },
  };
}

function blocksEverything(item: XmlElement): boolean {
  return item.attrs.type === 'jid' && item.attrs.action === 'deny' && item.elements().length === 0;
}
