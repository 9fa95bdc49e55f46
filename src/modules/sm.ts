import { randomBytes } from 'node:crypto';
import type { ClientStream, NonzaEvent, Output, StreamFeaturesEvent } from '../c2s/stream.js';
import { NS_STANZAS, StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import { topPriority } from './message.js';

/**
 * Stream management (XEP-0198): acknowledgements both ways and stream resumption.
 *
 * It lives here, not in the stream, because everything it decides is policy: the stream only lends
 * it an outbound stage (every stanza the session sends is counted and queued until acknowledged),
 * an inbound watcher (stanzas, not nonzas, are counted as handled), `write` for its nonzas, and the
 * `session/connection-lost` event, where it keeps a resumable session detached: still bound and
 * available, its stanzas queued, until the client resumes it on a new connection (`handOver`) or
 * the resumption time runs out.
 *
 * When a managed session ends for good (timeout, clean close, stream error, queue overflow), each
 * stanza the client did not acknowledge is dealt with as if its resource had gone (§4): a chat or
 * normal message with a body goes to the account's other available resources with the highest
 * priority, else to offline storage (`message/offline`), else back to its sender as
 * `service-unavailable`, stamped with a delay (XEP-0203) of when it was first sent; an iq get or set
 * is answered `service-unavailable`; presence, errors, headlines and groupchat messages are dropped
 * (presence is sent afresh at the next login, the others would not have been stored either).
 * A message that went to several resources of the account at once may reach another resource a
 * second time this way: it keeps its id and stanza-id (XEP-0359), so clients can tell.
 *
 * After a resumption, `session/resumed` ({ session }) is notified: a resumed stream starts afresh
 * in some respects (client state indication is active again).
 */

export const NS_SM = 'urn:xmpp:sm:3';
const NS_DELAY = 'urn:xmpp:delay';
const KEY = 'sm';
/** Closest to the wire: what is queued is exactly what was written, after any holding (CSI). */
const OUTPUT_PRIORITY = 0;

/** How many stanzas sent to the session its client has not acknowledged yet; 0 without stream management. */
export function unacknowledged(session: ClientSession): number {
  return (session.state.get(KEY) as Managed | undefined)?.unacked.length ?? 0;
}
const UINT32 = 2 ** 32;

interface Managed {
  stream: ClientStream;
  /** The resumption id (SM-ID), when resumption was granted. */
  id: string | undefined;
  /** Seconds a detached session is kept. */
  timeout: number;
  /** Stanzas received from the client ('h' we report), modulo 2^32 as §4 requires. */
  handled: number;
  /** Stanzas sent to the client, modulo 2^32. */
  sent: number;
  /** Sent and not yet acknowledged, oldest first, with when each was sent (ms). */
  unacked: XmlElement[];
  sentAt: number[];
  detached: boolean;
  /** An `<r/>` is outstanding, or about to be sent. */
  requested: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Over the queue cap: the session is being ended. */
  ending: boolean;
}

/** An xs:unsignedInt. */
function parseCount(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const n = Number(value);
  return n < UINT32 ? n : undefined;
}

function failed(stream: ClientStream, condition: string): void {
  stream.write(x('failed', { xmlns: NS_SM }, x(condition, { xmlns: NS_STANZAS })));
}

class StreamManagement {
  /** Resumable sessions by resumption id; an entry goes when its session ends. */
  private readonly resumable = new Map<string, Managed>();
  /** Messages already redelivered, so that one that reached several resources is redelivered once. */
  private readonly redelivered = new WeakSet<XmlElement>();
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly server: Server) {}

  attach(): void {
    const { hooks } = this.server;
    // After authentication: resumption happens before binding, enabling after it (§3, §5).
    hooks.on('stream-features', (e: StreamFeaturesEvent) => {
      if (e.authenticated) e.features.c('sm', { xmlns: NS_SM });
    });
    hooks.on(`nonza/${NS_SM}:enable`, (e: NonzaEvent) => this.enable(e));
    hooks.on(`nonza/${NS_SM}:resume`, (e: NonzaEvent) => this.resume(e));
    hooks.on(`nonza/${NS_SM}:r`, (e: NonzaEvent) => this.request(e));
    hooks.on(`nonza/${NS_SM}:a`, (e: NonzaEvent) => this.answer(e));
    hooks.on('session/connection-lost', ({ session }: { session: ClientSession }) => this.connectionLost(session));
    // First, so that the resumption id is gone before any other handler waits for something.
    hooks.on('session/closed', ({ session }: { session: ClientSession }) => this.ended(session), 100);
  }

  private enable({ element, session, stream }: NonzaEvent): void {
    // §3: only once a resource is bound, and only once per session.
    if (!session || session.state.has(KEY)) return failed(stream, 'unexpected-request');
    const { resumeTimeout, maxResumeTimeout } = this.server.config.sm;
    const timeout = Math.min(parseCount(element.attrs.max) || resumeTimeout, maxResumeTimeout);
    const wantsResume = element.attrs.resume === 'true' || element.attrs.resume === '1';
    const state: Managed = {
      stream,
      id: undefined,
      timeout,
      handled: 0,
      sent: 0,
      unacked: [],
      sentAt: [],
      detached: false,
      requested: false,
      timer: undefined,
      ending: false,
    };
    session.state.set(KEY, state);
    const enabled = x('enabled', { xmlns: NS_SM });
    if (wantsResume && timeout > 0) {
      // Unguessable, and only ever honoured for the same account (see resume).
      state.id = randomBytes(18).toString('base64url');
      this.resumable.set(state.id, state);
      enabled.attrs.id = state.id;
      enabled.attrs.resume = 'true';
      enabled.attrs.max = String(timeout);
    }
    stream.write(enabled);
    // §4: both counters start now, the outbound one after <enabled/>.
    stream.onInboundStanza(() => {
      state.handled = (state.handled + 1) % UINT32;
    });
    stream.wrapOutput(OUTPUT_PRIORITY, (next) => (stanza) => this.outbound(state, stanza, next));
  }

  private outbound(state: Managed, stanza: XmlElement, next: Output): void {
    state.unacked.push(stanza);
    state.sentAt.push(Date.now());
    state.sent = (state.sent + 1) % UINT32;
    next(stanza);
    if (state.unacked.length > this.server.config.sm.maxQueue) this.overflow(state);
    else this.requestAck(state);
  }

  /** One `<r/>` at a time, sent after the current turn so that a burst of stanzas shares it. */
  private requestAck(state: Managed): void {
    if (state.requested || state.detached || state.unacked.length < this.server.config.sm.requestAckAfter) return;
    state.requested = true;
    setImmediate(() => {
      if (state.detached || state.stream.isClosed) state.requested = false;
      else state.stream.write(x('r', { xmlns: NS_SM }));
    });
  }

  /** The cap on unacknowledged stanzas keeps a client that never acks from growing memory without end. */
  private overflow(state: Managed): void {
    if (state.ending) return;
    state.ending = true;
    // Not from inside a send: the session ends once the current delivery is over.
    setImmediate(() =>
      state.stream.close({ condition: 'resource-constraint', text: 'too many unacknowledged stanzas' }),
    );
  }

  private managed(session: ClientSession | undefined): Managed | undefined {
    return session?.state.get(KEY) as Managed | undefined;
  }

  private request({ session, stream }: NonzaEvent): void {
    const state = this.managed(session);
    if (!state) return stream.close({ condition: 'unsupported-stanza-type', text: 'stream management is not enabled' });
    stream.write(x('a', { xmlns: NS_SM, h: String(state.handled) }));
  }

  private answer({ element, session, stream }: NonzaEvent): void {
    const state = this.managed(session);
    if (!state) return stream.close({ condition: 'unsupported-stanza-type', text: 'stream management is not enabled' });
    const h = parseCount(element.attrs.h);
    if (h === undefined) return stream.close({ condition: 'bad-format', text: "an <a/> needs an 'h' counter" });
    if (!this.acknowledge(state, h)) return this.tooHigh(stream, state, h);
    state.requested = false;
    this.requestAck(state);
  }

  /** Drops what the client says it has handled; false when it claims more than was sent. */
  private acknowledge(state: Managed, h: number): boolean {
    const acked = (state.sent - state.unacked.length + UINT32) % UINT32;
    const n = (h - acked + UINT32) % UINT32;
    if (n > state.unacked.length) return false;
    state.unacked.splice(0, n);
    state.sentAt.splice(0, n);
    return true;
  }

  /** §6. */
  private tooHigh(stream: ClientStream, state: Managed, h: number): void {
    stream.close({
      condition: 'undefined-condition',
      text: `You acknowledged ${h} stanzas, but I only sent you ${state.sent} so far.`,
      detail: x('handled-count-too-high', { xmlns: NS_SM, h: String(h), 'send-count': String(state.sent) }),
    });
  }

  private resume({ element, session, stream }: NonzaEvent): void {
    const user = stream.user;
    // §5: after authentication, instead of binding.
    if (session || !user) return failed(stream, 'unexpected-request');
    const h = parseCount(element.attrs.h);
    if (h === undefined) return failed(stream, 'bad-request');
    const state = this.resumable.get(element.attrs.previd ?? '');
    // Another account's id gets the same answer as an unknown one: ids are bound to their account.
    if (!state || state.ending || state.stream.isClosed || state.stream.jid.bareString() !== user.bareString())
      return failed(stream, 'item-not-found');
    if (!this.acknowledge(state, h)) return this.tooHigh(stream, state, h);
    clearTimeout(state.timer);
    state.timer = undefined;
    state.detached = false;
    state.requested = false;
    const target = state.stream;
    stream.handOver(target);
    target.write(x('resumed', { xmlns: NS_SM, previd: state.id, h: String(state.handled) }));
    for (const stanza of state.unacked) target.write(stanza);
    this.server.log.debug({ session: target.id, resent: state.unacked.length }, 'session resumed');
    void this.server.hooks
      .notify('session/resumed', { session: target })
      .catch((err) => this.server.log.error({ err }, 'session/resumed handler failed'));
    this.requestAck(state);
  }

  private connectionLost(session: ClientSession): true | undefined {
    const state = this.managed(session);
    if (!state?.id) return undefined;
    state.detached = true;
    state.requested = false;
    state.timer = setTimeout(() => session.close(), state.timeout * 1000);
    state.timer.unref();
    return true;
  }

  private ended(session: ClientSession): void {
    const state = this.managed(session);
    if (!state) return;
    clearTimeout(state.timer);
    if (state.id) this.resumable.delete(state.id);
    const { unacked, sentAt } = state;
    state.unacked = [];
    state.sentAt = [];
    if (unacked.length === 0) return;
    // Not awaited by `session/closed`: other handlers (the unavailable broadcast) need not wait for storage.
    const work = (async () => {
      for (let i = 0; i < unacked.length; i++)
        await this.redeliver(session, unacked[i] as XmlElement, sentAt[i] as number);
    })()
      .catch((err) => this.server.log.error({ err }, 'could not redeliver unacknowledged stanzas'))
      .finally(() => this.pending.delete(work));
    this.pending.add(work);
  }

  /** What §4 asks for unacknowledged stanzas of a session that is gone; see the module comment. */
  private async redeliver(session: ClientSession, stanza: XmlElement, sentAt: number): Promise<void> {
    const type = stanza.attrs.type;
    if (type === 'error') return;
    const { router, sessions, hooks } = this.server;
    if (stanza.name === 'iq') {
      if (type === 'get' || type === 'set') router.reject(stanza, new StanzaError('service-unavailable'));
      return;
    }
    if (stanza.name !== 'message' || type === 'groupchat' || type === 'headline' || !stanza.getChild('body')) return;
    if (this.redelivered.has(stanza)) return;
    this.redelivered.add(stanza);
    const copy = stanza.clone();
    if (!copy.getChild('delay', NS_DELAY))
      copy.append(x('delay', { xmlns: NS_DELAY, from: session.jid.domain, stamp: new Date(sentAt).toISOString() }));
    // Straight to delivery, not through the router: the hooks before delivery (stanza ids, and
    // whatever archives or copies messages) have already seen this message.
    const others = sessions.byResource(session.jid.bareString());
    const best = others ? topPriority(others) : -1;
    if (others && best >= 0) {
      for (const other of others.values())
        if (other.presence !== undefined && other.priority === best) other.send(copy);
      return;
    }
    const from = Jid.tryParse(copy.attrs.from);
    if (!from) return;
    const event: StanzaEvent = { stanza: copy, from, to: session.jid.bare, origin: undefined };
    if (!(await hooks.fire('message/offline', event))) router.reject(stanza, new StanzaError('service-unavailable'));
  }

  /** On shutdown, detached sessions end now, so that their queues reach offline storage while it is open. */
  async stop(): Promise<void> {
    for (const state of [...this.resumable.values()]) if (state.detached) state.stream.close();
    await Promise.all(this.pending);
  }
}

const instances = new WeakMap<Server, StreamManagement>();

export const smModule: LetheModule = {
  name: 'sm',
  load(server) {
    const sm = new StreamManagement(server);
    sm.attach();
    instances.set(server, sm);
  },
  async unload(server) {
    await instances.get(server)?.stop();
  },
};
