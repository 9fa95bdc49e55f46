import type { Db, Migration, SqlValue } from '../../storage/db.js';

/**
 * Every read and write of the archive tables. A message is one row of its owner's archive: the stanza
 * sealed under the owner's data key (`sealed`), and in clear only what queries, retention and erasure
 * need: the owner, the archive id (the XEP-0359 stanza-id), the time, the peer's bare JID and resource
 * (the `with` filter), and the direction.
 *
 * Order is (ts, seq): the time, then arrival (seq, the row id) for messages of the same millisecond.
 * Every query walks an index in that order from a cursor (keyset pagination): a page costs the same at
 * the start and the end of a large archive, and nothing uses OFFSET but the sweeper's count cap.
 */

export const archiveMigrations: Migration[] = [
  {
    component: 'mam',
    version: 1,
    sql: `CREATE TABLE mam_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL REFERENCES accounts(jid),
        id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        peer TEXT NOT NULL,
        peer_resource TEXT NOT NULL DEFAULT '',
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        sealed BLOB NOT NULL
      );
      CREATE UNIQUE INDEX mam_messages_id ON mam_messages (owner, id);
      CREATE INDEX mam_messages_owner_ts ON mam_messages (owner, ts);
      CREATE INDEX mam_messages_peer_ts ON mam_messages (owner, peer, ts);
      CREATE INDEX mam_messages_ts ON mam_messages (ts);
      CREATE TABLE mam_prefs (
        owner TEXT PRIMARY KEY REFERENCES accounts(jid),
        default_policy TEXT NOT NULL CHECK (default_policy IN ('always', 'never', 'roster')),
        always_jids TEXT NOT NULL,
        never_jids TEXT NOT NULL,
        retention_days INTEGER,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE mam_consent (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL REFERENCES accounts(jid),
        given_at INTEGER NOT NULL,
        via TEXT NOT NULL,
        withdrawn_at INTEGER
      );
      CREATE INDEX mam_consent_owner ON mam_consent (owner, seq)`,
  },
  {
    // Each reply carries the total <count>; counting a large archive's index row by row took ~80 ms at
    // a million messages, so the total per owner is kept up to date by the database itself.
    component: 'mam',
    version: 2,
    sql: [
      'CREATE TABLE mam_counts (owner TEXT PRIMARY KEY REFERENCES accounts(jid), n INTEGER NOT NULL)',
      'INSERT INTO mam_counts (owner, n) SELECT owner, count(*) FROM mam_messages GROUP BY owner',
      `CREATE TRIGGER mam_counts_insert AFTER INSERT ON mam_messages BEGIN
         INSERT INTO mam_counts (owner, n) VALUES (NEW.owner, 1) ON CONFLICT (owner) DO UPDATE SET n = n + 1;
       END`,
      `CREATE TRIGGER mam_counts_delete AFTER DELETE ON mam_messages BEGIN
         UPDATE mam_counts SET n = n - 1 WHERE owner = OLD.owner;
       END`,
    ],
  },
  {
    // Archive consent moved into the consent ledger (src/privacy/consent), which holds every consent.
    component: 'mam',
    version: 3,
    sql: [
      `INSERT INTO consent_ledger (account, purpose, action, version, method, at)
         SELECT owner, 'archive', action, NULL, via, at FROM (
           SELECT seq, 0 AS step, owner, 'given' AS action, via, given_at AS at FROM mam_consent
           UNION ALL
           SELECT seq, 1, owner, 'withdrawn', via, withdrawn_at FROM mam_consent WHERE withdrawn_at IS NOT NULL
         ) ORDER BY at, seq, step`,
      'DROP TABLE mam_consent',
    ],
  },
];

/** Rows deleted per statement, so that a large purge never holds up routing for long. */
export const DELETE_BATCH = 500;

export type Direction = 'in' | 'out';

export interface NewEntry {
  owner: string;
  id: string;
  ts: number;
  peer: string;
  peerResource: string;
  direction: Direction;
  sealed: Buffer;
}

export interface Cursor {
  ts: number;
  seq: number;
}

export interface StoredRow {
  seq: number;
  id: string;
  ts: number;
  direction: Direction;
  peer: string;
  peer_resource: string;
  sealed: Buffer;
}

export interface Filter {
  peer?: string;
  peerResource?: string;
  start?: number;
  end?: number;
  /** Only rows after every one of these (after-id, RSM after). */
  after: Cursor[];
  before: Cursor[];
  ids?: string[];
}

const COLUMNS = 'seq, id, ts, direction, peer, peer_resource, sealed';

function where(owner: string, f: Filter): { sql: string; params: SqlValue[] } {
  const parts = ['owner = ?'];
  const params: SqlValue[] = [owner];
  if (f.peer !== undefined) {
    parts.push('peer = ?');
    params.push(f.peer);
  }
  if (f.peerResource !== undefined) {
    parts.push('peer_resource = ?');
    params.push(f.peerResource);
  }
  if (f.start !== undefined) {
    parts.push('ts >= ?');
    params.push(f.start);
  }
  if (f.end !== undefined) {
    parts.push('ts <= ?');
    params.push(f.end);
  }
  // The range on ts alone lets the index do the work; the OR only settles ties within one millisecond.
  for (const c of f.after) {
    parts.push('ts >= ? AND (ts > ? OR seq > ?)');
    params.push(c.ts, c.ts, c.seq);
  }
  for (const c of f.before) {
    parts.push('ts <= ? AND (ts < ? OR seq < ?)');
    params.push(c.ts, c.ts, c.seq);
  }
  if (f.ids) {
    parts.push(`id IN (${f.ids.map(() => '?').join(', ')})`);
    params.push(...f.ids);
  }
  return { sql: parts.join(' AND '), params };
}

const yieldToRouting = () => new Promise((resolve) => setImmediate(resolve));

export class ArchiveStore {
  constructor(private readonly db: () => Db) {}

  /** Appends entries in one transaction; an entry whose owner has no account (any more) is left out. */
  async append(entries: NewEntry[]): Promise<void> {
    await this.db().transaction(async (tx) => {
      for (const e of entries)
        await tx.run(
          `INSERT INTO mam_messages (owner, id, ts, peer, peer_resource, direction, sealed)
           SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE jid = ?)`,
          [e.owner, e.id, e.ts, e.peer, e.peerResource, e.direction, e.sealed, e.owner],
        );
    });
  }

  async cursor(owner: string, id: string): Promise<Cursor | undefined> {
    return this.db().get<Cursor>('SELECT ts, seq FROM mam_messages WHERE owner = ? AND id = ?', [owner, id]);
  }

  /** Up to `limit` matching rows from the start (`backward` false) or the end, in that walking order. */
  async page(owner: string, filter: Filter, limit: number, backward: boolean): Promise<StoredRow[]> {
    const { sql, params } = where(owner, filter);
    const order = backward ? 'ts DESC, seq DESC' : 'ts, seq';
    return this.db().all<StoredRow>(`SELECT ${COLUMNS} FROM mam_messages WHERE ${sql} ORDER BY ${order} LIMIT ?`, [
      ...params,
      limit,
    ]);
  }

  async count(owner: string, filter: Filter): Promise<number> {
    const { peer, peerResource, start, end, ids, after, before } = filter;
    const whole =
      [peer, peerResource, start, end, ids].every((v) => v === undefined) && !after.length && !before.length;
    if (whole) return (await this.db().get<{ n: number }>('SELECT n FROM mam_counts WHERE owner = ?', [owner]))?.n ?? 0;
    const { sql, params } = where(owner, filter);
    return (await this.db().get<{ n: number }>(`SELECT count(*) AS n FROM mam_messages WHERE ${sql}`, params))?.n ?? 0;
  }

  /** The oldest or newest row of an archive (XEP-0313 metadata). */
  async edge(owner: string, newest: boolean): Promise<{ id: string; ts: number } | undefined> {
    const order = newest ? 'ts DESC, seq DESC' : 'ts, seq';
    return this.db().get(`SELECT id, ts FROM mam_messages WHERE owner = ? ORDER BY ${order} LIMIT 1`, [owner]);
  }

  async *all(owner: string): AsyncIterable<StoredRow> {
    yield* this.db().iterate<StoredRow>(`SELECT ${COLUMNS} FROM mam_messages WHERE owner = ? ORDER BY ts, seq`, [
      owner,
    ]);
  }

  /** Deletes an owner's rows up to and including `through`, or all of them, a batch at a time. */
  async deleteThrough(owner: string, through?: Cursor): Promise<number> {
    if (!through) return this.deleteBatched('owner = ?', [owner]);
    return this.deleteBatched('owner = ? AND ts <= ? AND (ts < ? OR seq <= ?)', [
      owner,
      through.ts,
      through.ts,
      through.seq,
    ]);
  }

  /** Deletes rows older than `cutoff` (ms): everyone's, or one owner's. */
  async deleteOlder(cutoff: number, owner?: string): Promise<number> {
    return owner === undefined
      ? this.deleteBatched('ts < ?', [cutoff])
      : this.deleteBatched('owner = ? AND ts < ?', [owner, cutoff]);
  }

  /** The next owner with archived messages after `owner` in address order, found through the index. */
  async nextOwner(owner: string): Promise<string | undefined> {
    return (
      await this.db().get<{ owner: string }>('SELECT owner FROM mam_messages WHERE owner > ? ORDER BY owner LIMIT 1', [
        owner,
      ])
    )?.owner;
  }

  /** The newest row beyond the `max` newest of an owner's archive: everything up to it is over the cap. */
  async beyondCap(owner: string, max: number): Promise<Cursor | undefined> {
    return this.db().get<Cursor>(
      'SELECT ts, seq FROM mam_messages WHERE owner = ? ORDER BY ts DESC, seq DESC LIMIT 1 OFFSET ?',
      [owner, max],
    );
  }

  async erase(owner: string, tx: Db): Promise<number> {
    const { changes } = await tx.run('DELETE FROM mam_messages WHERE owner = ?', [owner]);
    await tx.run('DELETE FROM mam_counts WHERE owner = ?', [owner]);
    return changes;
  }

  private async deleteBatched(condition: string, params: SqlValue[]): Promise<number> {
    let removed = 0;
    for (;;) {
      const { changes } = await this.db().run(
        `DELETE FROM mam_messages WHERE seq IN (SELECT seq FROM mam_messages WHERE ${condition} LIMIT ?)`,
        [...params, DELETE_BATCH],
      );
      removed += changes;
      if (changes < DELETE_BATCH) return removed;
      // Between batches, stanzas waiting to be routed go first.
      await yieldToRouting();
    }
  }
}
