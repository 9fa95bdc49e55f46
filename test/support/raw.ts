import net from 'node:net';
import tls from 'node:tls';

/**
 * A raw XMPP client over a real socket, for the tests that must send what no library would:
 * malformed XML, DTDs, oversized stanzas. It accumulates everything the server sends as text.
 */
export class RawClient {
  private socket: net.Socket | tls.TLSSocket;
  buffer = '';
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static connect(port: number, options: { tls?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = options.tls
        ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(new RawClient(socket)))
        : net.connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('utf8');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  get tlsSocket(): tls.TLSSocket | undefined {
    return this.socket instanceof tls.TLSSocket ? this.socket : undefined;
  }

  /** Writes and returns whether the socket accepted it (false once closed). */
  write(data: string | Buffer): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) return resolve(false);
      this.socket.write(data, (err) => resolve(!err));
    });
  }

  /** Waits until the received text matches, or rejects after `timeoutMs`. */
  async waitFor(pattern: RegExp | string, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = typeof pattern === 'string' ? this.buffer.includes(pattern) : pattern.exec(this.buffer);
      if (m) return typeof m === 'boolean' ? pattern.toString() : m[0];
      if (this.closed) throw new Error(`connection closed before ${pattern}; got: ${this.buffer.slice(-500)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; got: ${this.buffer.slice(-500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Opens a client stream to `domain` and waits for the features. */
  async open(domain: string): Promise<string> {
    const mark = this.buffer.length;
    await this.write(
      `<?xml version='1.0'?><stream:stream to='${domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    await this.waitFor(/<\/stream:features>|<stream:features\/>/);
    return this.buffer.slice(mark);
  }

  /** STARTTLS negotiation, then a new stream; returns the features offered over TLS. */
  async startTls(domain: string): Promise<string> {
    await this.open(domain);
    await this.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await this.waitFor('<proceed');
    return this.upgrade(domain);
  }

  /** After <proceed/>: the TLS handshake over the same socket, then a new stream. */
  async upgrade(domain: string): Promise<string> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, servername: domain }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.buffer = '';
    this.attach(secure);
    return this.open(domain);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
