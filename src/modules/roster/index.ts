import { randomUUID } from 'node:crypto';
import type { StreamFeaturesEvent } from '../../c2s/stream.js';
import { StanzaError } from '../../core/errors.js';
import type { LetheModule } from '../../core/module.js';
import type { StanzaEvent } from '../../core/router.js';
import type { Server } from '../../core/server.js';
import type { ClientSession } from '../../core/session.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import { newItem, openRosterStore, type RosterItem, type RosterStore, rosterMigrations } from './store.js';
import { cancelSubscriptions } from './subscription.js';

/**
 * jabber:iq:roster (RFC 6121 §2): roster get, set and remove, roster pushes to interested resources,
 * and roster versioning (XEP-0237) with the roster's change counter as version.
 */

const NS_ROSTER = 'jabber:iq:roster';
const NS_ROSTERVER = 'urn:xmpp:features:rosterver';

// Server-configured limits of RFC 6121 §2.3.3, generous for people and tight enough for abuse.
const MAX_NAME_BYTES = 1024;
const MAX_GROUP_BYTES = 1024;
const MAX_GROUPS = 100;

function itemElement(item: RosterItem): XmlElement {
  const el = x('item', {
    jid: item.jid,
    name: item.name,
    subscription: item.subscription,
    ask: item.ask ? 'subscribe' : undefined,
    approved: item.approved ? 'true' : undefined,
  });
  for (const group of item.groups) el.c('group').t(group);
  return el;
}

/** §2.1.6: a push to every resource that asked for the roster, each its own iq (stream management may keep it). */
function push(server: Server, owner: string, contact: string, item: RosterItem | undefined, version: number): void {
  for (const session of server.sessions.resources(owner)) {
    if (!session.interested) continue;
    const query = x('query', { xmlns: NS_ROSTER, ver: String(version) });
    query.append(item ? itemElement(item) : x('item', { jid: contact, subscription: 'remove' }));
    session.send(x('iq', { xmlns: 'jabber:client', type: 'set', id: randomUUID(), to: session.jid.toString() }, query));
  }
}

async function rosterGet(server: Server, store: RosterStore, event: StanzaEvent): Promise<boolean> {
  const query = event.stanza.elements()[0] as XmlElement;
  if (query.getChild('item')) throw new StanzaError('bad-request', 'a roster get carries no items');
  const roster = await store.get(event.from.bareString());
  const session = event.origin as ClientSession;
  session.interested = true;
  const ver = query.attrs.ver;
  const current = String(roster.version);
  // XEP-0237: an up-to-date cache gets an empty result; anything else (including ver='') the whole roster.
  if (ver === current) {
    server.router.reply(event.stanza);
    return true;
  }
  const result = x('query', { xmlns: NS_ROSTER, ver: ver === undefined ? undefined : current });
  for (const item of roster.items.values()) result.append(itemElement(item));
  server.router.reply(event.stanza, result);
  return true;
}

function checkName(name: string | undefined): string | undefined {
  if (name === undefined || name === '') return undefined;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw new StanzaError('not-acceptable', `the name is longer than ${MAX_NAME_BYTES} bytes`);
  return name;
}

function checkGroups(item: XmlElement): string[] {
  const groups: string[] = [];
  for (const el of item.getChildren('group', NS_ROSTER)) {
    const group = el.text();
    if (group === '') throw new StanzaError('not-acceptable', 'a group name must not be empty');
    if (Buffer.byteLength(group) > MAX_GROUP_BYTES)
      throw new StanzaError('not-acceptable', `a group name is longer than ${MAX_GROUP_BYTES} bytes`);
    if (groups.includes(group)) throw new StanzaError('bad-request', `the group ${group} is listed twice`);
    groups.push(group);
  }
  if (groups.length > MAX_GROUPS)
    throw new StanzaError('not-acceptable', `an item may be in at most ${MAX_GROUPS} groups`);
  return groups;
}

async function rosterSet(server: Server, store: RosterStore, event: StanzaEvent): Promise<boolean> {
  const query = event.stanza.elements()[0] as XmlElement;
  const items = query.getChildren('item', NS_ROSTER);
  if (items.length !== 1) throw new StanzaError('bad-request', 'a roster set carries exactly one item');
  const el = items[0] as XmlElement;
  if (el.attrs.jid === undefined) throw new StanzaError('bad-request', 'the item has no jid');
  const contact = Jid.tryParse(el.attrs.jid);
  if (!contact) throw new StanzaError('jid-malformed', 'the item’s jid is not a valid JID');
  // Subscriptions are between bare JIDs (§3), so an item with a resource could never be subscribed.
  if (contact.resource) throw new StanzaError('bad-request', 'roster items are bare JIDs, without a resource');
  const owner = event.from.bareString();
  const jid = contact.toString();
  if (jid === owner) throw new StanzaError('not-allowed', 'you cannot add yourself to your roster');

  if (el.attrs.subscription === 'remove') {
    const { before } = await store.transition(owner, jid, (current) => {
      if (!current.item) throw new StanzaError('item-not-found', `${jid} is not in your roster`);
      return { item: undefined, request: undefined };
    });
    server.router.reply(event.stanza);
    await cancelSubscriptions(server, owner, jid, before);
    return true;
  }

  // §2.1.2: subscription (other than remove), ask and approved are the server's to set; a client's values are ignored.
  const name = checkName(el.attrs.name);
  const groups = checkGroups(el);
  const max = server.config.roster.maxItems;
  await store.transition(owner, jid, (current, sizes) => {
    if (!current.item && sizes.items >= max)
      throw new StanzaError('not-allowed', `your roster is full: it holds at most ${max} contacts`);
    return { item: { ...(current.item ?? newItem(jid)), name, groups }, request: current.request };
  });
  server.router.reply(event.stanza);
  return true;
}

/** §2.3.3, §2.1.5: only the account's own resources manage its roster, addressed to no one or to the account. */
async function notYours(event: StanzaEvent): Promise<boolean> {
  if (!event.origin) return false;
  throw new StanzaError('forbidden', 'a roster request must be addressed to your own account');
}

export const rosterModule: LetheModule = {
  name: 'roster',
  features: [NS_ROSTER],
  migrations: rosterMigrations,
  load(server) {
    const store = openRosterStore(server, (owner, contact, item, version) =>
      push(server, owner, contact, item, version),
    );
    const { hooks } = server;
    hooks.on('stream-features', (event: StreamFeaturesEvent) => {
      if (event.authenticated) event.features.c('ver', { xmlns: NS_ROSTERVER });
    });
    // Loaded at bind, so the first presence finds the roster in memory.
    hooks.on('session/bound', async ({ session }: { session: ClientSession }) => {
      try {
        await store.get(session.jid.bareString());
      } catch (err) {
        server.log.error({ err }, 'could not load a roster');
      }
    });
    // Low priority: the presence module still needs the roster when it announces the session's end.
    hooks.on(
      'session/closed',
      ({ session }: { session: ClientSession }) => store.release(session.jid.bareString()),
      -100,
    );
    hooks.on('iq-get/self/jabber:iq:roster:query', (e: StanzaEvent) => rosterGet(server, store, e));
    hooks.on('iq-set/self/jabber:iq:roster:query', (e: StanzaEvent) => rosterSet(server, store, e));
    for (const target of ['bare', 'full', 'host'])
      for (const type of ['get', 'set']) hooks.on(`iq-${type}/${target}/jabber:iq:roster:query`, notYours);
  },
};
