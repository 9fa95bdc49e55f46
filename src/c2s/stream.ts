import { randomBytes, randomUUID } from 'node:crypto';
import { createMechanism, offeredMechanisms } from '../auth/sasl.js';
import type { SaslContext, SaslMechanism, SaslStep } from '../auth/types.js';
import { streamError } from '../core/errors.js';
import { formatIp } from '../core/log.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import type { Connection } from '../transport/connection.js';
import { escapeAttr, type XmlElement, x } from '../xml/element.js';
import { Jid, JidError } from '../xml/jid.js';
import { StreamParser } from '../xml/parser.js';

export const NS_CLIENT = 'jabber:client';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';
export const NS_SASL_CB = 'urn:xmpp:sasl-cb:0';

const MAX_AUTH_ATTEMPTS = 3;

/** `detached`: bound, but the connection is gone and a module (stream management) keeps the session for resumption. */
type Phase = 'header' | 'negotiating' | 'bound' | 'detached' | 'closed';

/** One stage of a session's outbound path. */
export type Output = (stanza: XmlElement) => void;

/** Where the listener keeps the streams that have a connection, for its timers. */
export interface StreamTracker {
  add(stream: ClientStream): unknown;
  delete(stream: ClientStream): unknown;
}

/** What a module adding stream features (stream management, CSI) learns about the stream. */
export interface StreamFeaturesEvent {
  features: XmlElement;
  /** The hosted domain the stream is for. */
  host: string;
  authenticated: boolean;
  bound: boolean;
  secure: boolean;
}

/** A top-level element that is not a stanza (e.g. `<r xmlns='urn:xmpp:sm:3'/>`), for the module owning its namespace. */
export interface NonzaEvent {
  element: XmlElement;
  session: ClientSession | undefined;
  stream: ClientStream;
}

/**
 * An `iq` sent before authentication (in-band registration, XEP-0077), for the module owning the
 * namespace of its child. Anything unhandled closes the stream with `not-authorized`.
 */
export interface UnauthenticatedIqEvent {
  stanza: XmlElement;
  /** The hosted domain the stream is for. */
  host: string;
  secure: boolean;
  /** The peer's address, for in-memory rate limits only; never stored. */
  peer: string | undefined;
  /**
   * What modules remember about this stream before authentication (an accepted invitation token), by
   * module name; it is the session's `state` once bound, and goes with the stream.
   */
  state: Map<string, unknown>;
  reply(stanza: XmlElement): void;
}

/**
 * One client stream (RFC 6120): stream header, STARTTLS, SASL, resource binding, then stanzas for
 * the router. It owns the Connection; features only ever see it as a ClientSession.
 *
 * Stream-level features (stream management, client state indication) get a few hooks and nothing
 * more: `wrapOutput` to see, hold or queue what the session sends, `onInboundStanza` to count what
 * it receives, `write` for their nonzas, the `session/connection-lost` event to keep a session whose
 * connection dropped (`detached`), and `handOver` to give a new connection to such a session.
 */
export class ClientStream implements ClientSession {
  readonly id = randomUUID();
  private phase: Phase = 'header';
  private connection: Connection;
  private parser: StreamParser;
  private host: string;
  private username: string | undefined;
  private fullJid: Jid | undefined;
  private mechanism: SaslMechanism | undefined;
  private authAttempts = 0;
  private awaitingTls = false;
  private queue: XmlElement[] = [];
  private busy = false;
  private readonly outputStages: { priority: number; wrap: (next: Output) => Output }[] = [];
  private readonly toWire: Output = (stanza) => this.write(stanza);
  private output = this.toWire;
  private readonly inboundWatchers: ((stanza: XmlElement) => void)[] = [];
  lastActivity = Date.now();
  readonly openedAt = Date.now();

  presence: XmlElement | undefined;
  priority = 0;
  interested = false;
  readonly directedPresence = new Set<string>();
  readonly state: Map<string, unknown> = new Map();

  constructor(
    private readonly server: Server,
    connection: Connection,
    private readonly tracker: StreamTracker,
  ) {
    this.host = server.config.domains[0] as string;
    const { limits } = server.config;
    this.connection = connection;
    this.parser = new StreamParser({
      maxStanzaBytes: limits.maxStanzaBytes,
      maxDepth: limits.maxDepth,
      maxAttributes: limits.maxAttributes,
    });
    this.listen();
    tracker.add(this);
    this.server.log.debug(
      { stream: this.id, ip: formatIp(connection.remoteAddress, server.config.log.ip) },
      'client connected',
    );
  }

  /** Points the parser's and the connection's events at this stream (again, after `handOver`). */
  private listen(): void {
    const parser = this.parser;
    parser.removeAllListeners();
    parser.on('streamStart', (attrs: Record<string, string>, name: string) => this.onStreamStart(name, attrs));
    parser.on('stanza', (el: XmlElement) => this.onElement(el));
    parser.on('streamEnd', () => this.awaitingTls || this.close());
    parser.on('error', (e: { condition: string; text: string }) => {
      if (!this.awaitingTls) this.close({ condition: e.condition, text: e.text });
    });
    this.connection.setHandlers({
      data: (chunk) => {
        this.lastActivity = Date.now();
        // A bug in handling one client's input must end that stream only, never the process.
        try {
          parser.write(chunk);
        } catch (err) {
          this.internalError(err);
        }
      },
      close: () => this.connectionLost(),
    });
  }

  get jid(): Jid {
    if (!this.fullJid) throw new Error('session is not bound');
    return this.fullJid;
  }

  get secure(): boolean {
    return this.connection.secure;
  }

  get bound(): boolean {
    return this.phase === 'bound';
  }

  get isClosed(): boolean {
    return this.phase === 'closed';
  }

  /** The authenticated account (bare JID), from SASL success on; undefined before. */
  get user(): Jid | undefined {
    return this.username === undefined ? undefined : new Jid(this.username, this.host);
  }

  send(stanza: XmlElement): void {
    if (this.phase !== 'closed') this.output(stanza);
  }

  /** Writes an element to the client as is, past the output stages: nonzas, and stanzas being resent. Dropped while detached. */
  write(el: XmlElement): void {
    if (this.phase !== 'closed' && this.phase !== 'detached') this.connection.write(el.toString());
  }

  /**
   * Adds a stage to the outbound path of `send`: `wrap` gets the next stage (towards the wire) and
   * returns the new one. Higher priorities sit further from the wire. The chain is rebuilt when a
   * stage is added, so `wrap` runs again then: a stage that sends later (a flush) keeps the latest `next`.
   */
  wrapOutput(priority: number, wrap: (next: Output) => Output): void {
    const stages = this.outputStages;
    const at = stages.findIndex((s) => s.priority < priority);
    stages.splice(at === -1 ? stages.length : at, 0, { priority, wrap });
    this.output = stages.reduceRight((next, stage) => stage.wrap(next), this.toWire);
  }

  /** Calls `watcher` with every stanza the client sends, as it is taken for processing (not with nonzas). */
  onInboundStanza(watcher: (stanza: XmlElement) => void): void {
    this.inboundWatchers.push(watcher);
  }

  /** Whitespace keepalive (RFC 6120 §4.6.1). */
  keepalive(): void {
    if (this.phase === 'bound') this.connection.write(' ');
  }

  /**
   * Ends the stream, and the session for good. `detail` is an application-specific condition for the
   * stream error (RFC 6120 §4.9.4). A detached session just ends.
   */
  close(error?: { condition: string; text?: string; detail?: XmlElement }): void {
    if (this.phase === 'closed') return;
    if (this.phase !== 'detached') {
      if (this.phase === 'header') this.connection.write(this.header());
      if (error) {
        const el = streamError(error.condition, error.text);
        if (error.detail) el.append(error.detail);
        this.connection.write(el.toString());
        this.server.log.debug({ stream: this.id, condition: error.condition }, 'stream error');
      }
      this.connection.write('</stream:stream>');
      this.connection.end();
    }
    this.end();
  }

  /**
   * The connection went away without a closing `</stream:stream>` (XEP-0198 §6 calls that an
   * unfinished stream). A `session/connection-lost` handler returning true keeps the session,
   * detached; otherwise it ends.
   */
  private connectionLost(): void {
    if (this.phase === 'closed' || this.phase === 'detached') return;
    if (this.phase === 'bound' && this.server.hooks.fire('session/connection-lost', { session: this }) === true) {
      this.phase = 'detached';
      // Elements read but not yet taken for processing were not counted as handled: the client resends them.
      this.queue = [];
      this.tracker.delete(this);
      this.server.log.debug({ stream: this.id }, 'connection lost, session detached');
      return;
    }
    this.end();
  }

  private end(): void {
    const hadSession = this.phase === 'bound' || this.phase === 'detached';
    if (this.phase !== 'detached') this.tracker.delete(this);
    this.phase = 'closed';
    this.queue = [];
    if (hadSession && this.server.sessions.remove(this)) {
      void this.server.hooks
        .notify('session/closed', { session: this })
        .catch((err) => this.server.log.error({ err }, 'session/closed handler failed'));
    }
  }

  /**
   * Stream resumption (XEP-0198 §5): this authenticated, unbound stream gives its connection to
   * `target`, a bound or detached session of the same account, and ends without a session of its
   * own. A connection `target` still has is closed with `conflict`; what it had read but not begun
   * processing is dropped, as on a lost connection. The caller checks the account and that
   * `target` is not closed.
   */
  handOver(target: ClientStream): void {
    if (target.phase === 'bound') {
      const old = target.connection;
      old.setHandlers({ data: () => {}, close: () => {} });
      old.write(streamError('conflict', 'the session was resumed on another connection').toString());
      old.write('</stream:stream>');
      old.end();
    } else {
      this.tracker.add(target);
    }
    target.connection = this.connection;
    target.parser = this.parser;
    target.listen();
    target.phase = 'bound';
    target.queue = this.queue;
    target.lastActivity = Date.now();
    // What follows <resume/> waits until the caller has answered it, then runs in order.
    if (!target.busy) {
      target.busy = true;
      queueMicrotask(() => target.drain());
    }
    this.phase = 'closed';
    this.queue = [];
    this.tracker.delete(this);
    this.server.log.debug({ stream: this.id, session: target.id }, 'session resumed on this connection');
  }

  private header(): string {
    return (
      `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}'` +
      ` id='${randomBytes(12).toString('hex')}' from='${escapeAttr(this.host)}' version='1.0' xml:lang='en'>`
    );
  }

  private onStreamStart(name: string, attrs: Record<string, string>): void {
    if (this.awaitingTls) return;
    const to = attrs.to ? Jid.tryParse(attrs.to) : undefined;
    if (to && !to.local && !to.resource && this.server.hosts.has(to.domain)) this.host = to.domain;
    const wasHeader = this.phase === 'header';
    this.connection.write(this.header());
    if (wasHeader) this.phase = 'negotiating';
    // RFC 6120 §4.8: the stream element and its namespaces must be exactly these.
    if (name !== 'stream:stream' || attrs['xmlns:stream'] !== NS_STREAM)
      return this.close({
        condition: 'invalid-namespace',
        text: 'expected stream:stream in http://etherx.jabber.org/streams',
      });
    if (attrs.xmlns !== NS_CLIENT)
      return this.close({ condition: 'invalid-namespace', text: 'this port serves jabber:client streams' });
    if (!to || to.local || to.resource || !this.server.hosts.has(to.domain))
      return this.close({ condition: 'host-unknown', text: 'this server does not host that domain' });
    const version = attrs.version ?? '0.9';
    if (Number.parseInt(version, 10) < 1)
      return this.close({ condition: 'unsupported-version', text: 'XMPP 1.0 or newer is required' });
    this.sendFeatures();
  }

  private sendFeatures(): void {
    const features = x('stream:features');
    const authenticated = this.username !== undefined;
    const requireTls = this.server.config.c2s.requireEncryption;
    if (!authenticated && this.connection.canStartTls) {
      const starttls = features.c('starttls', { xmlns: NS_TLS });
      if (requireTls) starttls.c('required');
    }
    if (!authenticated && (this.secure || !requireTls)) {
      const ctx = this.saslContext();
      const mechs = features.c('mechanisms', { xmlns: NS_SASL });
      for (const m of offeredMechanisms(ctx, this.server.config.auth.mechanisms)) mechs.c('mechanism').t(m);
      const cbTypes = ctx.channelBindingTypes;
      if (cbTypes.length) {
        const cb = features.c('sasl-channel-binding', { xmlns: NS_SASL_CB });
        for (const type of cbTypes) cb.c('channel-binding', { type });
      }
    }
    if (authenticated) {
      features.c('bind', { xmlns: NS_BIND });
      // RFC 3921 session establishment, optional: old clients still ask for it (RFC 6121 Appendix E).
      features.c('session', { xmlns: NS_SESSION }).c('optional');
    }
    void this.server.hooks.fire<StreamFeaturesEvent>('stream-features', {
      features,
      host: this.host,
      authenticated,
      bound: false,
      secure: this.secure,
    });
    this.connection.write(features.toString());
  }

  private saslContext(): SaslContext {
    const connection = this.connection;
    const accounts = this.server.accounts;
    const host = this.host;
    return {
      secure: connection.secure,
      domain: host,
      scramIterations: this.server.config.auth.scramIterations,
      channelBindingDowngrade: this.server.config.auth.channelBindingDowngrade,
      channelBindingTypes: connection.channelBindingTypes(),
      channelBinding: (type) => connection.channelBinding(type),
      lookupCredentials: async (username, hash) => {
        let jid: Jid;
        try {
          jid = new Jid(username, host);
        } catch {
          return undefined;
        }
        return accounts.credentials(jid, hash);
      },
    };
  }

  /** Elements are processed strictly in order (RFC 6120 §10.1), even when a handler is async. */
  private onElement(el: XmlElement): void {
    if (this.phase === 'closed' || this.awaitingTls) return;
    if (this.busy) {
      this.queue.push(el);
      return;
    }
    let result: void | Promise<void>;
    try {
      result = this.process(el);
    } catch (err) {
      this.internalError(err);
      return;
    }
    if (result instanceof Promise) {
      this.busy = true;
      result.catch((err) => this.internalError(err)).finally(() => this.drain());
    }
  }

  private drain(): void {
    this.busy = false;
    while (this.queue.length && !this.busy && this.phase !== 'closed') this.onElement(this.queue.shift() as XmlElement);
  }

  private internalError(err: unknown): void {
    this.server.log.error({ err, stream: this.id }, 'error while processing a client element');
    this.close({ condition: 'internal-server-error' });
  }

  private process(el: XmlElement): void | Promise<void> {
    if (this.phase === 'bound') {
      if (el.attrs.xmlns === NS_CLIENT && (el.name === 'message' || el.name === 'presence' || el.name === 'iq')) {
        // RFC 6120 §8.1.2.1: a from that is neither our full nor bare JID is a spoofing attempt.
        if (el.attrs.from !== undefined) {
          const from = Jid.tryParse(el.attrs.from);
          if (!from || !(from.equals(this.jid) || from.equals(this.jid.bare)))
            return this.close({ condition: 'invalid-from', text: 'the from address is not yours' });
        }
        for (const watcher of this.inboundWatchers) watcher(el);
        return this.server.router.fromClient(this, el);
      }
      return this.nonza(el);
    }
    const ns = el.xmlns;
    if (ns === NS_TLS && el.name === 'starttls') return this.startTls();
    if (ns === NS_SASL) return this.sasl(el);
    if (this.username !== undefined && el.name === 'iq' && ns === NS_CLIENT) return this.bind(el);
    if (this.username === undefined && el.name === 'iq' && ns === NS_CLIENT) return this.unauthenticatedIq(el);
    if (el.name === 'iq' || el.name === 'message' || el.name === 'presence')
      return this.close({ condition: 'not-authorized', text: 'authenticate and bind a resource first' });
    return this.nonza(el);
  }

  private unauthenticatedIq(iq: XmlElement): void | Promise<void> {
    const child = iq.elements()[0];
    const name = child ? `c2s/unauthenticated-iq/${child.xmlns}:${child.localName}` : undefined;
    if (!child || iq.elements().length !== 1 || !name || !this.server.hooks.has(name))
      return this.close({ condition: 'not-authorized', text: 'authenticate first' });
    const refuse = (handled: boolean) => {
      if (!handled) this.close({ condition: 'not-authorized', text: 'authenticate first' });
    };
    const handled = this.server.hooks.fire<UnauthenticatedIqEvent>(name, {
      stanza: iq,
      host: this.host,
      secure: this.secure,
      peer: this.connection.remoteAddress,
      state: this.state,
      reply: (stanza) => this.write(stanza),
    });
    if (handled instanceof Promise) return handled.then(refuse);
    refuse(handled);
  }

  private nonza(el: XmlElement): void | Promise<void> {
    const name = `nonza/${el.xmlns}:${el.localName}`;
    if (!this.server.hooks.has(name))
      return this.close({ condition: 'unsupported-stanza-type', text: `unexpected element ${el.name}` });
    const handled = this.server.hooks.fire<NonzaEvent>(name, {
      element: el,
      session: this.phase === 'bound' ? this : undefined,
      stream: this,
    });
    if (handled instanceof Promise) return handled.then(() => undefined);
  }

  private async startTls(): Promise<void> {
    if (!this.connection.canStartTls || this.username !== undefined)
      return this.close({ condition: 'policy-violation', text: 'STARTTLS is not available now' });
    this.connection.write(`<proceed xmlns='${NS_TLS}'/>`);
    // Plaintext that followed <starttls/> in the same read must never count as part of the encrypted
    // stream (CVE-2011-1431 class): ignore it, and start parsing afresh only once TLS is up.
    this.awaitingTls = true;
    try {
      await this.connection.startTls();
    } catch {
      this.connection.destroy();
      this.end();
      return;
    }
    this.parser.reset();
    this.awaitingTls = false;
  }

  private async sasl(el: XmlElement): Promise<void> {
    if (this.username !== undefined)
      return this.close({ condition: 'policy-violation', text: 'already authenticated' });
    if (el.name === 'abort') {
      this.mechanism = undefined;
      return this.saslFailure({ kind: 'failure', condition: 'aborted' });
    }
    if (!this.secure && this.server.config.c2s.requireEncryption)
      return this.saslFailure({ kind: 'failure', condition: 'encryption-required', text: 'use STARTTLS first' });
    let data: Buffer;
    const text = el.text().trim();
    if (text === '=' || text === '') data = Buffer.alloc(0);
    else if (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0) data = Buffer.from(text, 'base64');
    else return this.saslFailure({ kind: 'failure', condition: 'incorrect-encoding' });

    if (el.name === 'auth') {
      const name = el.attrs.mechanism ?? '';
      if (name === 'PLAIN' && !this.secure)
        return this.saslFailure({ kind: 'failure', condition: 'encryption-required', text: 'PLAIN needs TLS' });
      this.mechanism = createMechanism(name, this.saslContext(), this.server.config.auth.mechanisms);
      if (!this.mechanism) return this.saslFailure({ kind: 'failure', condition: 'invalid-mechanism' });
    } else if (el.name !== 'response' || !this.mechanism) {
      return this.saslFailure({
        kind: 'failure',
        condition: 'malformed-request',
        text: 'no authentication in progress',
      });
    }
    const step = await this.mechanism.step(data);
    if (this.phase === 'closed') return;
    if (step.kind === 'challenge') {
      this.connection.write(`<challenge xmlns='${NS_SASL}'>${step.data.toString('base64') || '='}</challenge>`);
      return;
    }
    this.mechanism = undefined;
    if (step.kind === 'failure') return this.saslFailure(step);
    // Only after the right password: a locked or deactivated account is told why (RFC 6120 §6.5.1).
    const refusal = await this.server.accounts.loginRefusal(new Jid(step.username, this.host));
    if ((this.phase as Phase) === 'closed') return;
    if (refusal) return this.saslFailure({ kind: 'failure', condition: 'account-disabled', text: refusal });
    this.username = step.username;
    this.server.log.debug({ stream: this.id, user: `${step.username}@${this.host}` }, 'authenticated');
    this.connection.write(
      step.data?.length
        ? `<success xmlns='${NS_SASL}'>${step.data.toString('base64')}</success>`
        : `<success xmlns='${NS_SASL}'/>`,
    );
    this.parser.reset();
  }

  private saslFailure(step: Extract<SaslStep, { kind: 'failure' }>): void {
    const failure = x('failure', { xmlns: NS_SASL }, x(step.condition));
    if (step.text) failure.c('text', { 'xml:lang': 'en' }).t(step.text);
    this.connection.write(failure.toString());
    if (step.condition !== 'aborted' && ++this.authAttempts >= MAX_AUTH_ATTEMPTS)
      this.close({ condition: 'policy-violation', text: 'too many failed authentication attempts' });
  }

  private bind(iq: XmlElement): void {
    const child = iq.elements()[0];
    const reply = (payload?: XmlElement) => {
      const result = x('iq', { type: 'result', id: iq.attrs.id });
      if (payload) result.append(payload);
      this.connection.write(result.toString());
    };
    const fail = (type: string, condition: string, text?: string) => {
      const err = x(
        'iq',
        { type: 'error', id: iq.attrs.id },
        x('error', { type }, x(condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' })),
      );
      if (text)
        err.getChild('error')?.c('text', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas', 'xml:lang': 'en' }).t(text);
      this.connection.write(err.toString());
    };
    if (iq.attrs.type !== 'set' || !child) return fail('cancel', 'service-unavailable');
    if (child.is('session', NS_SESSION)) return reply();
    if (!child.is('bind', NS_BIND)) return this.close({ condition: 'not-authorized', text: 'bind a resource first' });
    const username = this.username as string;
    const bare = `${username}@${this.host}`;
    const requested = child.getChildText('resource')?.trim();
    let jid: Jid;
    try {
      jid = new Jid(username, this.host, requested || generatedResource());
    } catch (err) {
      if (err instanceof JidError) return fail('modify', 'bad-request', `invalid resource: ${err.message}`);
      throw err;
    }
    const existing = this.server.sessions.get(bare, jid.resource);
    if (existing) {
      const policy = this.server.config.c2s.resourceConflict;
      if (policy === 'refuse') return fail('cancel', 'conflict', 'that resource is in use');
      if (policy === 'random') jid = jid.withResource(generatedResource());
      else existing.close({ condition: 'conflict', text: 'replaced by a new connection with the same resource' });
    }
    this.fullJid = jid;
    this.phase = 'bound';
    this.server.sessions.add(this);
    reply(x('bind', { xmlns: NS_BIND }, x('jid', {}, jid.toString())));
    void this.server.hooks.notify('session/bound', { session: this });
  }
}

function generatedResource(): string {
  return `lethe-${randomBytes(6).toString('hex')}`;
}
