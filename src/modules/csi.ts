import { type NonzaEvent, NS_CLIENT, type Output, type StreamFeaturesEvent } from '../c2s/stream.js';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import type { XmlElement } from '../xml/element.js';

/**
 * Client state indication (XEP-0352). A client that says it is `<inactive/>` (in the background)
 * gets less traffic; the policy:
 *
 * - Presence updates (available and unavailable presence) are held, and only the latest from each
 *   full JID is kept. Exception: a room's presence that answers the client's own join (MUC status
 *   110), which the client is waiting for.
 * - Messages that carry only chat states (XEP-0085, "is typing"; with at most a thread, delay,
 *   stanza ids and processing hints besides) are dropped: once the client is back, they are stale.
 * - Everything else goes out at once: messages with a body and any other message, iq, subscription
 *   requests and answers, and errors. Held presence goes out first, in order, so the client sees
 *   stanzas in the order they were sent (and its radio is awake anyway).
 * - `<active/>` sends what was held. So does resuming the session (XEP-0198), since a resumed
 *   stream starts active (XEP-0352 §6); and so does holding more than `csi.maxHeld` updates.
 *   Held updates of a session that ends are dropped: its contacts' presence is sent afresh at the
 *   next login.
 *
 * `csi.holdPresence` and `csi.dropChatStates` turn each part off. The state is never revealed to
 * anyone else (§7).
 */

export const NS_CSI = 'urn:xmpp:csi:0';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const KEY = 'csi';
/** Further from the wire than stream management: what is held has not been sent, so is not counted yet. */
const OUTPUT_PRIORITY = 10;
/** Elements that do not make a message more than a chat-state notification. */
const INCIDENTAL = new Set(['urn:xmpp:sid:0', 'urn:xmpp:delay', 'urn:xmpp:hints']);

class ClientState {
  inactive = false;
  /** Held presence by sender; a Map keeps the order in which the latest of each arrived. */
  readonly held = new Map<string, XmlElement>();
  /** The output stage after this one (set, and reset, by the stream's `wrapOutput`). */
  next!: Output;
}

function chatStatesOnly(message: XmlElement): boolean {
  let states = false;
  for (const child of message.children) {
    if (typeof child === 'string') continue;
    const ns = child.xmlns;
    if (ns === NS_CHATSTATES) states = true;
    else if (!(child.localName === 'thread' && (ns === NS_CLIENT || ns === undefined)) && !INCIDENTAL.has(ns ?? ''))
      return false;
  }
  return states;
}

function joinedRoom(presence: XmlElement): boolean {
  return (
    presence
      .getChild('x', NS_MUC_USER)
      ?.getChildren('status')
      .some((s) => s.attrs.code === '110') === true
  );
}

class ClientStateIndication {
  constructor(private readonly server: Server) {}

  attach(): void {
    const { hooks } = this.server;
    hooks.on('stream-features', (e: StreamFeaturesEvent) => {
      if (e.authenticated) e.features.c('csi', { xmlns: NS_CSI });
    });
    hooks.on(`nonza/${NS_CSI}:inactive`, (e: NonzaEvent) => this.inactive(e));
    hooks.on(`nonza/${NS_CSI}:active`, ({ session }: NonzaEvent) => this.active(session));
    hooks.on('session/resumed', ({ session }: { session: ClientSession }) => this.active(session));
  }

  /** Before binding there is nothing to hold: the indication is ignored. */
  private inactive({ session, stream }: NonzaEvent): void {
    if (!session) return;
    let state = session.state.get(KEY) as ClientState | undefined;
    if (!state) {
      const created = new ClientState();
      state = created;
      session.state.set(KEY, created);
      stream.wrapOutput(OUTPUT_PRIORITY, (next) => {
        created.next = next;
        return (stanza) => this.filter(created, stanza);
      });
    }
    state.inactive = true;
  }

  private active(session: ClientSession | undefined): void {
    const state = session?.state.get(KEY) as ClientState | undefined;
    if (!state?.inactive) return;
    state.inactive = false;
    this.flush(state);
  }

  private filter(state: ClientState, stanza: XmlElement): void {
    if (!state.inactive) return state.next(stanza);
    const { holdPresence, dropChatStates, maxHeld } = this.server.config.csi;
    const type = stanza.attrs.type;
    if (
      holdPresence &&
      stanza.name === 'presence' &&
      (type === undefined || type === 'unavailable') &&
      !joinedRoom(stanza)
    ) {
      const from = stanza.attrs.from ?? '';
      // The latest update replaces the one held and takes its place at the end.
      state.held.delete(from);
      state.held.set(from, stanza);
      if (state.held.size > maxHeld) this.flush(state);
      return;
    }
    if (dropChatStates && stanza.name === 'message' && type !== 'error' && chatStatesOnly(stanza)) return;
    this.flush(state);
    state.next(stanza);
  }

  private flush(state: ClientState): void {
    if (state.held.size === 0) return;
    const held = [...state.held.values()];
    state.held.clear();
    for (const stanza of held) state.next(stanza);
  }
}

export const csiModule: LetheModule = {
  name: 'csi',
  load(server) {
    new ClientStateIndication(server).attach();
  },
};
