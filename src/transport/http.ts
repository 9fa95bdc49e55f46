import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../core/config.js';
import { type HttpRequest, type HttpResponse, type HttpRoutes, publicBaseUrl } from '../core/http-routes.js';
import { formatIp, type Logger } from '../core/log.js';
import type { CertificatePair } from './certs.js';

/**
 * The HTTPS listener: TLS with the server's certificate, limits and timeouts, security headers on
 * every answer, HEAD, 404 and 405. What is served comes from the routes (src/core/http-routes.ts);
 * this file knows no feature.
 */

/** Everything served is personal or about a person: nothing may be cached, framed, sniffed or leak a Referer. */
const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

/** Large enough for cookies and an Authorization header, small enough that headers cannot eat memory. */
const MAX_HEADER_BYTES = 16_384;
const KEEP_ALIVE_MS = 5_000;

export interface HttpListenerOptions {
  routes: HttpRoutes;
  config: Config;
  log: Logger;
  certificate: CertificatePair;
}

export class HttpListener {
  private server: HttpsServer | undefined;
  port: number | null = null;

  constructor(private readonly options: HttpListenerOptions) {}

  async start(): Promise<void> {
    const { config, certificate, routes } = this.options;
    const { host, port, requestTimeout } = config.http;
    const headers = { ...SECURITY_HEADERS };
    // HSTS pins TLS for the whole host: only with a certificate browsers accept, or users could never click through.
    if (!certificate.selfSigned) headers['strict-transport-security'] = 'max-age=31536000';
    const server = createServer(
      {
        cert: certificate.cert,
        key: certificate.key,
        minVersion: config.tls.minVersion,
        maxHeaderSize: MAX_HEADER_BYTES,
        requestTimeout: requestTimeout * 1000,
        headersTimeout: requestTimeout * 1000,
        keepAliveTimeout: KEEP_ALIVE_MS,
      },
      (req, res) => void this.handle(req, res, headers),
    );
    // Idle sockets (a client that stops reading a download, a TLS handshake that never ends) are closed.
    server.setTimeout(requestTimeout * 1000, (socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(`http.port: ${host}:${port} is in use; pick another port or set http.enabled to false`)
            : err,
        ),
      );
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    routes.setBaseUrl(publicBaseUrl(config, this.port));
  }

  /** Stops accepting and cuts open connections, downloads included: the server is going away. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.options.routes.setBaseUrl(undefined);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, defaults: Record<string, string>): Promise<void> {
    const { routes, config, log } = this.options;
    const started = Date.now();
    let pattern: string | undefined;
    const send = async (response: HttpResponse): Promise<void> => {
      await this.send(req, res, defaults, response);
      // No path: it may carry a secret (a download token). Addresses only as `log.ip` allows.
      log.debug(
        {
          method: req.method,
          route: pattern,
          status: response.status,
          ms: Date.now() - started,
          ip: formatIp(req.socket.remoteAddress, config.log.ip),
        },
        'http request',
      );
    };
    try {
      if (!req.url?.startsWith('/')) return await send(text(400, 'Bad request'));
      const url = new URL(req.url, 'https://localhost');
      const found = routes.match(req.method ?? '', url.pathname);
      if (found.kind === 'none') return await send(text(404, 'Not found'));
      if (found.kind === 'wrong-method')
        return await send({ ...text(405, 'Method not allowed'), headers: { allow: found.allow.join(', ') } });
      pattern = found.route.pattern;
      const body = await readBody(req, config.http.maxBodyBytes);
      if (!body) return await send({ ...text(413, 'Request body too large'), headers: { connection: 'close' } });
      const request: HttpRequest = {
        method: req.method as HttpRequest['method'],
        path: url.pathname,
        params: found.params,
        query: url.searchParams,
        headers: req.headers,
        peer: req.socket.remoteAddress,
        body,
      };
      await send(await found.route.handler(request));
    } catch (err) {
      // Once the body has started, the usual failure is a client that went away mid-download.
      if (res.headersSent) {
        log.debug({ err, route: pattern }, 'http response cut short');
        res.destroy();
        return;
      }
      log.error({ err, route: pattern }, 'http handler failed');
      await send(text(500, 'Internal server error')).catch(() => res.destroy());
    }
  }

  private async send(
    req: IncomingMessage,
    res: ServerResponse,
    defaults: Record<string, string>,
    response: HttpResponse,
  ): Promise<void> {
    const { body } = response;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body instanceof Buffer ? body : undefined;
    res.statusCode = response.status;
    for (const [name, value] of Object.entries({ ...defaults, ...response.headers })) res.setHeader(name, value);
    if (bytes) res.setHeader('content-length', bytes.length);
    if (req.method === 'HEAD' || body === undefined) res.end();
    else if (typeof body === 'function') await pipeline(body(), res);
    else res.end(bytes);
  }
}

function text(status: number, message: string): HttpResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: `${message}\n` };
}

/** The body, or undefined when it is larger than `max` (announced or sent). */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  if (Number(req.headers['content-length'] ?? 0) > max) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
