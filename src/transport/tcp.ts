import { randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { ChannelBindingType } from '../auth/types.js';
import type { Connection } from './connection.js';

const EXPORTER_LABEL = 'EXPORTER-Channel-Binding';

export interface TlsSettings {
  /** PEM certificate chain and key: tls.createServer builds its own context from these. */
  cert: string;
  key: string;
  context: tls.SecureContext;
  /** RFC 5929 tls-server-end-point data of the served certificate. */
  endPoint: Buffer;
  minVersion: tls.SecureVersion;
}

/**
 * Output written during one turn of the event loop goes out in one socket write at its end: routing
 * a burst of stanzas then costs one system call (and, with TLS, one record) per connection rather
 * than one per stanza, which profiling showed to be most of the server's CPU time under load.
 */
const unflushed = new Set<TcpConnection>();
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  for (const connection of unflushed) connection.flush();
  unflushed.clear();
}

/** A TCP connection, plain with STARTTLS or TLS from the start. */
export class TcpConnection implements Connection {
  readonly id = randomUUID();
  readonly remoteAddress: string | undefined;
  private socket: net.Socket;
  private handlers: { data(chunk: Buffer): void; close(): void } | undefined;
  private closed = false;
  /** Written and not yet handed to the socket (see `unflushed`). */
  private pending = '';

  constructor(
    socket: net.Socket,
    private readonly tlsSettings: TlsSettings | undefined,
    readonly directTls: boolean,
  ) {
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.attach(socket);
  }

  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket && this.socket.encrypted;
  }

  get canStartTls(): boolean {
    return !this.secure && this.tlsSettings !== undefined;
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => this.handlers?.data(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (socket !== this.socket || this.closed) return;
      this.closed = true;
      this.handlers?.close();
    });
  }

  setHandlers(handlers: { data(chunk: Buffer): void; close(): void }): void {
    this.handlers = handlers;
  }

  write(data: string): void {
    if (this.closed) return;
    this.pending += data;
    unflushed.add(this);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushAll);
    }
  }

  /** Hands what was written to the socket now. */
  flush(): void {
    const data = this.pending;
    if (!data) return;
    this.pending = '';
    if (!this.closed && this.socket.writable) this.socket.write(data);
  }

  startTls(): Promise<void> {
    const settings = this.tlsSettings;
    if (!settings || this.secure) return Promise.reject(new Error('TLS is not available on this connection'));
    // What was written before the upgrade (the `<proceed/>`) goes out in the clear.
    this.flush();
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const secure = new tls.TLSSocket(plain, {
      isServer: true,
      secureContext: settings.context,
      ALPNProtocols: ['xmpp-client'],
    });
    this.socket = secure;
    secure.setNoDelay(true);
    this.attach(secure);
    plain.on('close', () => secure.destroy());
    return new Promise((resolve, reject) => {
      secure.once('secure', () => resolve());
      secure.once('error', reject);
    });
  }

  channelBindingTypes(): ChannelBindingType[] {
    if (!(this.socket instanceof tls.TLSSocket) || !this.tlsSettings) return [];
    // tls-exporter is only safe with TLS 1.3 (RFC 9266 §3); tls-server-end-point works everywhere.
    return this.socket.getProtocol() === 'TLSv1.3'
      ? ['tls-exporter', 'tls-server-end-point']
      : ['tls-server-end-point'];
  }

  channelBinding(type: ChannelBindingType): Buffer | undefined {
    if (!(this.socket instanceof tls.TLSSocket) || !this.tlsSettings) return undefined;
    if (type === 'tls-server-end-point') return this.tlsSettings.endPoint;
    if (this.socket.getProtocol() !== 'TLSv1.3') return undefined;
    return this.socket.exportKeyingMaterial(32, EXPORTER_LABEL, Buffer.alloc(0));
  }

  end(): void {
    if (this.closed) return;
    this.flush();
    this.socket.end();
    // A peer that never closes its side must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }

  destroy(): void {
    this.pending = '';
    this.socket.destroy();
  }
}

/**
 * Listens for TCP connections; with `directTls` the TLS handshake happens before any XMPP (XEP-0368).
 * Resolves with the bound server once listening (its port may have been 0 = ephemeral).
 */
export function listenTcp(options: {
  host: string;
  port: number;
  tls: TlsSettings | undefined;
  directTls: boolean;
  onConnection(connection: Connection): void;
}): Promise<net.Server> {
  const { tls: settings, directTls, onConnection } = options;
  const server =
    directTls && settings
      ? tls.createServer(
          { cert: settings.cert, key: settings.key, ALPNProtocols: ['xmpp-client'], minVersion: settings.minVersion },
          (socket) => onConnection(new TcpConnection(socket, settings, true)),
        )
      : net.createServer((socket) => onConnection(new TcpConnection(socket, settings, false)));
  // Failed handshakes and resets are the peer's problem; they must never reach the process.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port, backlog: 4096 }, () => {
      server.off('error', reject);
      server.on('error', () => {});
      resolve(server);
    });
  });
}
