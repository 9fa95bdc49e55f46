import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import { isoDate, key, NS_LETHE_PIE } from '../privacy/xep0227/names.js';
import { x } from '../xml/element.js';
import { type AccountInfoEvent, sharesPresenceWith } from './disco.js';

/**
 * Last Activity (XEP-0012). To the server: its uptime. To an account: seconds since its last logout
 * and the status of its last unavailable presence, 0 while it has an available resource. To a full
 * JID: delivered to that client. Last activity is presence information stretched over time, so it
 * goes only to the user and to those the user shares presence with (subscription `from` or
 * `both`); anyone else gets `forbidden` (XEP-0012 §3), also when asking a full JID (§4).
 *
 * The last logout is kept in one row per account, written once per logout (when the account's last
 * session closes), never per stanza.
 */

export const NS_LAST = 'jabber:iq:last';

const STATUS_KEY = 'last';
// A status is a line of text; more than this is not worth keeping about anyone.
const MAX_STATUS = 1024;

/** Logout writes still running, per server, so that shutdown waits for them before the database closes. */
const pendingWrites = new WeakMap<Server, Set<Promise<unknown>>>();

interface LastRow {
  logout_at: string;
  status: string | null;
}

function seconds(since: number): string {
  return String(Math.max(0, Math.floor((Date.now() - since) / 1000)));
}

function registerCategory(server: Server): void {
  const { db } = server;
  server.privacy.register({
    id: 'last-activity',
    description: 'When you last logged out, and the status message of the last unavailable presence you sent',
    purpose: 'Telling you and the contacts who see your presence how long ago you were last online (XEP-0012)',
    // The same presence service the user signed up for, shown to nobody the user does not already share presence with.
    legalBasis: 'contract',
    retention: { description: 'one entry, replaced at every logout; deleted with the account' },
    recipients: ['contacts you share your presence with, possibly on other servers'],
    tables: ['last_activity'],
    count: async (user) =>
      (await db.get<{ n: number }>('SELECT count(*) AS n FROM last_activity WHERE owner = ?', [user.bareString()]))
        ?.n ?? 0,
    export: async function* (user) {
      const row = await db.get<LastRow>('SELECT logout_at, status FROM last_activity WHERE owner = ?', [
        user.bareString(),
      ]);
      if (row) yield { loggedOutAt: row.logout_at, status: row.status };
    },
    erase: async (user, tx) => (await tx.run('DELETE FROM last_activity WHERE owner = ?', [user.bareString()])).changes,
    // XEP-0227 has no place for it (XEP-0012 only says how long ago): Lethe's own element keeps the time.
    xep0227: {
      elements: [key(NS_LETHE_PIE, 'last-activity')],
      async *export(user) {
        const row = await db.get<LastRow>('SELECT logout_at, status FROM last_activity WHERE owner = ?', [
          user.bareString(),
        ]);
        if (row) yield x('last-activity', { xmlns: NS_LETHE_PIE, logout: row.logout_at }, row.status ?? undefined);
      },
      async import(user, el, { tx }) {
        const logout = isoDate(el.attrs.logout);
        if (!logout) throw new Error(`${user}: <last-activity logout=…/> is not a date`);
        await tx.run(
          `INSERT INTO last_activity (owner, logout_at, status) VALUES (?, ?, ?)
           ON CONFLICT (owner) DO UPDATE SET logout_at = excluded.logout_at, status = excluded.status`,
          [user.bareString(), logout, el.text().slice(0, MAX_STATUS) || null],
        );
      },
    },
  });
}

/** §3: the account's own answer; `service-unavailable` for an account that does not exist (RFC 6121 §8.5.1). */
async function accountQuery(server: Server, event: StanzaEvent): Promise<true> {
  const account = event.to.bare;
  const owner = account.bareString();
  if (!(await sharesPresenceWith(server, account, event.from))) {
    // Whether an account exists is no secret in XMPP: a message to a missing one bounces anyway.
    if (!(await server.accounts.exists(account))) throw new StanzaError('service-unavailable');
    throw new StanzaError('forbidden', 'only contacts who see this user’s presence may ask');
  }
  // Available only: a user who is connected but shows as offline must not be given away as online.
  if (server.sessions.available(owner).length > 0) {
    server.router.reply(event.stanza, x('query', { xmlns: NS_LAST, seconds: '0' }));
    return true;
  }
  const row = await server.db.get<LastRow>('SELECT logout_at, status FROM last_activity WHERE owner = ?', [owner]);
  // Never logged out since the account was created (or since last activity was recorded at all).
  if (!row) throw new StanzaError('service-unavailable', 'no last activity is known for this user');
  const query = x('query', { xmlns: NS_LAST, seconds: seconds(Date.parse(row.logout_at)) });
  if (row.status) query.t(row.status);
  server.router.reply(event.stanza, query);
  return true;
}

/** §4: the client answers with its idle time, but only if the requester may see the user's presence. */
async function fullJidQuery(server: Server, event: StanzaEvent): Promise<boolean> {
  if (!(await sharesPresenceWith(server, event.to.bare, event.from)))
    throw new StanzaError('forbidden', 'only contacts who see this user’s presence may ask');
  return server.hooks.fire('iq/full', event);
}

export const lastModule: LetheModule = {
  name: 'last',
  features: [NS_LAST],
  migrations: [
    {
      component: 'last',
      version: 1,
      sql: `CREATE TABLE last_activity (
          owner TEXT PRIMARY KEY REFERENCES accounts(jid),
          logout_at TEXT NOT NULL,
          status TEXT
        )`,
    },
  ],
  load(server) {
    registerCategory(server);
    const { hooks, sessions, db } = server;
    const writes = new Set<Promise<unknown>>();
    pendingWrites.set(server, writes);
    hooks.on(`iq-get/host/${NS_LAST}:query`, (e: StanzaEvent) => {
      server.router.reply(e.stanza, x('query', { xmlns: NS_LAST, seconds: seconds(server.startedAt.getTime()) }));
      return true;
    });
    for (const target of ['self', 'bare'])
      hooks.on(`iq-get/${target}/${NS_LAST}:query`, (e: StanzaEvent) => accountQuery(server, e));
    hooks.on(`iq-get/full/${NS_LAST}:query`, (e: StanzaEvent) => fullJidQuery(server, e));
    hooks.on('disco-info/account', (e: AccountInfoEvent) => {
      e.info.features.push(NS_LAST);
    });
    // Remembers the status of the session's broadcast presence: kept in memory, written only at logout.
    hooks.on(
      'presence/self',
      (e: StanzaEvent) => {
        const { stanza, origin } = e;
        if (!origin || stanza.attrs.to !== undefined) return;
        const type = stanza.attrs.type;
        if (type !== undefined && type !== 'unavailable') return;
        const status = type === 'unavailable' ? stanza.getChildText('status')?.slice(0, MAX_STATUS) : undefined;
        if (status) origin.state.set(STATUS_KEY, status);
        else origin.state.delete(STATUS_KEY);
      },
      10,
    );
    // High priority, so the write starts while the session closes, before `unload` may wait for it.
    hooks.on(
      'session/closed',
      ({ session }: { session: ClientSession }) => {
        const owner = session.jid.bareString();
        if (sessions.resources(owner).length > 0) return;
        const status = (session.state.get(STATUS_KEY) as string | undefined) ?? null;
        // Only for an account that still exists: a session closed by the account's removal must leave nothing behind.
        const write = db
          .run(
            `INSERT INTO last_activity (owner, logout_at, status)
             SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE jid = ?)
             ON CONFLICT (owner) DO UPDATE SET logout_at = excluded.logout_at, status = excluded.status`,
            [owner, new Date().toISOString(), status, owner],
          )
          .catch((err) => server.log.error({ err }, 'could not record the last logout'))
          .finally(() => writes.delete(write));
        writes.add(write);
      },
      10,
    );
  },
  async unload(server) {
    await Promise.all(pendingWrites.get(server) ?? []);
  },
};
