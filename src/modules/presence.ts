import type { StreamFeaturesEvent } from '../c2s/stream.js';
import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import type { XmlElement } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import {
  type ContactRecord,
  newItem,
  type Roster,
  type RosterStore,
  rosterStore,
  type SubscriptionRequest,
} from './roster/store.js';
import {
  announce,
  cancelSubscriptions,
  hasFrom,
  hasTo,
  inbound,
  type Outcome,
  outbound,
  presence,
  SUBSCRIPTION_TYPES,
  type SubState,
  type SubscriptionType,
  stateOf,
} from './roster/subscription.js';

/**
 * Presence (RFC 6121 §3 and §4): subscriptions with pre-approval, broadcast to subscribers, probes,
 * directed presence, and unavailable presence when a session ends. After a session's initial
 * presence has been processed, `presence/initial` ({ session }) is notified.
 *
 * Every presence a local client sends with a `to` is first processed as outbound (roster
 * bookkeeping, stamping) at priority 10, then routed again without an origin for delivery; a stanza
 * without an origin is inbound, processed for the local account it is addressed to. A future s2s
 * module hooks `presence/remote` at default priority to send the routed copy, and routes what it
 * receives with `router.route` so that inbound processing applies to it unchanged.
 */

const NS_PREAPPROVAL = 'urn:xmpp:features:pre-approval';
const NS_NICK = 'http://jabber.org/protocol/nick';
const MAX_REQUEST_TEXT = 1024;

function addressed(stanza: XmlElement, to: string): XmlElement {
  const copy = stanza.clone();
  copy.attrs.to = to;
  return copy;
}

/** §4.7.2.3: an integer from -128 to 127, 0 when absent; undefined when invalid. */
function parsePriority(stanza: XmlElement): number | undefined {
  const el = stanza.getChild('priority');
  if (!el) return 0;
  const text = el.text().trim();
  if (!/^[+-]?\d{1,3}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= -128 && n <= 127 ? n : undefined;
}

function clip(text: string | undefined): string | undefined {
  return text === undefined ? undefined : text.slice(0, MAX_REQUEST_TEXT);
}

/**
 * The record after a transition: an item exists once there is anything to remember about the
 * contact (and is never removed by presence alone, §3); roster limits apply to new entries.
 */
function recordOf(
  current: ContactRecord,
  contact: string,
  state: SubState,
  request: SubscriptionRequest | undefined,
  sizes: { items: number; requests: number },
  max: number,
): ContactRecord {
  let item = current.item;
  if (item || state.subscription !== 'none' || state.pendingOut || state.approved) {
    if (!item && sizes.items >= max)
      throw new StanzaError('not-allowed', `the roster is full: it holds at most ${max} contacts`);
    item = {
      ...(item ?? newItem(contact)),
      subscription: state.subscription,
      ask: state.pendingOut,
      approved: state.approved,
    };
  }
  if (!state.pendingIn) return { item, request: undefined };
  if (current.request) return { item, request: current.request };
  if (sizes.requests >= max)
    throw new StanzaError('resource-constraint', 'too many subscription requests are waiting for an answer');
  return { item, request: request ?? { status: undefined, nick: undefined } };
}

class Presence {
  private readonly store: RosterStore;

  constructor(private readonly server: Server) {
    this.store = rosterStore(server);
  }

  attach(): void {
    const { hooks } = this.server;
    hooks.on('stream-features', (event: StreamFeaturesEvent) => {
      if (event.authenticated) event.features.c('sub', { xmlns: NS_PREAPPROVAL });
    });
    hooks.on('presence/self', (e: StanzaEvent) => this.fromSelf(e), -1);
    for (const target of ['bare', 'full', 'host', 'remote'])
      hooks.on(`presence/${target}`, (e: StanzaEvent) => (e.origin ? this.outbound(e) : undefined), 10);
    hooks.on('presence/bare', (e: StanzaEvent) => this.inbound(e), -1);
    hooks.on('presence/full', (e: StanzaEvent) => this.inbound(e), -1);
    hooks.on('session/closed', ({ session }: { session: ClientSession }) => this.sessionEnded(session));
    hooks.on('account/removing', ({ jid }: { jid: Jid }) => this.accountRemoving(jid));
  }

  private route(stanza: XmlElement): true | Promise<true> {
    const routed = this.server.router.route(stanza);
    return routed instanceof Promise ? routed.then(() => true) : true;
  }

  private badRequest(stanza: XmlElement, text: string): true {
    this.server.router.reject(stanza, new StanzaError('bad-request', text));
    return true;
  }

  /** Presence without `to` (a broadcast), or to the sender's own bare JID. */
  private fromSelf(e: StanzaEvent): boolean | Promise<boolean> {
    const { stanza } = e;
    const type = stanza.attrs.type;
    const session = e.origin as ClientSession;
    if (stanza.attrs.to === undefined) {
      if (type === undefined) return this.available(session, stanza);
      if (type === 'unavailable') return this.unavailable(session, stanza);
    }
    if (type === undefined || type === 'unavailable' || type === 'probe') return this.outbound(e);
    // An account is always subscribed to itself, and an error to oneself answers nothing.
    if (type === 'error' || SUBSCRIPTION_TYPES.has(type)) return true;
    return this.badRequest(stanza, `unknown presence type ${type}`);
  }

  /** §4.2 initial and §4.4 subsequent presence. */
  private async available(session: ClientSession, stanza: XmlElement): Promise<boolean> {
    const priority = parsePriority(stanza);
    if (priority === undefined) return this.badRequest(stanza, 'the priority must be an integer from -128 to 127');
    const owner = session.jid.bareString();
    const roster = await this.store.get(owner);
    // The session may have ended while the roster loaded; it must not come back to life.
    if (this.server.sessions.get(owner, session.jid.resource) !== session) return true;
    const initial = session.presence === undefined;
    session.presence = stanza;
    session.priority = priority;
    this.broadcast(session, stanza, roster);
    if (!initial) return true;
    const me = session.jid.toString();
    for (const other of this.server.sessions.available(owner))
      if (other !== session) session.send(addressed(other.presence as XmlElement, me));
    for (const item of roster.items.values()) {
      if (!hasTo(item.subscription)) continue;
      // §4.3.1 probes come from the bare JID; a local contact's server is us, so the answers can go to this resource only.
      const local = this.server.router.isLocal(Jid.parse(item.jid).domain);
      await this.route(presence({ type: 'probe', from: local ? me : owner, to: item.jid }));
    }
    // §3.1.3: requests that arrived while the user was away.
    for (const [contact, request] of roster.requests) {
      const el = presence({ type: 'subscribe', from: contact, to: owner });
      if (request.status !== undefined) el.c('status').t(request.status);
      if (request.nick !== undefined) el.c('nick', { xmlns: NS_NICK }).t(request.nick);
      session.send(el);
    }
    // For what waits for the user to come online (offline messages). Handlers must not wait for the
    // client: its next stanzas are processed only once this returns.
    await this.server.hooks.notify('presence/initial', { session });
    return true;
  }

  /** To every contact subscribed to the user, and to the user's own available resources (including the sender). */
  private broadcast(session: ClientSession, stanza: XmlElement, roster: Roster): void {
    for (const item of roster.items.values())
      if (hasFrom(item.subscription)) void this.server.router.route(addressed(stanza, item.jid));
    void this.server.router.route(addressed(stanza, session.jid.bareString()));
  }

  /** §4.5: broadcast, then unavailable to everyone who got directed presence (§4.6.3). */
  private async unavailable(session: ClientSession, stanza: XmlElement): Promise<boolean> {
    if (session.presence !== undefined) this.broadcast(session, stanza, await this.store.get(session.jid.bareString()));
    for (const to of session.directedPresence) void this.server.router.route(addressed(stanza, to));
    session.directedPresence.clear();
    session.presence = undefined;
    session.priority = 0;
    return true;
  }

  private async sessionEnded(session: ClientSession): Promise<void> {
    if (session.presence === undefined && session.directedPresence.size === 0) return;
    await this.unavailable(session, presence({ type: 'unavailable', from: session.jid.toString() }));
  }

  /** What a local client sends to someone: directed presence, probes, errors and subscription stanzas. */
  private outbound(e: StanzaEvent): boolean | Promise<boolean> {
    const { stanza } = e;
    const type = stanza.attrs.type;
    stanza.attrs.to ??= e.to.toString();
    if (type === undefined || type === 'unavailable') {
      if (type === undefined && parsePriority(stanza) === undefined)
        return this.badRequest(stanza, 'the priority must be an integer from -128 to 127');
      this.trackDirected(e, type === undefined);
      return this.route(stanza);
    }
    // A client's probe keeps its full JID, so that only the asking resource gets the answers.
    if (type === 'probe' || type === 'error') return this.route(stanza);
    if (SUBSCRIPTION_TYPES.has(type)) return this.outboundSubscription(e, type as SubscriptionType);
    return this.badRequest(stanza, `unknown presence type ${type}`);
  }

  /** §4.6: remember who got directed presence, unless broadcasts reach them anyway. */
  private trackDirected(e: StanzaEvent, available: boolean): void {
    const session = e.origin as ClientSession;
    const item = this.store.cached(e.from.bareString())?.items.get(e.to.bareString());
    if (item && hasFrom(item.subscription)) return;
    if (available) session.directedPresence.add(e.to.toString());
    else session.directedPresence.delete(e.to.toString());
  }

  private async apply(
    owner: string,
    contact: string,
    table: typeof inbound,
    type: SubscriptionType,
    request?: SubscriptionRequest,
  ) {
    let outcome: Outcome | undefined;
    const max = this.server.config.roster.maxItems;
    const transition = await this.store.transition(owner, contact, (current, sizes) => {
      outcome = table(type, stateOf(current));
      return recordOf(current, contact, outcome.state, request, sizes, max);
    });
    return { ...transition, outcome: outcome as Outcome };
  }

  /** §3.1.2, §3.2.2, §3.3.2, §3.4.2: the user's server updates the roster, then routes from the bare JID. */
  private async outboundSubscription(e: StanzaEvent, type: SubscriptionType): Promise<boolean> {
    const { stanza } = e;
    const owner = e.from.bareString();
    const contact = e.to.bareString();
    if (owner === contact) return true;
    const { before, after, outcome } = await this.apply(owner, contact, outbound, type);
    stanza.attrs.from = owner;
    stanza.attrs.to = contact;
    if (outcome.forward) await this.route(stanza);
    const wasFrom = hasFrom(stateOf(before).subscription);
    const isFrom = hasFrom(stateOf(after).subscription);
    if (type === 'subscribed' && outcome.forward) await announce(this.server, owner, contact, false);
    if (wasFrom && !isFrom) await announce(this.server, owner, contact, true);
    return true;
  }

  /** Presence for a local account from someone else (another local user, a module, or later s2s). */
  private inbound(e: StanzaEvent): boolean | Promise<boolean> {
    const { stanza, to } = e;
    const type = stanza.attrs.type;
    if (type === undefined || type === 'unavailable') {
      if (to.resource) this.server.sessions.get(to.bareString(), to.resource)?.send(stanza);
      else this.toAvailable(to.bareString(), stanza);
      return true;
    }
    if (type === 'probe') return this.answerProbe(to.bare, e.from);
    if (SUBSCRIPTION_TYPES.has(type)) return this.inboundSubscription(e, type as SubscriptionType);
    // Errors answer what one resource sent; to a bare JID they have no addressee.
    if (type === 'error' && to.resource) this.server.sessions.get(to.bareString(), to.resource)?.send(stanza);
    return true;
  }

  private toAvailable(owner: string, stanza: XmlElement): void {
    const resources = this.server.sessions.byResource(owner);
    if (resources) for (const session of resources.values()) if (session.presence !== undefined) session.send(stanza);
  }

  /** §4.3.2: only subscribers (and the account itself) learn the presence; anyone else gets `unsubscribed`. */
  private async answerProbe(contact: Jid, requester: Jid): Promise<boolean> {
    const owner = contact.bareString();
    const asker = requester.bareString();
    if (owner !== asker) {
      // An account that does not exist answers the same, so probes do not reveal which accounts exist.
      const item = await this.store.item(owner, asker);
      if (!item || !hasFrom(item.subscription))
        return this.route(presence({ type: 'unsubscribed', from: owner, to: asker }));
    }
    const to = requester.toString();
    const available = this.server.sessions.available(owner);
    if (available.length === 0) return this.route(presence({ type: 'unavailable', from: owner, to }));
    for (const session of available) await this.route(addressed(session.presence as XmlElement, to));
    return true;
  }

  private async exists(account: Jid): Promise<boolean> {
    return this.server.sessions.resources(account.bareString()).length > 0 || this.server.accounts.exists(account);
  }

  /** §3.1.3, §3.1.6, §3.2.3, §3.3.3 and §3.4: the contact's server processes what the user sent. */
  private async inboundSubscription(e: StanzaEvent, type: SubscriptionType): Promise<boolean> {
    const { stanza } = e;
    const owner = e.to.bareString();
    const contact = e.from.bareString();
    if (owner === contact) return true;
    // Subscriptions are between bare JIDs, whatever the addresses used (§3.1.3).
    stanza.attrs.from = contact;
    stanza.attrs.to = owner;
    if (type === 'subscribe' && !(await this.exists(e.to.bare))) {
      // §3.1.3 allows ignoring a request for an account that does not exist or answering `unsubscribed`;
      // answering lets the requester's server clear the pending request instead of keeping it forever.
      return this.route(presence({ type: 'unsubscribed', from: owner, to: contact }));
    }
    const request =
      type === 'subscribe'
        ? { status: clip(stanza.getChildText('status')), nick: clip(stanza.getChildText('nick', NS_NICK)) }
        : undefined;
    const { before, after, outcome } = await this.apply(owner, contact, inbound, type, request);
    if (outcome.autoReply) {
      await this.route(presence({ type: 'subscribed', from: owner, to: contact }));
      await announce(this.server, owner, contact, false);
    }
    if (outcome.forward) this.toAvailable(owner, stanza);
    if (hasFrom(stateOf(before).subscription) && !hasFrom(stateOf(after).subscription))
      await announce(this.server, owner, contact, true);
    return true;
  }

  /**
   * Before an account's data is erased, its contacts are told as if the user had gone offline and then
   * removed every contact: local contacts' rosters drop to `none` at once, remote ones will via s2s.
   */
  private async accountRemoving(jid: Jid): Promise<void> {
    const owner = jid.bareString();
    for (const session of this.server.sessions.resources(owner)) await this.sessionEnded(session);
    const roster = await this.store.get(owner);
    for (const [contact, item] of [...roster.items])
      await cancelSubscriptions(this.server, owner, contact, { item, request: roster.requests.get(contact) });
    for (const [contact, request] of [...roster.requests])
      if (!roster.items.has(contact))
        await cancelSubscriptions(this.server, owner, contact, { item: undefined, request });
  }
}

export const presenceModule: LetheModule = {
  name: 'presence',
  load(server) {
    new Presence(server).attach();
  },
};
