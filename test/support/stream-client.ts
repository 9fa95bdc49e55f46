import type { XmlElement } from '../../src/xml/element.js';
import { StreamParser } from '../../src/xml/parser.js';
import { PASSWORD, type TestServer } from './lethe.js';
import { RawClient } from './raw.js';

export const NS_SM = 'urn:xmpp:sm:3';
export const NS_CSI = 'urn:xmpp:csi:0';

const isStanza = (el: XmlElement) => el.name === 'message' || el.name === 'presence' || el.name === 'iq';

/**
 * A client over a real socket that parses what the server sends into elements, for tests that
 * must control the stream itself: when to acknowledge (XEP-0198), when to drop the connection.
 * Authenticates with PLAIN over STARTTLS.
 */
export class StreamClient {
  /** Every element received on the authenticated stream, in order. */
  readonly received: XmlElement[] = [];
  /** Elements `next` has already returned, so each is taken once. */
  private readonly taken = new Set<XmlElement>();
  private readonly parser = new StreamParser({ maxStanzaBytes: 1 << 20, maxDepth: 64, maxAttributes: 64 });
  private offset = 0;
  /** Full JID once bound. */
  jid = '';

  private constructor(
    readonly raw: RawClient,
    /** The stream features after authentication. */
    readonly features: string,
  ) {
    this.parser.on('stanza', (el: XmlElement) => this.received.push(el));
    this.parser.on('error', () => {});
  }

  /** Connects and authenticates as `user`; binds `resource` when given. */
  static async login(server: TestServer, user: string, resource?: string): Promise<StreamClient> {
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    await raw.write(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`,
    );
    await raw.waitFor('<success');
    raw.buffer = '';
    const client = new StreamClient(raw, await raw.open(server.domain));
    if (resource !== undefined) await client.bind(resource);
    return client;
  }

  async bind(resource: string): Promise<void> {
    await this.send(
      `<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`,
    );
    const result = await this.next((el) => el.name === 'iq' && el.attrs.id === 'bind');
    if (result.attrs.type !== 'result') throw new Error(`bind failed: ${result}`);
    this.jid = result.getChild('bind')?.getChildText('jid') ?? '';
  }

  send(data: string): Promise<boolean> {
    return this.raw.write(data);
  }

  private pump(): void {
    if (this.raw.buffer.length > this.offset) {
      this.parser.write(this.raw.buffer.slice(this.offset));
      this.offset = this.raw.buffer.length;
    }
  }

  /** The first element not taken yet that matches, waiting for it up to `timeoutMs`. */
  async next(match: (el: XmlElement) => boolean, timeoutMs = 5000, what = 'a matching element'): Promise<XmlElement> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.pump();
      const found = this.received.find((el) => !this.taken.has(el) && match(el));
      if (found) {
        this.taken.add(found);
        return found;
      }
      if (Date.now() > deadline || this.raw.closed)
        throw new Error(`no ${what}; received: ${this.received.map(String).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Everything received so far (after waiting `ms` for stragglers). */
  async settle(ms = 300): Promise<XmlElement[]> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.pump();
    return this.received;
  }

  /** Stanzas (not nonzas) received since stream management was enabled or resumed: what 'h' counts. */
  stanzas(): XmlElement[] {
    this.pump();
    const start = this.received.findLastIndex(
      (el) => el.xmlns === NS_SM && (el.name === 'enabled' || el.name === 'resumed'),
    );
    return this.received.slice(start + 1).filter(isStanza);
  }

  /** Sends `<enable/>` and returns the `<enabled/>` (or throws with the `<failed/>`). */
  async enable(attrs = ''): Promise<XmlElement> {
    await this.send(`<enable xmlns='${NS_SM}' ${attrs}/>`);
    const answer = await this.next((el) => el.xmlns === NS_SM && (el.name === 'enabled' || el.name === 'failed'));
    if (answer.name === 'failed') throw new Error(`enable failed: ${answer}`);
    return answer;
  }

  /** Acknowledges `h` stanzas (default: all received so far). */
  ack(h = this.stanzas().length): Promise<boolean> {
    return this.send(`<a xmlns='${NS_SM}' h='${h}'/>`);
  }

  /** Drops the TCP connection without closing the stream, as a phone losing its network does. */
  async kill(): Promise<void> {
    this.raw.destroy();
    await this.raw.waitClosed();
  }
}
