import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import { UnsealError } from '../privacy/keys.js';
import type { DataCategory } from '../privacy/registry.js';
import { FragmentParser } from '../privacy/xep0227/fragments.js';
import type { Db } from '../storage/db.js';
import { type XmlElement, x } from '../xml/element.js';
import { parseFragments } from '../xml/fragment.js';
import { Jid } from '../xml/jid.js';
import { offlineXep0227 } from './offline-pie.js';
import { unacknowledged } from './sm.js';

/**
 * Offline messages (XEP-0160). A chat or normal message that no resource can take (message.ts fires
 * `message/offline`, so does stream management for what a vanished session never acknowledged) is
 * kept for its recipient, stamped with a delay (XEP-0203) of when it arrived, and handed over in
 * arrival order when the recipient next sends initial presence with a non-negative priority; each
 * batch is deleted once it went to the session's send path (where stream management tracks it).
 *
 * What is kept (RFC 6121 §8.5.2, XEP-0160): no groupchat, headline or error messages, and none
 * with a `<no-store/>` hint (XEP-0334); those are not taken, so message.ts bounces chat and normal
 * ones. A message with nothing worth reading later (only chat states, ids, hints or a thread) is
 * dropped without a bounce: XEP-0160 says not to store chat states, and bouncing a typing
 * notification would only be noise. `<store/>` keeps such a message anyway. `<no-permanent-store/>`
 * does not stop offline storage: XEP-0334 names holding a message for an offline recipient as the
 * temporary storage that hint still allows.
 *
 * A user holds at most `offline.maxPerUser` messages; one more is refused with `service-unavailable`,
 * the condition XEP-0160 gives for a full queue. Messages older than `offline.retentionDays` are
 * never delivered and a background sweeper deletes them in small batches.
 */

export const NS_DELAY = 'urn:xmpp:delay';
const NS_HINTS = 'urn:xmpp:hints';
const NS_CLIENT = 'jabber:client';
/** Children that do not make a message worth keeping on their own. */
const INCIDENTAL = new Set(['http://jabber.org/protocol/chatstates', 'urn:xmpp:sid:0', NS_DELAY, NS_HINTS]);
/** Rows read, sent and deleted at a time when delivering. */
const DELIVERY_BATCH = 100;
/** Rows deleted per statement by the sweeper, so that it never holds up routing for long. */
const EXPIRE_BATCH = 500;
/** How often a delivery that waits for stream-management acknowledgements looks again. */
const ACK_POLL_MS = 50;

const DAY_SECONDS = 86_400;

/** What each stored message is sealed for, bound into its ciphertext with the owner's address. */
const PURPOSE = 'offline';

interface Row {
  id: number;
  stored_at: number;
  /** Undefined when the message cannot be decrypted (its key was destroyed); the reason is logged. */
  stanza: string | undefined;
}

interface SealedRow {
  id: number;
  stored_at: number;
  sealed: Buffer;
}

/**
 * Every read and write of the offline table. The stanza is stored sealed under its recipient's data
 * key (`server.keys`, crypto-shredding); the owner, the arrival time and the row id stay in clear,
 * because lookup, the per-user cap, ordering, the retention sweep and erasure need them.
 */
class OfflineStore {
  constructor(private readonly server: Server) {}

  private get db(): Db {
    return this.server.db;
  }

  /** Appends a message unless the owner already has `max`; false when the queue is full. */
  async add(owner: string, storedAt: number, stanza: string, max: number): Promise<boolean> {
    const sealed = await this.server.keys.sealFor(Jid.parse(owner), stanza, PURPOSE);
    // One statement, so that messages arriving together cannot overshoot the cap, and one that lands
    // after an erasure began (stream management handing back what a closed session never acknowledged)
    // is not kept for an account that is locked or gone.
    const { changes } = await this.db.run(
      `INSERT INTO offline_messages (owner, stored_at, sealed)
       SELECT ?, ?, ? WHERE (SELECT count(*) FROM offline_messages WHERE owner = ?) < ?
         AND EXISTS (SELECT 1 FROM accounts WHERE jid = ? AND status = 'active')`,
      [owner, storedAt, sealed, owner, max, owner],
    );
    return changes === 1;
  }

  /** Appends an imported message inside the import's transaction, whatever the cap: it was kept elsewhere already. */
  async insert(owner: string, storedAt: number, stanza: string, tx: Db): Promise<void> {
    const sealed = await this.server.keys.sealFor(Jid.parse(owner), stanza, PURPOSE, tx);
    await tx.run('INSERT INTO offline_messages (owner, stored_at, sealed) VALUES (?, ?, ?)', [owner, storedAt, sealed]);
  }

  async page(owner: string, afterId: number, limit: number): Promise<Row[]> {
    const rows = await this.db.all<SealedRow>(
      'SELECT id, stored_at, sealed FROM offline_messages WHERE owner = ? AND id > ? ORDER BY id LIMIT ?',
      [owner, afterId, limit],
    );
    const user = Jid.parse(owner);
    return Promise.all(rows.map((row) => this.open(user, row)));
  }

  private async open(user: Jid, { id, stored_at, sealed }: SealedRow): Promise<Row> {
    try {
      return { id, stored_at, stanza: (await this.server.keys.openFor(user, sealed, PURPOSE)).toString() };
    } catch (err) {
      if (!(err instanceof UnsealError)) throw err;
      this.server.log.warn({ id, reason: err.reason }, 'a stored offline message cannot be decrypted');
      return { id, stored_at, stanza: undefined };
    }
  }

  /**
   * Seals the messages that schema version 2 found stored in clear (`legacy_stanza`), a batch at a
   * time, at start; afterwards no message is kept in clear.
   */
  async sealLegacy(): Promise<number> {
    let sealed = 0;
    for (;;) {
      const rows = await this.db.all<{ id: number; owner: string; legacy_stanza: string }>(
        'SELECT id, owner, legacy_stanza FROM offline_messages WHERE legacy_stanza IS NOT NULL LIMIT ?',
        [DELIVERY_BATCH],
      );
      if (rows.length === 0) return sealed;
      for (const row of rows) {
        const value = await this.server.keys.sealFor(Jid.parse(row.owner), row.legacy_stanza, PURPOSE);
        await this.db.run('UPDATE offline_messages SET sealed = ?, legacy_stanza = NULL WHERE id = ?', [value, row.id]);
      }
      sealed += rows.length;
    }
  }

  async deleteThrough(owner: string, id: number): Promise<void> {
    await this.db.run('DELETE FROM offline_messages WHERE owner = ? AND id <= ?', [owner, id]);
  }

  async count(owner: string): Promise<number> {
    return (
      (await this.db.get<{ n: number }>('SELECT count(*) AS n FROM offline_messages WHERE owner = ?', [owner]))?.n ?? 0
    );
  }

  async *all(owner: string): AsyncIterable<Row> {
    const user = Jid.parse(owner);
    for await (const row of this.db.iterate<SealedRow>(
      'SELECT id, stored_at, sealed FROM offline_messages WHERE owner = ? ORDER BY id',
      [owner],
    ))
      yield await this.open(user, row);
  }

  async erase(owner: string, tx: Db): Promise<number> {
    return (await tx.run('DELETE FROM offline_messages WHERE owner = ?', [owner])).changes;
  }

  /** Deletes up to `limit` messages stored before `cutoff` (ms); returns how many went. */
  async expire(cutoff: number, limit: number): Promise<number> {
    return (
      await this.db.run(
        'DELETE FROM offline_messages WHERE id IN (SELECT id FROM offline_messages WHERE stored_at < ? LIMIT ?)',
        [cutoff, limit],
      )
    ).changes;
  }
}

/** Whether an offline message is kept (`store`), refused so that the sender hears (`refuse`), or quietly dropped. */
function classify(stanza: XmlElement): 'store' | 'refuse' | 'drop' {
  const type = stanza.attrs.type;
  if (type === 'groupchat' || type === 'headline' || type === 'error') return 'refuse';
  let content = false;
  let storeHint = false;
  for (const child of stanza.children) {
    if (typeof child === 'string') continue;
    const ns = child.xmlns;
    if (ns === NS_HINTS && child.localName === 'no-store') return 'refuse';
    if (ns === NS_HINTS && child.localName === 'store') storeHint = true;
    else if (!INCIDENTAL.has(ns ?? '') && !(child.localName === 'thread' && (ns === NS_CLIENT || ns === undefined)))
      content = true;
  }
  return content || storeHint ? 'store' : 'drop';
}

class OfflineMessages {
  private readonly store: OfflineStore;
  /** The delivery under way per account, so that two resources coming online together do not both get the messages. */
  private readonly delivering = new Map<string, Promise<void>>();
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;

  constructor(private readonly server: Server) {
    this.store = new OfflineStore(server);
  }

  private get retentionMs(): number {
    return this.server.config.offline.retentionDays * DAY_SECONDS * 1000;
  }

  async attach(): Promise<void> {
    const { hooks, privacy, config } = this.server;
    const sealed = await this.store.sealLegacy();
    if (sealed)
      this.server.log.info({ sealed }, 'offline messages stored in clear by an older Lethe are now encrypted');
    privacy.register(this.describe());
    hooks.on('message/offline', (e: StanzaEvent) => this.offer(e));
    hooks.on('presence/initial', ({ session }: { session: ClientSession }) => this.deliver(session));
    this.sweeper = setInterval(() => this.sweep(), config.offline.sweepInterval * 1000);
    this.sweeper.unref();
    // Also at start: a server that was down for a while has a backlog to clear.
    this.sweep();
  }

  async detach(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([this.sweeping, ...this.delivering.values()]);
  }

  private describe(): DataCategory {
    const store = this.store;
    const { retentionDays: days, maxPerUser } = this.server.config.offline;
    return {
      id: 'offline',
      description:
        'Messages sent to you while you were offline, kept until you next come online: each message as it arrived, including the sender’s address, and when it arrived. The message is stored encrypted with your own key (see data-keys)',
      purpose: 'Delivering the messages that arrive while you are offline',
      legalBasis: 'contract',
      // Reports and the data-policy form must not announce a retention for a store that is turned off.
      retention:
        maxPerUser === 0
          ? { description: 'not kept: offline storage is turned off', maxAgeSeconds: 0 }
          : {
              description: `until delivered when you next come online, at most ${days} days`,
              maxAgeSeconds: days * DAY_SECONDS,
            },
      content: true,
      encryptedAtRest: true,
      recipients: [],
      tables: ['offline_messages'],
      // A message is the recipient's copy (the email model): it names its sender (inside the ciphertext), and stays
      // when the sender is erased.
      mentions: [{ table: 'offline_messages', column: 'sealed', ownerColumn: 'owner' }],
      count: (user) => store.count(user.bareString()),
      export: async function* (user) {
        // A message that cannot be decrypted any more is nobody's to read; it is left out (and logged).
        for await (const row of store.all(user.bareString()))
          if (row.stanza !== undefined) yield { storedAt: new Date(row.stored_at).toISOString(), stanza: row.stanza };
      },
      erase: (user, tx) => store.erase(user.bareString(), tx),
      expire: (now) => this.expire(now),
      message: (record) => ({ time: record.storedAt as string, stanza: record.stanza as string }),
      xep0227: offlineXep0227(
        async function* (user) {
          const parser = new FragmentParser();
          for await (const row of store.all(user.bareString()))
            if (row.stanza !== undefined) yield parser.parse(row.stanza)[0] as XmlElement;
        },
        (user, storedAt, stanza, tx) => store.insert(user.bareString(), storedAt, stanza, tx),
      ),
    };
  }

  private async expire(now: Date): Promise<number> {
    const cutoff = now.getTime() - this.retentionMs;
    let removed = 0;
    for (;;) {
      const n = await this.store.expire(cutoff, EXPIRE_BATCH);
      removed += n;
      if (n < EXPIRE_BATCH) return removed;
      // Between batches, stanzas waiting to be routed go first.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private sweep(): void {
    if (this.sweeping) return;
    this.sweeping = this.expire(new Date())
      .then((n) => {
        if (n) this.server.log.info({ removed: n }, 'expired offline messages deleted');
      })
      .catch((err) => this.server.log.error({ err }, 'could not delete expired offline messages'))
      .finally(() => {
        this.sweeping = undefined;
      });
  }

  private offer({ stanza, to, origin }: StanzaEvent): boolean | Promise<boolean> {
    const max = this.server.config.offline.maxPerUser;
    if (max === 0) return false;
    const verdict = classify(stanza);
    if (verdict !== 'store') return verdict === 'drop';
    const now = Date.now();
    const owner = to.bare;
    return this.server.accounts.exists(owner).then(async (active) => {
      // Not taken: message.ts answers as for an account that does not exist.
      if (!active) return false;
      const added = await this.store.add(
        owner.bareString(),
        now,
        this.stamped(stanza, to.domain, origin !== undefined, now),
        max,
      );
      if (!added)
        this.server.router.reject(
          stanza,
          new StanzaError('service-unavailable', 'the recipient’s offline message storage is full'),
        );
      return true;
    });
  }

  /**
   * The text stored: the message with our delay. A delay that claims to be from this server is ours
   * only when the message did not come straight from a client (stream management adds one, with the
   * time the message was first sent, before handing it here); from a client it is forged and goes
   * (XEP-0203, security considerations).
   */
  private stamped(stanza: XmlElement, domain: string, fromClient: boolean, now: number): string {
    const copy = stanza.clone();
    let stamped = false;
    for (const delay of copy.getChildren('delay', NS_DELAY)) {
      if (delay.attrs.from === undefined || !this.server.hosts.has(delay.attrs.from)) continue;
      if (fromClient) copy.remove(delay);
      else stamped = true;
    }
    if (!stamped)
      copy.append(x('delay', { xmlns: NS_DELAY, from: domain, stamp: new Date(now).toISOString() }, 'Offline Storage'));
    return copy.toString();
  }

  /** XEP-0160: on initial presence with a non-negative priority. Runs in the background: see `flush`. */
  private deliver(session: ClientSession): void {
    if (session.priority < 0) return;
    const owner = session.jid.bareString();
    const run = (this.delivering.get(owner) ?? Promise.resolve())
      .then(() => this.flush(owner, session))
      .catch((err) => this.server.log.error({ err }, 'could not deliver offline messages'))
      .finally(() => {
        if (this.delivering.get(owner) === run) this.delivering.delete(owner);
      });
    this.delivering.set(owner, run);
  }

  /**
   * Sends the messages in order, a batch at a time, and deletes each batch once sent. With stream
   * management, a batch waits until the client has acknowledged enough that it fits in the
   * unacknowledged queue (`sm.maxQueue`) with a batch's worth to spare for live traffic: a burst of
   * offline messages must not end the session with `resource-constraint` (they would go back to
   * offline storage, and the next login would do the same). The client can only acknowledge once the
   * presence that started this has been processed, hence the background.
   */
  private async flush(owner: string, session: ClientSession): Promise<void> {
    const { sessions } = this.server;
    const { maxQueue } = this.server.config.sm;
    const batch = Math.max(1, Math.min(DELIVERY_BATCH, Math.floor(maxQueue / 2)));
    const bound = () => sessions.get(owner, session.jid.resource) === session;
    let after = 0;
    for (;;) {
      for (let queued = unacknowledged(session); bound() && queued > 0 && queued + 2 * batch > maxQueue; ) {
        await new Promise((resolve) => setTimeout(resolve, ACK_POLL_MS));
        queued = unacknowledged(session);
      }
      const rows = await this.store.page(owner, after, batch);
      // Checked after reading: a message sent to a session that is gone would be lost, not delivered.
      if (rows.length === 0 || !bound()) return;
      // Past their retention but not swept yet: deleted with the batch, never delivered.
      const cutoff = Date.now() - this.retentionMs;
      for (const row of rows) {
        if (row.stored_at >= cutoff && row.stanza !== undefined) {
          const stanza = this.parse(row.id, row.stanza);
          if (stanza) session.send(stanza);
        }
        after = row.id;
      }
      await this.store.deleteThrough(owner, after);
    }
  }

  private parse(id: number, stanza: string): XmlElement | undefined {
    try {
      return parseFragments(stanza)[0];
    } catch (err) {
      // Undeliverable for good: logged and deleted with its batch rather than blocking the rest.
      this.server.log.error({ err, id }, 'a stored offline message does not parse');
      return undefined;
    }
  }
}

const instances = new WeakMap<Server, OfflineMessages>();

export const offlineModule: LetheModule = {
  name: 'offline',
  features: ['msgoffline'],
  migrations: [
    {
      component: 'offline',
      version: 1,
      sql: `CREATE TABLE offline_messages (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          owner TEXT NOT NULL REFERENCES accounts(jid),
          stored_at INTEGER NOT NULL,
          stanza TEXT NOT NULL
        );
        CREATE INDEX offline_messages_owner ON offline_messages (owner, id);
        CREATE INDEX offline_messages_stored_at ON offline_messages (stored_at)`,
    },
    {
      // Encryption at rest: the stanza becomes `sealed` (see OfflineStore). Rows stored in clear move to
      // `legacy_stanza`, which the module seals at start; SQL alone cannot encrypt them.
      component: 'offline',
      version: 2,
      sql: `CREATE TABLE offline_messages_v2 (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          owner TEXT NOT NULL REFERENCES accounts(jid),
          stored_at INTEGER NOT NULL,
          sealed BLOB,
          legacy_stanza TEXT,
          CHECK ((sealed IS NULL) <> (legacy_stanza IS NULL))
        );
        INSERT INTO offline_messages_v2 (id, owner, stored_at, legacy_stanza)
          SELECT id, owner, stored_at, stanza FROM offline_messages;
        DROP TABLE offline_messages;
        ALTER TABLE offline_messages_v2 RENAME TO offline_messages;
        CREATE INDEX offline_messages_owner ON offline_messages (owner, id);
        CREATE INDEX offline_messages_stored_at ON offline_messages (stored_at)`,
    },
  ],
  async load(server) {
    const offline = new OfflineMessages(server);
    await offline.attach();
    instances.set(server, offline);
  },
  async unload(server) {
    await instances.get(server)?.detach();
  },
};
