import type { AddressInfo, Server as NetServer } from 'node:net';
import tls from 'node:tls';
import type { Server } from '../core/server.js';
import type { CertificatePair } from '../transport/certs.js';
import { serverEndPoint } from '../transport/certs.js';
import { listenTcp, type TlsSettings } from '../transport/tcp.js';
import { ClientStream } from './stream.js';

const SWEEP_INTERVAL_MS = 5_000;

/**
 * The client listeners (STARTTLS port and direct TLS port) and the timers that close streams that
 * never authenticate or go silent. One sweep for all streams, rather than a timer each, keeps idle
 * connections cheap.
 */
export class ClientListener {
  private readonly servers: NetServer[] = [];
  private readonly streams = new Set<ClientStream>();
  private sweeper: NodeJS.Timeout | undefined;
  readonly ports: { starttls: number; directTls: number | null } = { starttls: 0, directTls: null };

  constructor(
    private readonly server: Server,
    private readonly certificate: CertificatePair,
  ) {}

  get connectionCount(): number {
    return this.streams.size;
  }

  async start(): Promise<void> {
    const { c2s, tls: tlsConfig } = this.server.config;
    const settings: TlsSettings = {
      cert: this.certificate.cert,
      key: this.certificate.key,
      context: tls.createSecureContext({
        cert: this.certificate.cert,
        key: this.certificate.key,
        minVersion: tlsConfig.minVersion,
      }),
      endPoint: serverEndPoint(this.certificate.cert),
      minVersion: tlsConfig.minVersion,
    };
    const onConnection = (connection: ConstructorParameters<typeof ClientStream>[1]) => {
      new ClientStream(this.server, connection, this.streams);
    };
    const plain = await listenTcp({ host: c2s.host, port: c2s.port, tls: settings, directTls: false, onConnection });
    this.servers.push(plain);
    this.ports.starttls = (plain.address() as AddressInfo).port;
    if (c2s.directTlsPort !== null) {
      const direct = await listenTcp({
        host: c2s.host,
        port: c2s.directTlsPort,
        tls: settings,
        directTls: true,
        onConnection,
      });
      this.servers.push(direct);
      this.ports.directTls = (direct.address() as AddressInfo).port;
    }
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    const { authTimeout, idleTimeout, keepaliveInterval } = this.server.config.c2s;
    for (const stream of this.streams) {
      if (!stream.bound) {
        if (now - stream.openedAt > authTimeout * 1000)
          stream.close({ condition: 'connection-timeout', text: 'authentication took too long' });
        continue;
      }
      const silent = now - stream.lastActivity;
      if (idleTimeout > 0 && silent > idleTimeout * 1000)
        stream.close({ condition: 'connection-timeout', text: 'no activity' });
      else if (
        keepaliveInterval > 0 &&
        silent > keepaliveInterval * 1000 &&
        silent % (keepaliveInterval * 1000) < SWEEP_INTERVAL_MS
      )
        stream.keepalive();
    }
  }

  /** Stops accepting, then ends every stream with `system-shutdown` (RFC 6120 §4.9.3.22). */
  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const stream of this.streams)
      stream.close({ condition: 'system-shutdown', text: 'the server is shutting down' });
    await Promise.all(closing);
  }
}
