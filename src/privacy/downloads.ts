import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { HttpRequest, HttpResponse } from '../core/http-routes.js';
import type { LetheModule } from '../core/module.js';
import { perServer } from '../core/per-server.js';
import type { Server } from '../core/server.js';
import { Jid } from '../xml/jid.js';

/**
 * Download links for a user's own files (their data export): HTTPS, a random 256-bit token, valid for
 * one account and one browser session, expiring after a day. The holder of the link must also log in
 * with the account's password (HTTP Basic, over TLS only), so a leaked link is worth nothing; the first
 * successful download sets a cookie and from then on only that session may use the link (to resume).
 *
 * Tokens live in memory only, and only as hashes: a restart or a database copy reveals no link. The
 * files wait in `<dataDir>/downloads/` (mode 0700) and are deleted at expiry, on erasure, and at stop.
 */

export const DOWNLOAD_TTL_SECONDS = 86_400;
const ROUTE = '/download/:token';
const COOKIE = 'lethe-download';
const SWEEP_INTERVAL_MS = 60_000;
/** Wrong passwords a link tolerates before it is withdrawn: the token holder must not get a password oracle. */
const MAX_FAILED_LOGINS = 10;
/** How long an expired or withdrawn link still answers 410 Gone rather than 404. */
const GONE_MEMORY_MS = DOWNLOAD_TTL_SECONDS * 1000;

export interface OfferOptions {
  /** The name the browser saves the file under. */
  filename: string;
  contentType: string;
  ttlSeconds?: number;
}

export interface OfferedLink {
  url: string;
  expiresAt: Date;
}

interface Offer {
  owner: string;
  /** A file that this service deletes when the offer ends, or a stream made afresh for each download. */
  source: { path: string } | { open: () => Readable };
  filename: string;
  contentType: string;
  offeredAt: number;
  expiresAt: number;
  /** Hash of the cookie of the session that downloaded first. */
  session?: Buffer;
  failedLogins: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export class Downloads {
  /** By token hash (hex). */
  private readonly offers = new Map<string, Offer>();
  /** Token hashes of ended offers, with when to forget them. */
  private readonly gone = new Map<string, number>();
  readonly dir: string;
  private prepared: Promise<void> | undefined;
  /** The clock; tests move it. */
  now: () => number = Date.now;

  constructor(private readonly server: Server) {
    this.dir = join(server.config.dataDir, 'downloads');
  }

  /**
   * Empties the directory, since links do not survive a restart, and makes it private. Only the
   * listening server does this: a command-line process must not delete the running server's files.
   */
  prepare(): Promise<void> {
    this.prepared = (async () => {
      await rm(this.dir, { recursive: true, force: true });
      await this.makeDir();
    })();
    return this.prepared;
  }

  private async makeDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** A fresh path in the private directory, for a file to `offer`. */
  async newFile(): Promise<string> {
    await (this.prepared ?? this.makeDir());
    return join(this.dir, randomBytes(16).toString('hex'));
  }

  /**
   * Offers a file (which from now on belongs to this service and is deleted when the offer ends) or a
   * stream to `owner`, and returns the link to hand them.
   */
  offer(owner: Jid, source: string | (() => Readable), options: OfferOptions): OfferedLink {
    const token = randomBytes(32).toString('base64url');
    const now = this.now();
    const expiresAt = now + (options.ttlSeconds ?? DOWNLOAD_TTL_SECONDS) * 1000;
    this.offers.set(sha256(token).toString('hex'), {
      owner: owner.bareString(),
      source: typeof source === 'string' ? { path: source } : { open: source },
      filename: options.filename,
      contentType: options.contentType,
      offeredAt: now,
      expiresAt,
      failedLogins: 0,
    });
    return { url: this.server.http.url(`/download/${token}`), expiresAt: new Date(expiresAt) };
  }

  /** The user's pending offers. */
  pending(owner: Jid): Offer[] {
    return [...this.offers.values()].filter((o) => o.owner === owner.bareString());
  }

  /** Ends every pending offer of `owner` and deletes their files; returns how many. */
  async withdraw(owner: Jid): Promise<number> {
    let n = 0;
    for (const [hash, offer] of this.offers)
      if (offer.owner === owner.bareString()) {
        await this.end(hash, offer);
        n++;
      }
    return n;
  }

  /** Ends expired offers and forgets long-gone tokens. */
  async sweep(now = this.now()): Promise<number> {
    let n = 0;
    for (const [hash, offer] of this.offers)
      if (offer.expiresAt <= now) {
        await this.end(hash, offer);
        n++;
      }
    for (const [hash, forgetAt] of this.gone) if (forgetAt <= now) this.gone.delete(hash);
    return n;
  }

  /** At stop: every file this process offered goes. */
  async close(): Promise<void> {
    for (const [hash, offer] of this.offers) await this.end(hash, offer);
    this.gone.clear();
  }

  private async end(hash: string, offer: Offer): Promise<void> {
    this.offers.delete(hash);
    this.gone.set(hash, this.now() + GONE_MEMORY_MS);
    if ('path' in offer.source) await rm(offer.source.path, { force: true });
  }

  async handle(request: HttpRequest): Promise<HttpResponse> {
    const hash = sha256(request.params.token ?? '').toString('hex');
    const offer = this.offers.get(hash);
    if (!offer) return this.gone.has(hash) ? gone() : plain(404, 'No such download.');
    if (offer.expiresAt <= this.now()) {
      await this.end(hash, offer);
      return gone();
    }
    const login = basicCredentials(request.headers.authorization);
    const user = login && userOf(login.user, offer.owner);
    const valid =
      user !== undefined &&
      (await this.server.accounts.checkPassword(user, login?.password ?? '')) &&
      (await this.server.accounts.exists(user));
    if (!valid) {
      if (login && ++offer.failedLogins >= MAX_FAILED_LOGINS) await this.end(hash, offer);
      return {
        ...plain(401, 'Log in with the address and password of the account this download belongs to.'),
        headers: {
          'content-type': 'text/plain; charset=utf-8',
          'www-authenticate': 'Basic realm="Lethe downloads", charset="UTF-8"',
        },
      };
    }
    if (user.bareString() !== offer.owner) return plain(403, 'This download belongs to another account.');
    const cookie = readCookie(request.headers.cookie, COOKIE);
    if (offer.session && !(cookie && timingSafeEqual(sha256(cookie), offer.session)))
      return plain(403, 'This link has already been used in another browser session.');
    let size: number | undefined;
    if ('path' in offer.source) {
      const path = offer.source.path;
      size = await stat(path).then(
        (s) => s.size,
        () => undefined,
      );
      if (size === undefined) {
        await this.end(hash, offer);
        return gone();
      }
    }
    const headers: Record<string, string> = {
      'content-type': offer.contentType,
      'content-disposition': contentDisposition(offer.filename),
    };
    if (size !== undefined) headers['content-length'] = String(size);
    // HEAD only looks: the session is bound by the download itself.
    if (request.method === 'GET' && !offer.session) {
      const value = randomBytes(32).toString('base64url');
      offer.session = sha256(value);
      const maxAge = Math.max(1, Math.ceil((offer.expiresAt - this.now()) / 1000));
      headers['set-cookie'] =
        `${COOKIE}=${value}; Path=${request.path}; Max-Age=${maxAge}; Secure; HttpOnly; SameSite=Strict`;
    }
    const { source } = offer;
    return {
      status: 200,
      headers,
      body: 'path' in source ? () => createReadStream(source.path) : source.open,
    };
  }
}

function plain(status: number, message: string): HttpResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: `${message}\n` };
}

function gone(): HttpResponse {
  return plain(410, 'This link has expired. Ask for a new export.');
}

/** RFC 7617; the user-id may be the bare JID or, for the owner's domain, its local part. */
function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = header?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function userOf(name: string, owner: string): Jid | undefined {
  const jid = Jid.tryParse(name.includes('@') ? name : `${name}@${Jid.parse(owner).domain}`);
  return jid?.local ? jid.bare : undefined;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** RFC 6266: an ASCII fallback and the exact name in UTF-8. */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** The server's download links; a feature offers its files through this. */
export const downloads = perServer((server) => new Downloads(server));

const sweepers = new WeakMap<Server, NodeJS.Timeout>();

export const downloadsModule: LetheModule = {
  name: 'downloads',
  load(server) {
    const service = downloads(server);
    server.privacy.register({
      id: 'downloads',
      description:
        'Copies of your data that you asked for (data exports), waiting on the server until you download them, and the single-use link to each. The link itself is kept only as a hash, in memory',
      purpose: 'Handing you the copy of your data you asked for',
      legalBasis: 'contract',
      retention: {
        description: '24 hours, then deleted whether downloaded or not',
        maxAgeSeconds: DOWNLOAD_TTL_SECONDS,
      },
      recipients: [],
      tables: [],
      elsewhere: 'files under <dataDir>/downloads/, deleted when downloaded links expire; link hashes in memory',
      count: async (user) => service.pending(user).length,
      export: async function* (user) {
        for (const offer of service.pending(user))
          yield {
            filename: offer.filename,
            offeredAt: new Date(offer.offeredAt).toISOString(),
            expiresAt: new Date(offer.expiresAt).toISOString(),
            downloaded: offer.session !== undefined,
          };
      },
      erase: (user) => service.withdraw(user),
      expire: (now) => service.sweep(now.getTime()),
    });
    if (!server.config.http.enabled) return;
    server.http.route('GET', ROUTE, (request) => service.handle(request));
    // Only the process that serves links cleans up and sweeps (see `prepare`).
    server.hooks.on('server/started', async () => {
      await service.prepare();
      const sweeper = setInterval(
        () => void service.sweep().catch((err) => server.log.warn({ err }, 'sweeping download links failed')),
        SWEEP_INTERVAL_MS,
      );
      sweeper.unref();
      sweepers.set(server, sweeper);
    });
  },
  async unload(server) {
    clearInterval(sweepers.get(server));
    await downloads(server).close();
  },
};
