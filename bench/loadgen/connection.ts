// One lightweight c2s client connection: a raw socket, the stanza scanner and
// just enough protocol to log in (STARTTLS, SASL PLAIN / SCRAM-SHA-1, bind,
// session if mandatory, initial presence) and exchange messages.

import net from 'node:net';
import tls from 'node:tls';
import { ScramSha1Client } from './scram.js';
import { attr, childText, childTexts, escapeXml, hasChild, localName, STREAM_END, StanzaScanner } from './xml.js';

export type TlsMode = 'none' | 'starttls' | 'direct';
export type Mech = 'SCRAM-SHA-1' | 'PLAIN';

export interface LoginOptions {
  host: string;
  port: number;
  domain: string;
  username: string;
  password: string;
  resource: string;
  tls: TlsMode;
  mech: Mech;
  localAddress?: string | undefined;
  timeoutMs: number;
}

const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

interface Pending {
  resolve: (el: string) => void;
  reject: (err: Error) => void;
}

export class XmppConn {
  private socket: net.Socket | undefined;
  private readonly scanner = new StanzaScanner();
  private readonly queue: string[] = [];
  private waiter: Pending | undefined;
  private readonly pendingIq = new Map<string, Pending>();
  private iqCounter = 0;
  private domain = '';
  /** Full JID assigned by the server at bind. */
  jid = '';
  tlsProtocol: string | undefined;
  tlsCipher: string | undefined;
  scramIterations: number | undefined;
  /** Set once the connection is unusable; `error` says why unless we closed it ourselves. */
  closed = false;
  error: Error | undefined;
  /** After login, receives every top-level element except iq replies. */
  onStanza: ((el: string) => void) | undefined;
  /** Called once if the connection fails after login. */
  onFail: ((err: Error) => void) | undefined;

  /** Connects and runs the whole login; resolves once the server has answered an iq sent after presence. */
  async login(o: LoginOptions): Promise<void> {
    this.domain = o.domain;
    const timer = setTimeout(() => this.fail(new Error(`login timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    try {
      await this.connect(o);
      let features = await this.openStream();
      if (o.tls === 'starttls') {
        if (!hasChild(features, 'starttls')) throw new Error('server offers no STARTTLS');
        this.send(`<starttls xmlns='${NS_TLS}'/>`);
        const reply = await this.next();
        if (localName(reply) !== 'proceed') throw new Error(`STARTTLS refused: ${reply.slice(0, 200)}`);
        await this.upgradeTls();
        features = await this.openStream();
      }
      await this.authenticate(features, o);
      features = await this.openStream();
      if (!hasChild(features, 'bind')) throw new Error('server offers no resource binding');
      const bound = await this.iq(
        `<iq type='set' id='ID'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${escapeXml(o.resource)}</resource></bind></iq>`,
      );
      const jid = attr(bound, 'type') === 'result' ? childText(bound, 'jid') : undefined;
      const bare = `${o.username}@${o.domain}`.toLowerCase();
      if (!jid?.toLowerCase().startsWith(`${bare}/`))
        throw new Error(`bind failed or wrong JID: ${bound.slice(0, 300)}`);
      this.jid = jid;
      // RFC 6121 made sessions optional; only old-style servers still require the iq.
      const session = childText(features, 'session');
      if (session !== undefined && !session.includes('optional')) {
        const r = await this.iq(`<iq type='set' id='ID'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`);
        if (attr(r, 'type') !== 'result') throw new Error(`session failed: ${r.slice(0, 300)}`);
      }
      this.send('<presence/>');
      // Presence has no reply; any answer to a later iq proves the server processed it.
      await this.ping();
    } finally {
      clearTimeout(timer);
    }
  }

  /** XEP-0199 ping to the server; any iq reply (result or error) counts as alive. */
  async ping(timeoutMs?: number): Promise<void> {
    const p = this.iq(`<iq type='get' id='ID' to='${this.domain}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    if (timeoutMs === undefined) {
      await p;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        p,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`ping timed out after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  send(data: string): void {
    if (!this.closed) this.socket?.write(data);
  }

  /** Graceful close: our stream end, then the socket end; destroyed shortly after regardless. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.socket;
    if (!s) return;
    s.end(STREAM_END);
    setTimeout(() => s.destroy(), 2000).unref();
  }

  private connect(o: LoginOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      const common = { host: o.host, port: o.port, localAddress: o.localAddress };
      const sock =
        o.tls === 'direct'
          ? tls.connect({ ...common, servername: o.domain, rejectUnauthorized: false })
          : net.connect({ ...common, noDelay: true });
      sock.setNoDelay(true);
      this.socket = sock;
      const ready = o.tls === 'direct' ? 'secureConnect' : 'connect';
      // 'close' without 'error' happens when the login timer destroys the socket.
      const onError = (err: Error) => reject(err);
      const onClose = () => reject(this.error ?? new Error('closed while connecting'));
      sock.once('error', onError);
      sock.once('close', onClose);
      sock.once(ready, () => {
        sock.off('error', onError);
        sock.off('close', onClose);
        if (sock instanceof tls.TLSSocket) this.noteTls(sock);
        this.attach(sock);
        resolve();
      });
    });
  }

  private attach(sock: net.Socket): void {
    sock.setEncoding('utf8');
    sock.on('data', this.onData);
    sock.on('error', (err: Error) => this.fail(err));
    sock.on('close', () => this.fail(new Error('connection closed by peer')));
  }

  private readonly onData = (chunk: string): void => {
    this.scanner.push(chunk, this.dispatch);
  };

  private readonly dispatch = (el: string): void => {
    if (el === STREAM_END) return this.fail(new Error('server closed the stream'));
    const name = localName(el);
    if (name === 'iq') {
      const type = attr(el, 'type');
      if (type === 'result' || type === 'error') {
        const id = attr(el, 'id');
        const p = id === undefined ? undefined : this.pendingIq.get(id);
        if (p && id !== undefined) {
          this.pendingIq.delete(id);
          p.resolve(el);
        }
      } else {
        this.answerIq(el);
      }
      return;
    }
    if (name === 'error') return this.fail(new Error(`stream error: ${el.slice(0, 300)}`));
    if (this.onStanza) return this.onStanza(el);
    if (name === 'message' || name === 'presence') return; // nothing awaits these during login
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve(el);
    } else {
      this.queue.push(el);
    }
  };

  /** Be a polite client: pong server pings, refuse anything else. */
  private answerIq(el: string): void {
    const id = escapeXml(attr(el, 'id') ?? '');
    const from = attr(el, 'from');
    const to = from ? ` to='${escapeXml(from)}'` : '';
    if (el.includes('urn:xmpp:ping')) {
      this.send(`<iq type='result' id='${id}'${to}/>`);
    } else {
      this.send(
        `<iq type='error' id='${id}'${to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
      );
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.error = err;
    this.socket?.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
    for (const p of this.pendingIq.values()) p.reject(err);
    this.pendingIq.clear();
    this.onFail?.(err);
  }

  private next(): Promise<string> {
    const el = this.queue.shift();
    if (el !== undefined) return Promise.resolve(el);
    if (this.closed) return Promise.reject(this.error ?? new Error('connection closed'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Sends an iq whose literal id='ID' is replaced by a fresh id; resolves with the reply. */
  iq(template: string): Promise<string> {
    if (this.closed) return Promise.reject(this.error ?? new Error('connection closed'));
    const id = `lg${++this.iqCounter}`;
    return new Promise((resolve, reject) => {
      this.pendingIq.set(id, { resolve, reject });
      this.send(template.replace("id='ID'", `id='${id}'`));
    });
  }

  private async openStream(): Promise<string> {
    this.scanner.reset();
    this.send(
      `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${this.domain}' version='1.0' xml:lang='en'>`,
    );
    const features = await this.next();
    if (localName(features) !== 'features') throw new Error(`expected stream features, got ${features.slice(0, 200)}`);
    return features;
  }

  private upgradeTls(): Promise<void> {
    const plain = this.socket as net.Socket;
    plain.off('data', this.onData);
    return new Promise((resolve, reject) => {
      const sock = tls.connect({ socket: plain, servername: this.domain, rejectUnauthorized: false });
      const onError = (err: Error) => reject(err);
      const onClose = () => reject(this.error ?? new Error('closed during TLS handshake'));
      sock.once('error', onError);
      sock.once('close', onClose);
      sock.once('secureConnect', () => {
        sock.off('error', onError);
        sock.off('close', onClose);
        this.socket = sock;
        this.noteTls(sock);
        this.attach(sock);
        resolve();
      });
    });
  }

  private noteTls(sock: tls.TLSSocket): void {
    this.tlsProtocol = sock.getProtocol() ?? undefined;
    this.tlsCipher = sock.getCipher()?.name;
  }

  private async authenticate(features: string, o: LoginOptions): Promise<void> {
    const mechs = childTexts(features, 'mechanism');
    if (!mechs.includes(o.mech))
      throw new Error(`server does not offer ${o.mech} (offers: ${mechs.join(' ') || 'none'})`);
    if (o.mech === 'PLAIN') {
      const creds = Buffer.from(`\0${o.username}\0${o.password}`).toString('base64');
      this.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${creds}</auth>`);
      const r = await this.next();
      if (localName(r) !== 'success') throw saslError(r);
      return;
    }
    const scram = new ScramSha1Client(o.username, o.password);
    this.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${scram.first()}</auth>`);
    const challenge = await this.next();
    if (localName(challenge) !== 'challenge') throw saslError(challenge);
    this.send(`<response xmlns='${NS_SASL}'>${await scram.final(childText(challenge, 'challenge') ?? '')}</response>`);
    this.scramIterations = scram.iterations;
    let r = await this.next();
    if (localName(r) === 'challenge') {
      // Server-final sent as a challenge (allowed by RFC 6120): verify, then answer empty.
      scram.verify(childText(r, 'challenge') ?? '');
      this.send(`<response xmlns='${NS_SASL}'/>`);
      r = await this.next();
      if (localName(r) !== 'success') throw saslError(r);
      return;
    }
    if (localName(r) !== 'success') throw saslError(r);
    scram.verify(childText(r, 'success') ?? '');
  }
}

function saslError(el: string): Error {
  return new Error(`SASL failed: ${el.slice(0, 300)}`);
}
