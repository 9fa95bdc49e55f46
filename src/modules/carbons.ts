import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import { topPriority } from './message.js';
import { NS_SID, sentStanzaId } from './stanza-id.js';

/**
 * Message carbons (XEP-0280): a user's clients that enable carbons get a copy of every eligible
 * message another of the user's clients sends (`<sent/>`) or that reaches the user but not them
 * directly (`<received/>`), so every device shows the whole conversation.
 *
 * Eligible (§6.1): chat messages; normal ones with a body; any carrying receipts, chat states,
 * markers or a direct MUC invitation (XEP-0249); errors that carry such a message back, or answer a
 * message to a bare JID. Never groupchat. MUC traffic is recognised by its `muc#user` element: a
 * private message from an occupant is not copied (the room sends it to every joined client itself),
 * one to an occupant is, and so are mediated invitations. `<private xmlns='urn:xmpp:carbons:2'/>`
 * and the `<no-copy/>` hint (XEP-0334, which says to ignore hints in errors) keep a message out.
 * `<private/>` is left in the message: §9 no longer asks servers to remove it.
 *
 * Hooked between stanza ids (so a received copy carries the recipient's id) and delivery. With no
 * carbons-enabled session on either side, a message costs one map lookup per side. Nothing is stored.
 */

export const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_HINTS = 'urn:xmpp:hints';
const NS_CLIENT = 'jabber:client';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
/** Payloads typically used in IM that make a message eligible whatever its type (§6.1). */
const IM_PAYLOADS = new Set([
  'urn:xmpp:receipts',
  'http://jabber.org/protocol/chatstates',
  'urn:xmpp:chat-markers:0',
  'jabber:x:conference',
]);

function eligible(stanza: XmlElement, from: Jid, sent: boolean): boolean {
  const type = stanza.attrs.type ?? 'normal';
  if (type === 'groupchat') return false;
  let body = false;
  let im = false;
  let muc: XmlElement | undefined;
  for (const child of stanza.children) {
    if (typeof child === 'string') continue;
    const ns = child.xmlns;
    if (ns === NS_CARBONS && child.localName === 'private') return false;
    if (ns === NS_HINTS && child.localName === 'no-copy' && type !== 'error') return false;
    if (child.localName === 'body' && (ns === NS_CLIENT || ns === undefined)) body = true;
    else if (ns === NS_MUC_USER) muc = child;
    else if (IM_PAYLOADS.has(ns ?? '')) im = true;
  }
  if (muc?.getChild('invite')) return true;
  if (muc && !sent) return false;
  if (type === 'chat' || im) return true;
  if (type === 'error') return body || (!sent && from.isBare);
  // normal, and unknown types, which RFC 6121 §5.2.2 treats as normal.
  return type !== 'headline' && body;
}

/** The copy one resource gets (§7, §8): from the account, to that resource, the original forwarded inside. */
function carbon(kind: 'sent' | 'received', stanza: XmlElement, account: string, session: ClientSession): XmlElement {
  const inner = stanza.clone();
  inner.attrs.xmlns = NS_CLIENT;
  if (kind === 'sent') {
    // A message a client sent without `to` went to its own account.
    inner.attrs.to ??= account;
    // XEP-0313 §3: the recipient's stanza-id is not the sender's to see; the copy names the sender's own.
    const recipient = Jid.tryParse(inner.attrs.to)?.bareString();
    for (const sid of inner.getChildren('stanza-id', NS_SID)) if (sid.attrs.by === recipient) inner.remove(sid);
    inner.c('stanza-id', { xmlns: NS_SID, by: account, id: sentStanzaId(stanza) });
  }
  return x(
    'message',
    { xmlns: NS_CLIENT, from: account, to: session.jid.toString(), type: stanza.attrs.type },
    x(kind, { xmlns: NS_CARBONS }, x('forwarded', { xmlns: NS_FORWARD }, inner)),
  );
}

class Carbons {
  /** Carbons-enabled sessions by bare JID; an entry goes with its last session, so nothing grows with churn. */
  private readonly enabled = new Map<string, Set<ClientSession>>();

  constructor(private readonly server: Server) {}

  attach(): void {
    const { hooks } = this.server;
    hooks.on(`iq-set/self/${NS_CARBONS}:enable`, (e: StanzaEvent) => this.toggle(e, true));
    hooks.on(`iq-set/self/${NS_CARBONS}:disable`, (e: StanzaEvent) => this.toggle(e, false));
    // After stanza ids (100), before delivery (-1).
    for (const target of ['bare', 'full'])
      hooks.on(`message/${target}`, (e: StanzaEvent) => {
        // To the sender's own account, the received copies alone reach every other resource once.
        if (e.origin && e.from.bareString() !== e.to.bareString()) this.sent(e);
        this.received(e);
      });
    for (const target of ['host', 'remote'])
      hooks.on(`message/${target}`, (e: StanzaEvent) => {
        if (e.origin) this.sent(e);
      });
    hooks.on('session/closed', ({ session }: { session: ClientSession }) => this.toggleFor(session, false));
  }

  /** §4, §5, §10.1: enabling twice, or disabling what is off, is no error. */
  private toggle(e: StanzaEvent, on: boolean): true {
    if (!e.origin) throw new StanzaError('not-allowed', 'carbons are enabled by a client for its own session');
    this.toggleFor(e.origin, on);
    this.server.router.reply(e.stanza);
    return true;
  }

  private toggleFor(session: ClientSession, on: boolean): void {
    const account = session.jid.bareString();
    let sessions = this.enabled.get(account);
    if (on) {
      if (!sessions) {
        sessions = new Set();
        this.enabled.set(account, sessions);
      }
      sessions.add(session);
    } else if (sessions?.delete(session) && sessions.size === 0) {
      this.enabled.delete(account);
    }
  }

  /** §8: to the sender's other enabled resources, whether or not the sending one has carbons on. */
  private sent({ stanza, from, origin }: StanzaEvent): void {
    const account = from.bareString();
    const sessions = this.enabled.get(account);
    if (!sessions || !eligible(stanza, from, true)) return;
    for (const session of sessions) if (session !== origin) session.send(carbon('sent', stanza, account, session));
  }

  /** §7: to the recipient's enabled resources that do not get the message under RFC 6121 §8.5 (nor sent it). */
  private received({ stanza, from, to, origin }: StanzaEvent): void {
    const account = to.bareString();
    const sessions = this.enabled.get(account);
    if (!sessions || !eligible(stanza, from, false)) return;
    const resources = this.server.sessions.byResource(account);
    if (!resources) return;
    const type = stanza.attrs.type;
    const target = to.resource ? resources.get(to.resource) : undefined;
    // Without its resource, a message to a full JID falls back to the bare JID, except headlines and errors (dropped).
    const dropped = to.resource !== '' && !target && (type === 'headline' || type === 'error');
    const top = target || dropped || type === 'headline' ? -1 : topPriority(resources);
    for (const session of sessions) {
      if (session === origin) continue;
      const direct = target
        ? session === target
        : !dropped &&
          session.presence !== undefined &&
          (type === 'headline' ? session.priority >= 0 : top >= 0 && session.priority === top);
      if (!direct) session.send(carbon('received', stanza, account, session));
    }
  }
}

export const carbonsModule: LetheModule = {
  name: 'carbons',
  features: [NS_CARBONS],
  load(server) {
    new Carbons(server).attach();
  },
};
