import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';

/** Plain HTTPS requests to the test server's listener, which has a self-signed certificate. */

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  certificate: PeerCertificate;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export function fetchHttps(port: number, path: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        rejectUnauthorized: false,
        // A fresh connection each time: a kept-alive one would hide per-request behaviour.
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const certificate = (res.socket as TLSSocket).getPeerCertificate();
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), certificate }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
