import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Config } from './config.js';

/**
 * The routes of the HTTPS listener. Features register handlers here and answer with plain values;
 * the listener (src/transport/http.ts) owns the sockets, security headers, limits and HEAD.
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  /** `HEAD` when a GET route answers a HEAD request: the body will not be sent, so side effects should wait for GET. */
  method: HttpMethod | 'HEAD';
  path: string;
  /** The `:name` segments of the route's pattern, decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The client's address, for in-memory rate limits only: never stored, and logged only as `log.ip` allows. */
  peer?: string | undefined;
  /** At most `http.maxBodyBytes`. */
  body: Buffer;
}

export interface HttpResponse {
  status: number;
  /** Added to, or replacing, the listener's defaults (which forbid caching and framing). */
  headers?: Record<string, string | string[]>;
  /** A stream is given as a function, so that it is opened only when the body is really sent (not for HEAD). */
  body?: string | Buffer | (() => Readable);
}

export type HttpHandler = (request: HttpRequest) => HttpResponse | Promise<HttpResponse>;

interface Route {
  method: HttpMethod;
  pattern: string;
  segments: string[];
  handler: HttpHandler;
}

export type RouteMatch =
  | { kind: 'found'; route: { pattern: string; handler: HttpHandler }; params: Record<string, string> }
  | { kind: 'wrong-method'; allow: string[] }
  | { kind: 'none' };

export class HttpRoutes {
  private readonly routes: Route[] = [];
  private base: string | undefined;

  /** `pattern` is a path whose segments are literal or `:name`, e.g. `/download/:token`. */
  route(method: HttpMethod, pattern: string, handler: HttpHandler): void {
    if (!pattern.startsWith('/')) throw new Error(`HTTP route ${pattern} must start with /`);
    if (this.routes.some((r) => r.method === method && r.pattern === pattern))
      throw new Error(`HTTP route ${method} ${pattern} registered twice`);
    this.routes.push({ method, pattern, segments: pattern.split('/').slice(1), handler });
  }

  match(method: string, path: string): RouteMatch {
    const parts = path.split('/').slice(1);
    const allow = new Set<string>();
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET'))
        return { kind: 'found', route, params };
      allow.add(route.method);
      if (route.method === 'GET') allow.add('HEAD');
    }
    return allow.size ? { kind: 'wrong-method', allow: [...allow] } : { kind: 'none' };
  }

  /** Set by the listener once it knows its port (`http.publicUrl`, or https://<first domain>:<port>), unset when it stops. */
  setBaseUrl(url: string | undefined): void {
    this.base = url?.replace(/\/+$/, '');
  }

  /** The absolute URL of `path` as users reach it. Throws while no listener runs (on the command line, or `http.enabled` off). */
  url(path: string): string {
    if (this.base === undefined) throw new Error('the HTTPS listener is not running (see http.enabled)');
    return `${this.base}${path}`;
  }

  get listening(): boolean {
    return this.base !== undefined;
  }
}

/**
 * The listener's base URL as users reach it, without a trailing slash: `http.publicUrl`, or
 * `https://<first domain>:<port>`. The command line, where no listener runs, gets the configured port.
 */
export function publicBaseUrl(config: Config, port: number = config.http.port): string {
  return (config.http.publicUrl ?? `https://${config.domains[0]}:${port}`).replace(/\/+$/, '');
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, segment] of pattern.entries()) {
    const part = parts[i] as string;
    if (segment.startsWith(':')) {
      if (!part) return undefined;
      try {
        params[segment.slice(1)] = decodeURIComponent(part);
      } catch {
        return undefined;
      }
    } else if (segment !== part) return undefined;
  }
  return params;
}
