import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import { type XmlElement, x } from '../xml/element.js';
import type { Jid } from '../xml/jid.js';
import { rosterStore } from './roster/store.js';
import { hasFrom } from './roster/subscription.js';

/**
 * Service discovery (XEP-0030) for the server and, on their behalf, for its accounts.
 *
 * What other modules contribute, by hook (the event shapes are the exported interfaces below):
 *
 * - `disco-info/host` ({@link HostInfoEvent}): the server's own info, for a hosted domain. Handlers
 *   push identities, features that depend on configuration (static ones go in the module's
 *   `features`) and XEP-0128 forms (`jabber:x:data` with a hidden FORM_TYPE field, e.g. the
 *   XEP-0157 contact addresses or the `urn:xmpp:data-policy:0` form) onto `event.info`, and return
 *   nothing so that every handler runs. They must be synchronous: the entity-capabilities hash
 *   (XEP-0115) over this info is computed while the stream features are written.
 * - `disco-items/host` ({@link ItemsEvent}): services the server lists (MUC, upload, pubsub).
 * - `disco-info/account` ({@link AccountInfoEvent}): what an account supports, as the server answers
 *   for it (PEP, MAM, last activity); may be async.
 * - `disco-items/account` ({@link ItemsEvent}): items of an account (PEP nodes); may be async.
 * - `disco-info-node/host`, `disco-items-node/host`, `disco-info-node/account`,
 *   `disco-items-node/account` ({@link NodeEvent}): a request with a `node`. The handler that owns
 *   the node fills `event.query` and returns true; a node nobody claims is `item-not-found`.
 *
 * Accounts are answered only to the account itself and to entities the account shares its presence
 * with (subscription `from` or `both`), as XEP-0030 §8 requires against directory harvesting: to
 * anyone else an account that exists looks exactly like one that does not.
 */

export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
export const NS_DATA = 'jabber:x:data';

export interface Identity {
  category: string;
  type: string;
  name?: string | undefined;
  lang?: string | undefined;
}

export interface DiscoInfo {
  identities: Identity[];
  features: string[];
  /** XEP-0128 extension forms. */
  forms: XmlElement[];
}

export interface DiscoItem {
  jid: string;
  node?: string | undefined;
  name?: string | undefined;
}

export interface HostInfoEvent {
  host: string;
  info: DiscoInfo;
}

export interface AccountInfoEvent {
  /** The bare JID asked about. */
  account: Jid;
  from: Jid;
  info: DiscoInfo;
}

export interface ItemsEvent {
  /** The server's domain or the account's bare JID. */
  to: Jid;
  from: Jid;
  items: DiscoItem[];
}

export interface NodeEvent {
  to: Jid;
  from: Jid;
  node: string;
  /** The reply's `<query/>` (node attribute already set), for the owner of the node to fill. */
  query: XmlElement;
}

/** A XEP-0004 result form with a hidden FORM_TYPE, as XEP-0128 extensions are built. */
export function extensionForm(
  formType: string,
  fields: { var: string; type?: string; values: string[] }[],
): XmlElement {
  const form = x('x', { xmlns: NS_DATA, type: 'result' });
  form.c('field', { var: 'FORM_TYPE', type: 'hidden' }).c('value').t(formType);
  for (const field of fields) {
    const el = form.c('field', { var: field.var, type: field.type });
    for (const value of field.values) el.c('value').t(value);
  }
  return form;
}

/** The server's disco#info for one of its domains: what disco#info answers and XEP-0115 hashes. */
export function hostInfo(server: Server, host: string): DiscoInfo {
  const info: DiscoInfo = {
    identities: [{ category: 'server', type: 'im', name: server.config.disco.name ?? undefined }],
    features: [...server.features],
    forms: [],
  };
  if (server.hooks.fire<HostInfoEvent>('disco-info/host', { host, info }) instanceof Promise)
    throw new Error('disco-info/host handlers must be synchronous');
  // A feature listed twice would make the XEP-0115 hash invalid for every client (§5.4).
  info.features = [...new Set(info.features)];
  return info;
}

export function renderInfo(info: DiscoInfo, query: XmlElement): XmlElement {
  for (const id of info.identities)
    query.c('identity', { category: id.category, type: id.type, name: id.name, 'xml:lang': id.lang });
  for (const feature of info.features) query.c('feature', { var: feature });
  // Forms may be shared by their contributors; a copy keeps each reply's tree its own.
  for (const form of info.forms) query.append(form.clone());
  return query;
}

function renderItems(items: DiscoItem[], query: XmlElement): XmlElement {
  for (const item of items) query.c('item', { jid: item.jid, node: item.node, name: item.name });
  return query;
}

/**
 * Whether `requester` may see what the server says on `account`'s behalf: the account itself, or an
 * entity the account shares its presence with (subscription `from` or `both` in the account's roster).
 */
export async function sharesPresenceWith(server: Server, account: Jid, requester: Jid): Promise<boolean> {
  const owner = account.bareString();
  const asker = requester.bareString();
  if (owner === asker) return true;
  const item = await rosterStore(server).item(owner, asker);
  return item !== undefined && hasFrom(item.subscription);
}

/** Self, or a presence subscriber of an account that exists (a stale roster row never counts). */
async function mayDiscover(server: Server, event: StanzaEvent): Promise<boolean> {
  const account = event.to.bare;
  if (!(await sharesPresenceWith(server, account, event.from))) return false;
  return account.bareString() === event.from.bareString() || server.accounts.exists(account);
}

function queryOf(event: StanzaEvent): XmlElement {
  return event.stanza.elements()[0] as XmlElement;
}

/** Offers a node request to the module that owns the node; nobody owning it is `item-not-found` (XEP-0030 §3.1). */
async function nodeRequest(server: Server, event: StanzaEvent, name: string, ns: string, node: string): Promise<true> {
  const query = x('query', { xmlns: ns, node });
  const handled = await server.hooks.fire<NodeEvent>(name, { to: event.to, from: event.from, node, query });
  if (!handled) throw new StanzaError('item-not-found', 'no such node');
  server.router.reply(event.stanza, query);
  return true;
}

async function hostInfoRequest(server: Server, event: StanzaEvent): Promise<true> {
  const node = queryOf(event).attrs.node;
  if (node !== undefined) return nodeRequest(server, event, 'disco-info-node/host', NS_DISCO_INFO, node);
  server.router.reply(
    event.stanza,
    renderInfo(hostInfo(server, event.to.domain), x('query', { xmlns: NS_DISCO_INFO })),
  );
  return true;
}

async function hostItemsRequest(server: Server, event: StanzaEvent): Promise<true> {
  const node = queryOf(event).attrs.node;
  if (node !== undefined) return nodeRequest(server, event, 'disco-items-node/host', NS_DISCO_ITEMS, node);
  const items: DiscoItem[] = [];
  await server.hooks.notify<ItemsEvent>('disco-items/host', { to: event.to, from: event.from, items });
  server.router.reply(event.stanza, renderItems(items, x('query', { xmlns: NS_DISCO_ITEMS })));
  return true;
}

async function accountInfoRequest(server: Server, event: StanzaEvent): Promise<true> {
  // XEP-0030 §8: the same `service-unavailable` for a missing account and for a stranger.
  if (!(await mayDiscover(server, event))) throw new StanzaError('service-unavailable');
  const node = queryOf(event).attrs.node;
  if (node !== undefined) return nodeRequest(server, event, 'disco-info-node/account', NS_DISCO_INFO, node);
  const info: DiscoInfo = {
    identities: [{ category: 'account', type: 'registered' }],
    features: [NS_DISCO_INFO, NS_DISCO_ITEMS],
    forms: [],
  };
  await server.hooks.notify<AccountInfoEvent>('disco-info/account', { account: event.to.bare, from: event.from, info });
  info.features = [...new Set(info.features)];
  server.router.reply(event.stanza, renderInfo(info, x('query', { xmlns: NS_DISCO_INFO })));
  return true;
}

async function accountItemsRequest(server: Server, event: StanzaEvent): Promise<true> {
  const node = queryOf(event).attrs.node;
  const query = x('query', { xmlns: NS_DISCO_ITEMS, node });
  // XEP-0030 §8: an empty list for a missing account and for a stranger, so neither can be told apart.
  if (!(await mayDiscover(server, event))) {
    server.router.reply(event.stanza, query);
    return true;
  }
  if (node !== undefined) return nodeRequest(server, event, 'disco-items-node/account', NS_DISCO_ITEMS, node);
  // Connected resources are not listed: contacts learn them from presence, and only the ones the user makes available.
  const items: DiscoItem[] = [];
  await server.hooks.notify<ItemsEvent>('disco-items/account', { to: event.to.bare, from: event.from, items });
  server.router.reply(event.stanza, renderItems(items, query));
  return true;
}

export const discoModule: LetheModule = {
  name: 'disco',
  features: [NS_DISCO_INFO, NS_DISCO_ITEMS],
  load(server) {
    const { hooks } = server;
    hooks.on(`iq-get/host/${NS_DISCO_INFO}:query`, (e: StanzaEvent) => hostInfoRequest(server, e));
    hooks.on(`iq-get/host/${NS_DISCO_ITEMS}:query`, (e: StanzaEvent) => hostItemsRequest(server, e));
    for (const target of ['self', 'bare']) {
      hooks.on(`iq-get/${target}/${NS_DISCO_INFO}:query`, (e: StanzaEvent) => accountInfoRequest(server, e));
      hooks.on(`iq-get/${target}/${NS_DISCO_ITEMS}:query`, (e: StanzaEvent) => accountItemsRequest(server, e));
    }
  },
};
