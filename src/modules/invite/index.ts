import { createHash } from 'node:crypto';
import type { StreamFeaturesEvent, UnauthenticatedIqEvent } from '../../c2s/stream.js';
import { errorReply, StanzaError } from '../../core/errors.js';
import { publicBaseUrl } from '../../core/http-routes.js';
import type { LetheModule } from '../../core/module.js';
import { perServer } from '../../core/per-server.js';
import { Periodic } from '../../core/periodic.js';
import type { Server } from '../../core/server.js';
import { serverSecret } from '../../privacy/address-hash.js';
import { REGISTER_PATH } from '../../privacy/consent/service.js';
import type { Db } from '../../storage/db.js';
import { x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import { createToken, verifyToken } from './token.js';

/**
 * Invitations: single-use tokens that let someone register an account although open registration is
 * off, in-band (pre-authenticated IBR, urn:xmpp:invite / urn:xmpp:pars:0) or on the web page
 * (src/modules/register-web.ts). Tokens are in the preauth-ibr format, signed with a key derived from
 * the server key; the table keeps only their hash, so a copy of the database hands out no invitation.
 * An invitation may name the username it is for, which nobody else can register until it expires.
 * A token counts as used only once the account exists: registration claims it, and releases it if
 * creating the account then fails.
 */

const NS_FEATURE = 'urn:xmpp:invite';
const NS_PREAUTH = 'urn:xmpp:pars:0';

const DAY_MS = 86_400_000;
/** How long a used invitation is kept: which invitation an account came from, for tracing abuse. */
const USED_KEEP_DAYS = 30;
/**
 * An expired, unused invitation is deleted only this long after its expiry: a client that showed a
 * valid token may still finish registering (ibr-token: expiry is checked only at the pre-auth step).
 */
const EXPIRED_GRACE_MS = 3_600_000;
/** Invalid tokens tolerated per stream; after that every further one is refused unchecked. */
const MAX_FAILED_PER_STREAM = 3;
const SWEEP_INTERVAL_MS = 3_600_000;
const BATCH = 500;

export interface Invitation {
  id: number;
  domain: string;
  /** The username it reserves and is for, when it names one. */
  username?: string;
  createdAt: Date;
  expiresAt: Date;
  createdBy: string | null;
}

export interface CreatedInvitation extends Invitation {
  token: string;
  /** `xmpp:domain?register;preauth=…` (or with the reserved user), for clients (XEP-0401, ibr-token). */
  xmppUri: string;
  /** The web registration page with the token; undefined when the HTTPS listener is off (`http.enabled`). */
  webUrl: string | undefined;
}

export interface CreateOptions {
  domain: string;
  username?: string | undefined;
  validDays?: number | undefined;
  /** Who created it: the operator's OS user on the command line. */
  by: string;
}

interface InviteRow {
  id: number;
  domain: string;
  username: string | null;
  created_at: number;
  expires_at: number;
  created_by: string | null;
  used_at: number | null;
  used_by: string | null;
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * RFC 5122 wants ":" percent-encoded in xmpp: URIs, and some clients pass the parameter on undecoded:
 * both forms are accepted (base64url and digits never contain "%").
 */
const normalise = (token: string) => token.replace(/%3a/gi, ':');

function invitation(row: InviteRow): Invitation {
  return {
    id: row.id,
    domain: row.domain,
    ...(row.username !== null && { username: row.username }),
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    createdBy: row.created_by,
  };
}

export class Invitations {
  /** The clock (ms); tests move it. */
  clock: () => number = Date.now;

  constructor(private readonly server: Server) {}

  private get key(): Buffer {
    // Derived on first use: the server key exists only once the server is open.
    return serverSecret(this.server.config, 'lethe invitation v1');
  }

  /**
   * Issues an invitation to register on `domain`, for `username` if given (which it then reserves).
   * Refused when that address could not be registered anyway (taken, reserved, tombstoned).
   */
  async create(options: CreateOptions): Promise<CreatedInvitation> {
    const { accounts, config, hosts } = this.server;
    const domain = Jid.parse(options.domain).domain;
    if (!hosts.has(domain)) throw new Error(`${domain} is not a domain this server hosts (${[...hosts].join(', ')})`);
    const validDays = options.validDays ?? config.invites.validDays;
    if (!Number.isInteger(validDays) || validDays < 1)
      throw new Error('an invitation is valid for a whole number of days, at least 1');
    let username: string | undefined;
    if (options.username !== undefined) {
      const jid = accounts.checkJid(new Jid(options.username, domain));
      if (await accounts.get(jid)) throw new StanzaError('conflict', `${jid} already exists`);
      // The handlers that would refuse the address at registration (tombstones, reservations) refuse it now.
      await this.server.hooks.notify('account/creating', { jid });
      username = jid.local;
    }
    const now = this.clock();
    const jids = [username ? `${username}@${domain}` : domain];
    let row: InviteRow | undefined;
    let token = '';
    // Two invitations for the same JIDs and millisecond would be the same token: the later one expires 1 ms later.
    for (let expiresAt = now + validDays * DAY_MS; !row; expiresAt++) {
      token = createToken(this.key, jids, expiresAt);
      row = await this.server.db.get<InviteRow>(
        `INSERT INTO invites (token_hash, domain, username, created_at, expires_at, created_by)
           VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING RETURNING *`,
        [hashToken(token), domain, username ?? null, now, expiresAt, options.by],
      );
    }
    const base = !config.http.enabled
      ? undefined
      : this.server.http.listening
        ? this.server.http.url('')
        : publicBaseUrl(config);
    const target = username ? `${encodeURIComponent(username)}@${domain}` : domain;
    return {
      ...invitation(row),
      token,
      xmppUri: `xmpp:${target}?register;preauth=${token.replace(/:/g, '%3A')}`,
      webUrl: base === undefined ? undefined : `${base}${REGISTER_PATH}?token=${token}`,
    };
  }

  /** The invitation `token` stands for, if it is genuine, unused, not revoked and not expired at `now`. */
  async check(token: string, now = this.clock()): Promise<Invitation | undefined> {
    const t = normalise(token);
    if (!verifyToken(this.key, t, now)) return undefined;
    const row = await this.server.db.get<InviteRow>(
      'SELECT * FROM invites WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?',
      [hashToken(t), now],
    );
    return row && this.server.hosts.has(row.domain) ? invitation(row) : undefined;
  }

  /**
   * Marks the invitation used by `jid`, atomically: false when it is used already, revoked, unknown or
   * not for that address. Expiry is not checked again (ibr-token: only when the token is first shown).
   */
  async claim(token: string, jid: Jid): Promise<boolean> {
    const { changes } = await this.server.db.run(
      `UPDATE invites SET used_at = ?, used_by = ?
         WHERE token_hash = ? AND used_at IS NULL AND domain = ? AND (username IS NULL OR username = ?)`,
      [this.clock(), jid.bareString(), hashToken(normalise(token)), jid.domain, jid.local],
    );
    return changes === 1;
  }

  /** Undoes `claim` when creating the account failed: the invitation can be used again. */
  async release(token: string): Promise<void> {
    await this.server.db.run('UPDATE invites SET used_at = NULL, used_by = NULL WHERE token_hash = ?', [
      hashToken(normalise(token)),
    ]);
  }

  /** Unused invitations that have not expired, oldest first. */
  async list(now = this.clock()): Promise<Invitation[]> {
    const rows = await this.server.db.all<InviteRow>(
      'SELECT * FROM invites WHERE used_at IS NULL AND expires_at > ? ORDER BY id',
      [now],
    );
    return rows.map(invitation);
  }

  /** Deletes an unused invitation (`list` shows the ids); false when there is none by that id, or it was used. */
  async revoke(id: number): Promise<boolean> {
    return (await this.server.db.run('DELETE FROM invites WHERE id = ? AND used_at IS NULL', [id])).changes === 1;
  }

  /** The expiry of an unused invitation that reserves `jid`, if there is one. */
  async reservedUntil(jid: Jid, now = this.clock()): Promise<Date | undefined> {
    const row = await this.server.db.get<{ expires_at: number }>(
      `SELECT max(expires_at) AS expires_at FROM invites
         WHERE domain = ? AND username = ? AND used_at IS NULL AND expires_at > ?`,
      [jid.domain, jid.local, now],
    );
    return row?.expires_at ? new Date(row.expires_at) : undefined;
  }

  /** Unused invitations past their expiry (and grace), and used ones after `USED_KEEP_DAYS`, in batches. */
  async expire(now: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const { changes } = await this.server.db.run(
        `DELETE FROM invites WHERE id IN (SELECT id FROM invites
           WHERE (used_at IS NULL AND expires_at <= ?) OR used_at <= ? LIMIT ${BATCH})`,
        [now - EXPIRED_GRACE_MS, now - USED_KEEP_DAYS * DAY_MS],
      );
      removed += changes;
      if (changes < BATCH) return removed;
    }
  }
}

/** The server's invitations. */
export const invitations = perServer((server) => new Invitations(server));

const sweeper = perServer(
  (server) =>
    new Periodic(server.log, 'invitation sweep', () => invitations(server).expire(invitations(server).clock())),
);

function registerCategory(server: Server): void {
  const service = invitations(server);
  const { db } = server;
  const mine = 'used_by = ? OR created_by = ?';
  server.privacy.register({
    id: 'invitations',
    description:
      'Invitations: the one you registered with (when it was made, when you used it, the name it reserved) and any you created',
    purpose:
      'to let only invited people register, keep an invited name free for its invitee and use each invitation once; afterwards, to trace which invitation an account came from if it is abused',
    legalBasis: 'legitimate-interest',
    retention: {
      description: `an unused invitation until it expires (invites.validDays, ${server.config.invites.validDays} days unless set when created); a used one ${USED_KEEP_DAYS} days after its use`,
      maxAgeSeconds: (USED_KEEP_DAYS * DAY_MS) / 1000,
    },
    recipients: [],
    tables: ['invites'],
    count: async (user) => {
      const row = await db.get<{ n: number }>(`SELECT count(*) AS n FROM invites WHERE ${mine}`, [
        user.bareString(),
        user.bareString(),
      ]);
      return row?.n ?? 0;
    },
    export: async function* (user) {
      const rows = await db.all<InviteRow>(`SELECT * FROM invites WHERE ${mine} ORDER BY id`, [
        user.bareString(),
        user.bareString(),
      ]);
      for (const r of rows)
        yield {
          kind: r.used_by === user.bareString() ? 'registered with' : 'created',
          domain: r.domain,
          reservedUsername: r.username,
          createdAt: new Date(r.created_at).toISOString(),
          expiresAt: new Date(r.expires_at).toISOString(),
          usedAt: r.used_at === null ? null : new Date(r.used_at).toISOString(),
        };
    },
    // The user's own invitation goes, and unused ones they created; used ones they created stay with their invitee.
    erase: async (user: Jid, tx: Db) => {
      const jid = user.bareString();
      const deleted = await tx.run('DELETE FROM invites WHERE used_by = ? OR (created_by = ? AND used_at IS NULL)', [
        jid,
        jid,
      ]);
      const kept = await tx.run('UPDATE invites SET created_by = NULL WHERE created_by = ?', [jid]);
      return deleted.changes + kept.changes;
    },
    expire: (now) => service.expire(now.getTime()),
  });
}

export const inviteModule: LetheModule = {
  name: 'invite',
  migrations: [
    {
      component: 'invites',
      version: 1,
      sql: `
        CREATE TABLE invites (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          token_hash TEXT NOT NULL UNIQUE,
          domain TEXT NOT NULL,
          username TEXT,
          created_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          created_by TEXT,
          used_at INTEGER,
          used_by TEXT
        );
        CREATE INDEX invites_reserved ON invites (domain, username);
        CREATE INDEX invites_used_by ON invites (used_by)`,
    },
  ],
  load(server) {
    registerCategory(server);
    const service = invitations(server);
    const { hooks, config } = server;
    const enabled = config.invites.enabled;
    const encryptionOk = (secure: boolean) => secure || !config.c2s.requireEncryption;
    const failures = new WeakMap<Map<string, unknown>, number>();

    hooks.on('stream-features', (ev: StreamFeaturesEvent) => {
      if (enabled && !ev.authenticated && encryptionOk(ev.secure)) ev.features.c('register', { xmlns: NS_FEATURE });
    });

    /** Accepts the token into the stream's state (register.ts reads it), or says why not. */
    const preauthRefusal = async (ev: UnauthenticatedIqEvent): Promise<StanzaError | undefined> => {
      if (ev.stanza.attrs.type !== 'set') return new StanzaError('bad-request');
      if (!enabled) return new StanzaError('service-unavailable', 'invitations are not accepted here');
      if (!encryptionOk(ev.secure)) return new StanzaError('not-acceptable', 'send it after STARTTLS');
      const failed = failures.get(ev.state) ?? 0;
      if (failed >= MAX_FAILED_PER_STREAM)
        return new StanzaError('resource-constraint', 'too many invalid invitation tokens on this connection');
      const token = ev.stanza.getChild('preauth', NS_PREAUTH)?.attrs.token ?? '';
      const found = token ? await service.check(token) : undefined;
      if (!found || found.domain !== ev.host) {
        failures.set(ev.state, failed + 1);
        return new StanzaError('item-not-found', 'The provided token is invalid or expired');
      }
      ev.state.set('invite', { token: normalise(token), username: found.username });
      return undefined;
    };

    hooks.on(`c2s/unauthenticated-iq/${NS_PREAUTH}:preauth`, async (ev: UnauthenticatedIqEvent) => {
      const refusal = await preauthRefusal(ev);
      if (refusal) ev.reply(errorReply(ev.stanza, refusal));
      else ev.reply(x('iq', { type: 'result', id: ev.stanza.attrs.id, from: ev.stanza.attrs.to }));
      return true;
    });
    hooks.on('account/creating', async ({ jid }: { jid: Jid }) => {
      const until = await service.reservedUntil(jid);
      if (until)
        throw new StanzaError(
          'conflict',
          `${jid} is reserved for someone invited to register it, until ${until.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
        );
    });

    // Only a started server sweeps, not every command-line process.
    hooks.on('server/started', () => sweeper(server).start(SWEEP_INTERVAL_MS));
  },
  async unload(server) {
    await sweeper(server).stop();
  },
};
