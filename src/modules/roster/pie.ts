import type { Xep0227ImportContext, Xep0227Mapping } from '../../privacy/registry.js';
import { key } from '../../privacy/xep0227/names.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import type { RosterItem, SubscriptionRequest } from './store.js';
import type { Subscription } from './subscription.js';

/**
 * Rosters and pending subscription requests in XEP-0227: the roster as a `jabber:iq:roster` query
 * (§4.4, RFC 6121's own format), each request as the `<presence type='subscribe'/>` that made it (§4.9).
 */

const NS_ROSTER = 'jabber:iq:roster';
const NS_CLIENT = 'jabber:client';
const NS_NICK = 'http://jabber.org/protocol/nick';
const SUBSCRIPTIONS: readonly string[] = ['none', 'to', 'from', 'both'] satisfies Subscription[];

/** A contact's bare JID from an import, or an error that names the user and what is wrong. */
function contactJid(user: Jid, value: string | undefined, what: string): Jid {
  const jid = value === undefined ? undefined : Jid.tryParse(value);
  if (!jid) throw new Error(`${user}: ${what} ${JSON.stringify(value ?? '')} is not a valid JID`);
  return jid;
}

export function rosterXep0227(
  items: (user: Jid) => AsyncIterable<RosterItem>,
  forget: (owner: string) => void,
): Xep0227Mapping {
  return {
    elements: [key(NS_ROSTER, 'query')],
    async *export(user) {
      const query = x('query', { xmlns: NS_ROSTER });
      for await (const item of items(user)) {
        const el = query.c('item', {
          jid: item.jid,
          name: item.name,
          subscription: item.subscription,
          ask: item.ask ? 'subscribe' : undefined,
          approved: item.approved ? 'true' : undefined,
        });
        for (const group of item.groups) el.c('group').t(group);
      }
      if (query.children.length > 0) yield query;
    },
    async import(user, query, ctx) {
      const owner = user.bareString();
      for (const el of query.getChildren('item', NS_ROSTER)) {
        const item = rosterItem(user, el, ctx);
        if (!item) continue;
        // With --merge the document's item wins over what the account had for that contact.
        await ctx.tx.run(
          `INSERT INTO roster_items (owner, contact, name, subscription, ask, approved, groups) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
             ask = excluded.ask, approved = excluded.approved, groups = excluded.groups`,
          [
            owner,
            item.jid,
            item.name ?? null,
            item.subscription,
            item.ask ? 1 : 0,
            item.approved ? 1 : 0,
            JSON.stringify(item.groups),
          ],
        );
      }
      // A new version, so that clients holding a cached roster fetch this one.
      await ctx.tx.run(
        `INSERT INTO roster_versions (owner, version) VALUES (?, 1)
         ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1`,
        [owner],
      );
      forget(owner);
    },
  };
}

function rosterItem(user: Jid, el: XmlElement, ctx: Xep0227ImportContext): RosterItem | undefined {
  const jid = contactJid(user, el.attrs.jid, 'roster item');
  if (jid.resource || jid.bareString() === user.bareString()) {
    ctx.warn(`${user}: roster item ${jid} skipped (a roster holds other accounts' bare JIDs)`);
    return undefined;
  }
  const subscription = (el.attrs.subscription ?? 'none') as Subscription;
  if (!SUBSCRIPTIONS.includes(subscription))
    throw new Error(`${user}: roster item ${jid} has subscription ${JSON.stringify(subscription)}`);
  const groups = [...new Set(el.getChildren('group', NS_ROSTER).map((g) => g.text()))].filter((g) => g !== '');
  return {
    jid: jid.toString(),
    name: el.attrs.name || undefined,
    subscription,
    ask: el.attrs.ask === 'subscribe',
    approved: el.attrs.approved === 'true' || el.attrs.approved === '1',
    groups,
  };
}

export function requestsXep0227(
  requests: (user: Jid) => AsyncIterable<{ from: string } & SubscriptionRequest>,
): Xep0227Mapping {
  return {
    elements: [key(NS_CLIENT, 'presence')],
    async *export(user) {
      for await (const r of requests(user))
        yield x(
          'presence',
          { xmlns: NS_CLIENT, type: 'subscribe', from: r.from },
          r.status === undefined ? undefined : x('status', {}, r.status),
          r.nick === undefined ? undefined : x('nick', { xmlns: NS_NICK }, r.nick),
        );
    },
    async import(user, presence, { tx, warn }) {
      if (presence.attrs.type !== 'subscribe')
        return warn(`${user}: a <presence/> of type ${presence.attrs.type ?? 'available'} skipped`);
      const from = contactJid(user, presence.attrs.from, 'subscription request from');
      await tx.run(
        `INSERT INTO roster_requests (owner, contact, status, nick) VALUES (?, ?, ?, ?)
         ON CONFLICT (owner, contact) DO UPDATE SET status = excluded.status, nick = excluded.nick`,
        [
          user.bareString(),
          from.bareString(),
          presence.getChildText('status', NS_CLIENT) ?? null,
          presence.getChildText('nick', NS_NICK) ?? null,
        ],
      );
    },
  };
}
