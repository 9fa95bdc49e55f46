import type { Server } from '../../core/server.js';
import type { Db, Migration } from '../../storage/db.js';
import { requestsXep0227, rosterXep0227 } from './pie.js';
import type { Subscription } from './subscription.js';

/**
 * Rosters (RFC 6121 §2) and unanswered inbound subscription requests (§3.1.3), keyed by the owner's
 * bare JID. The rosters of users with a bound session are cached in memory, so presence broadcasts
 * never touch the database; an entry goes when the user's last session closes, so the cache does not
 * grow with login churn. Every change runs in a transaction that also updates the cache, which keeps
 * the two consistent without a lock of our own.
 */

export interface RosterItem {
  jid: string;
  name: string | undefined;
  subscription: Subscription;
  /** Pending out: the owner asked for the contact's presence (`ask='subscribe'`). */
  ask: boolean;
  /** Pre-approved (RFC 6121 §3.4). */
  approved: boolean;
  groups: string[];
}

/** What is kept of a subscription request until the owner answers: the requester's message and nickname (XEP-0172). */
export interface SubscriptionRequest {
  status: string | undefined;
  nick: string | undefined;
}

export interface Roster {
  readonly owner: string;
  version: number;
  readonly items: Map<string, RosterItem>;
  /** Pending in, by requester; a requester need not be in `items`. */
  readonly requests: Map<string, SubscriptionRequest>;
}

/** Everything the owner's server knows about one contact. */
export interface ContactRecord {
  item: RosterItem | undefined;
  request: SubscriptionRequest | undefined;
}

export interface Transition {
  before: ContactRecord;
  after: ContactRecord;
  itemChanged: boolean;
}

/** Called after a committed change of an item (undefined when removed), with the roster's new version: roster pushes. */
export type ItemListener = (owner: string, contact: string, item: RosterItem | undefined, version: number) => void;

export const rosterMigrations: Migration[] = [
  {
    component: 'roster',
    version: 1,
    sql: `CREATE TABLE roster_items (
        owner TEXT NOT NULL REFERENCES accounts(jid),
        contact TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL DEFAULT 'none',
        ask INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0,
        groups TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (owner, contact)
      );
      CREATE TABLE roster_versions (
        owner TEXT PRIMARY KEY REFERENCES accounts(jid),
        version INTEGER NOT NULL
      );
      CREATE TABLE roster_requests (
        owner TEXT NOT NULL REFERENCES accounts(jid),
        contact TEXT NOT NULL,
        status TEXT,
        nick TEXT,
        PRIMARY KEY (owner, contact)
      )`,
  },
];

interface ItemRow {
  contact: string;
  name: string | null;
  subscription: Subscription;
  ask: number;
  approved: number;
  groups: string;
}

interface RequestRow {
  contact: string;
  status: string | null;
  nick: string | null;
}

const ITEM_COLUMNS = 'contact, name, subscription, ask, approved, groups';

function itemOf(row: ItemRow): RosterItem {
  return {
    jid: row.contact,
    name: row.name ?? undefined,
    subscription: row.subscription,
    ask: row.ask === 1,
    approved: row.approved === 1,
    groups: JSON.parse(row.groups) as string[],
  };
}

function requestOf(row: RequestRow): SubscriptionRequest {
  return { status: row.status ?? undefined, nick: row.nick ?? undefined };
}

function sameItem(a: RosterItem | undefined, b: RosterItem | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return (
    a.name === b.name &&
    a.subscription === b.subscription &&
    a.ask === b.ask &&
    a.approved === b.approved &&
    a.groups.length === b.groups.length &&
    a.groups.every((g, i) => g === b.groups[i])
  );
}

export function newItem(jid: string): RosterItem {
  return { jid, name: undefined, subscription: 'none', ask: false, approved: false, groups: [] };
}

export class RosterStore {
  private readonly cache = new Map<string, Roster>();
  private readonly loading = new Map<string, Promise<Roster>>();

  constructor(
    private readonly server: Server,
    private readonly onItemChange: ItemListener,
  ) {}

  private get db(): Db {
    return this.server.db;
  }

  /** The cached roster of an online user, without waiting. */
  cached(owner: string): Roster | undefined {
    return this.cache.get(owner);
  }

  /** The owner's roster: cached while they are online, read from the database otherwise. */
  get(owner: string): Promise<Roster> {
    const cached = this.cache.get(owner);
    if (cached) return Promise.resolve(cached);
    let pending = this.loading.get(owner);
    if (!pending) {
      pending = this.load(owner).finally(() => this.loading.delete(owner));
      this.loading.set(owner, pending);
    }
    return pending;
  }

  /** One item, for checks (probes) that should not load a whole offline roster. */
  async item(owner: string, contact: string): Promise<RosterItem | undefined> {
    const cached = this.cache.get(owner);
    if (cached) return cached.items.get(contact);
    const row = await this.db.get<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM roster_items WHERE owner = ? AND contact = ?`, [
      owner,
      contact,
    ]);
    return row && itemOf(row);
  }

  /** Drops the cached roster once the owner has no session left (called when a session closes). */
  release(owner: string): void {
    if (this.server.sessions.resources(owner).length === 0) this.cache.delete(owner);
  }

  private load(owner: string): Promise<Roster> {
    return this.db.transaction(async (tx) => {
      const items = await tx.all<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM roster_items WHERE owner = ?`, [owner]);
      const requests = await tx.all<RequestRow>('SELECT contact, status, nick FROM roster_requests WHERE owner = ?', [
        owner,
      ]);
      const version = await tx.get<{ version: number }>('SELECT version FROM roster_versions WHERE owner = ?', [owner]);
      const roster: Roster = {
        owner,
        version: version?.version ?? 0,
        items: new Map(items.map((r) => [r.contact, itemOf(r)])),
        requests: new Map(requests.map((r) => [r.contact, requestOf(r)])),
      };
      // Cached only inside the transaction, so no change can slip in between reading and caching.
      if (this.server.sessions.resources(owner).length > 0) this.cache.set(owner, roster);
      return roster;
    });
  }

  /**
   * Changes what the owner's roster holds about one contact, atomically: `change` gets the current
   * record and the roster's sizes (for limits; it may throw a StanzaError) and returns the new record.
   * A changed item bumps the roster version and is pushed to the owner's interested resources.
   */
  async transition(
    owner: string,
    contact: string,
    change: (current: ContactRecord, sizes: { items: number; requests: number }) => ContactRecord,
  ): Promise<Transition> {
    let version = 0;
    const result = await this.db.transaction(async (tx): Promise<Transition> => {
      const roster = this.cache.get(owner);
      let before: ContactRecord;
      let sizes: { items: number; requests: number };
      if (roster) {
        before = { item: roster.items.get(contact), request: roster.requests.get(contact) };
        sizes = { items: roster.items.size, requests: roster.requests.size };
      } else {
        const item = await tx.get<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM roster_items WHERE owner = ? AND contact = ?`, [
          owner,
          contact,
        ]);
        const request = await tx.get<RequestRow>(
          'SELECT contact, status, nick FROM roster_requests WHERE owner = ? AND contact = ?',
          [owner, contact],
        );
        before = { item: item && itemOf(item), request: request && requestOf(request) };
        sizes = (await tx.get<{ items: number; requests: number }>(
          `SELECT (SELECT count(*) FROM roster_items WHERE owner = ?) AS items,
                  (SELECT count(*) FROM roster_requests WHERE owner = ?) AS requests`,
          [owner, owner],
        )) as { items: number; requests: number };
      }
      const after = change(before, sizes);
      const itemChanged = !sameItem(before.item, after.item);
      if (itemChanged) {
        const item = after.item;
        if (item)
          await tx.run(
            `INSERT INTO roster_items (owner, contact, name, subscription, ask, approved, groups) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
               ask = excluded.ask, approved = excluded.approved, groups = excluded.groups`,
            [
              owner,
              contact,
              item.name ?? null,
              item.subscription,
              item.ask ? 1 : 0,
              item.approved ? 1 : 0,
              JSON.stringify(item.groups),
            ],
          );
        else await tx.run('DELETE FROM roster_items WHERE owner = ? AND contact = ?', [owner, contact]);
        const bumped = await tx.get<{ version: number }>(
          `INSERT INTO roster_versions (owner, version) VALUES (?, 1)
           ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1 RETURNING version`,
          [owner],
        );
        version = bumped?.version ?? 0;
      }
      if (before.request !== after.request) {
        if (after.request)
          await tx.run(
            `INSERT INTO roster_requests (owner, contact, status, nick) VALUES (?, ?, ?, ?)
             ON CONFLICT (owner, contact) DO UPDATE SET status = excluded.status, nick = excluded.nick`,
            [owner, contact, after.request.status ?? null, after.request.nick ?? null],
          );
        else await tx.run('DELETE FROM roster_requests WHERE owner = ? AND contact = ?', [owner, contact]);
      }
      if (roster) {
        if (after.item) roster.items.set(contact, after.item);
        else roster.items.delete(contact);
        if (after.request) roster.requests.set(contact, after.request);
        else roster.requests.delete(contact);
        if (itemChanged) roster.version = version;
      }
      return { before, after, itemChanged };
    });
    if (result.itemChanged) this.onItemChange(owner, contact, result.after.item, version);
    return result;
  }

  /** The `roster` and `subscription-requests` data categories. */
  registerCategories(): void {
    const db = () => this.db;
    const cache = this.cache;
    this.server.privacy.register({
      id: 'roster',
      description:
        'Your contact list: each contact’s address, the name and groups you gave them, and whether you and they see each other’s presence',
      purpose: 'Showing you your contacts and sharing presence only with the people you chose',
      legalBasis: 'contract',
      retention: { description: 'until you remove the contact or the account is deleted' },
      recipients: ['your contacts, possibly on other servers, learn whether you share presence with them'],
      tables: ['roster_items', 'roster_versions'],
      count: async (user) =>
        (await db().get<{ n: number }>('SELECT count(*) AS n FROM roster_items WHERE owner = ?', [user.bareString()]))
          ?.n ?? 0,
      export: async function* (user) {
        for await (const row of db().iterate<ItemRow>(
          `SELECT ${ITEM_COLUMNS} FROM roster_items WHERE owner = ? ORDER BY contact`,
          [user.bareString()],
        )) {
          const item = itemOf(row);
          yield {
            jid: item.jid,
            name: item.name ?? null,
            subscription: item.subscription,
            ask: item.ask ? 'subscribe' : null,
            approved: item.approved,
            groups: item.groups,
          };
        }
      },
      erase: async (user, tx) => {
        const owner = user.bareString();
        cache.delete(owner);
        await tx.run('DELETE FROM roster_versions WHERE owner = ?', [owner]);
        return (await tx.run('DELETE FROM roster_items WHERE owner = ?', [owner])).changes;
      },
      // A contact's own roster item names the user; it is theirs and stays (the email model).
      mentions: [{ table: 'roster_items', column: 'contact', ownerColumn: 'owner' }],
      xep0227: rosterXep0227(
        async function* (user) {
          for await (const row of db().iterate<ItemRow>(
            `SELECT ${ITEM_COLUMNS} FROM roster_items WHERE owner = ? ORDER BY contact`,
            [user.bareString()],
          ))
            yield itemOf(row);
        },
        (owner) => cache.delete(owner),
      ),
    });
    this.server.privacy.register({
      id: 'subscription-requests',
      description:
        'Requests from others to see your presence that you have not answered yet, with the message and nickname they sent',
      purpose:
        'Letting you approve or decline who sees your presence, also when the request arrived while you were offline',
      legalBasis: 'contract',
      retention: { description: 'until you answer the request, the requester withdraws it, or the account is deleted' },
      recipients: [],
      tables: ['roster_requests'],
      count: async (user) =>
        (
          await db().get<{ n: number }>('SELECT count(*) AS n FROM roster_requests WHERE owner = ?', [
            user.bareString(),
          ])
        )?.n ?? 0,
      export: async function* (user) {
        for await (const row of db().iterate<RequestRow>(
          'SELECT contact, status, nick FROM roster_requests WHERE owner = ? ORDER BY contact',
          [user.bareString()],
        ))
          yield { from: row.contact, status: row.status, nick: row.nick };
      },
      erase: async (user, tx) =>
        (await tx.run('DELETE FROM roster_requests WHERE owner = ?', [user.bareString()])).changes,
      // The request the user sent to a contact is the contact's to answer; erasing the user withdraws it (presence module).
      mentions: [{ table: 'roster_requests', column: 'contact', ownerColumn: 'owner' }],
      xep0227: requestsXep0227(async function* (user) {
        for await (const row of db().iterate<RequestRow>(
          'SELECT contact, status, nick FROM roster_requests WHERE owner = ? ORDER BY contact',
          [user.bareString()],
        ))
          yield { from: row.contact, ...requestOf(row) };
      }),
    });
  }
}

const stores = new WeakMap<Server, RosterStore>();

/** Creates the server's roster store; the roster module does this when it loads. */
export function openRosterStore(server: Server, onItemChange: ItemListener): RosterStore {
  const store = new RosterStore(server, onItemChange);
  stores.set(server, store);
  store.registerCategories();
  return store;
}

/** The server's roster store, for modules loaded after the roster module (presence). */
export function rosterStore(server: Server): RosterStore {
  const store = stores.get(server);
  if (!store) throw new Error('the roster module must be loaded before modules that use rosters');
  return store;
}
