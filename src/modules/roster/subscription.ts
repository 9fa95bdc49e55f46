import type { Server } from '../../core/server.js';
import { type XmlElement, x } from '../../xml/element.js';
import type { ContactRecord } from './store.js';

/**
 * RFC 6121 §3 and Appendix A: the presence subscription state machine. The tables are pure
 * functions so that every transition can be checked on its own; the presence module applies them.
 */

export type Subscription = 'none' | 'to' | 'from' | 'both';
export type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

export const SUBSCRIPTION_TYPES: ReadonlySet<string> = new Set([
  'subscribe',
  'subscribed',
  'unsubscribe',
  'unsubscribed',
]);

/** One contact's state as Appendix A counts it, plus a pre-approval (§3.4). */
export interface SubState {
  subscription: Subscription;
  /** The user asked for the contact's presence and has no answer yet (`ask='subscribe'`). */
  pendingOut: boolean;
  /** The contact asked for the user's presence and the user has not answered. */
  pendingIn: boolean;
  /** The user approved the contact's subscription before the contact asked. */
  approved: boolean;
}

export interface Outcome {
  state: SubState;
  /** Outbound: route the stanza to the contact. Inbound: deliver it to the user's available resources. */
  forward: boolean;
  /** Inbound `subscribe` only: answer `subscribed` on the user's behalf (already subscribed, or pre-approved). */
  autoReply: boolean;
}

export function hasTo(s: Subscription): boolean {
  return s === 'to' || s === 'both';
}

export function hasFrom(s: Subscription): boolean {
  return s === 'from' || s === 'both';
}

function withTo(s: Subscription, on: boolean): Subscription {
  const from = hasFrom(s);
  if (on) return from ? 'both' : 'to';
  return from ? 'from' : 'none';
}

function withFrom(s: Subscription, on: boolean): Subscription {
  const to = hasTo(s);
  if (on) return to ? 'both' : 'from';
  return to ? 'to' : 'none';
}

const same = (state: SubState, forward: boolean): Outcome => ({ state, forward, autoReply: false });
const next = (state: SubState, change: Partial<SubState>): Outcome => ({
  state: { ...state, ...change },
  forward: true,
  autoReply: false,
});

/** A stanza the user sends to the contact, processed by the user's server (Appendix A.2). */
export function outbound(type: SubscriptionType, s: SubState): Outcome {
  switch (type) {
    case 'subscribe':
      // §3.1.2: routed even when nothing changes, so the contact's server can re-confirm.
      return hasTo(s.subscription) || s.pendingOut ? same(s, true) : next(s, { pendingOut: true });
    case 'unsubscribe':
      return next(s, { subscription: withTo(s.subscription, false), pendingOut: false });
    case 'subscribed':
      if (s.pendingIn)
        return next(s, { subscription: withFrom(s.subscription, true), pendingIn: false, approved: false });
      // Re-confirming an existing subscription lets a contact whose server lost the state recover.
      if (hasFrom(s.subscription)) return same(s, true);
      // §3.4: nothing to approve yet, so this is a pre-approval, kept locally and not routed.
      return { state: { ...s, approved: true }, forward: false, autoReply: false };
    case 'unsubscribed':
      return next(s, { subscription: withFrom(s.subscription, false), pendingIn: false, approved: false });
  }
}

/** A stanza the contact sent to the user, processed by the user's server (Appendix A.3). */
export function inbound(type: SubscriptionType, s: SubState): Outcome {
  switch (type) {
    case 'subscribe':
      if (hasFrom(s.subscription)) return { state: s, forward: false, autoReply: true };
      if (s.approved)
        return {
          state: { ...s, subscription: withFrom(s.subscription, true), approved: false },
          forward: false,
          autoReply: true,
        };
      // A request already waiting is not delivered twice; it is redelivered at the next login anyway.
      return s.pendingIn ? same(s, false) : next(s, { pendingIn: true });
    case 'subscribed':
      // §3.1.6: only an approval the user asked for counts; anything else is ignored.
      return s.pendingOut && !hasTo(s.subscription)
        ? next(s, { subscription: withTo(s.subscription, true), pendingOut: false })
        : same(s, false);
    case 'unsubscribe':
      return hasFrom(s.subscription) || s.pendingIn
        ? next(s, { subscription: withFrom(s.subscription, false), pendingIn: false })
        : same(s, false);
    case 'unsubscribed':
      return hasTo(s.subscription) || s.pendingOut
        ? next(s, { subscription: withTo(s.subscription, false), pendingOut: false })
        : same(s, false);
  }
}

export function stateOf(record: ContactRecord): SubState {
  const { item } = record;
  return {
    subscription: item?.subscription ?? 'none',
    pendingOut: item?.ask ?? false,
    pendingIn: record.request !== undefined,
    approved: item?.approved ?? false,
  };
}

export function presence(attrs: Record<string, string | undefined>): XmlElement {
  return x('presence', { xmlns: 'jabber:client', ...attrs });
}

/**
 * Sends the current presence of each of the user's available resources to `to` (after an approval),
 * or unavailable from each (after a subscription ended), as RFC 6121 §3.1.5 and §3.2.2 ask.
 */
export async function announce(server: Server, owner: string, to: string, unavailable: boolean): Promise<void> {
  for (const session of server.sessions.available(owner)) {
    let el: XmlElement;
    if (unavailable) el = presence({ type: 'unavailable', from: session.jid.toString(), to });
    else {
      el = (session.presence as XmlElement).clone();
      el.attrs.to = to;
    }
    await server.router.route(el);
  }
}

/**
 * Ends both directions of a subscription, for a removed roster item (§2.5.2) or a removed account:
 * `unsubscribe` when the user was subscribed or asking, `unsubscribed` when the contact was or was
 * asking, and unavailable presence to a contact who was receiving it.
 */
export async function cancelSubscriptions(
  server: Server,
  owner: string,
  contact: string,
  before: ContactRecord,
): Promise<void> {
  const state = stateOf(before);
  if (hasFrom(state.subscription)) await announce(server, owner, contact, true);
  if (hasTo(state.subscription) || state.pendingOut)
    await server.router.route(presence({ type: 'unsubscribe', from: owner, to: contact }));
  if (hasFrom(state.subscription) || state.pendingIn)
    await server.router.route(presence({ type: 'unsubscribed', from: owner, to: contact }));
}
