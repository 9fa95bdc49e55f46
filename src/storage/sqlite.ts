import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Db, SqlValue } from './db.js';

const ITERATE_BATCH = 500;

/**
 * SQLite through better-sqlite3. Calls are synchronous underneath and wrapped in promises; a
 * transaction holds a lock that other callers queue on, so their statements never slip into it.
 */
export class SqliteDb implements Db {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private lock: Promise<void> | undefined;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    // Deleted rows must not linger in free pages of the file: erasure means erasure.
    this.db.pragma('secure_delete = ON');
    this.db.pragma('busy_timeout = 5000');
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private async idle(): Promise<void> {
    while (this.lock) await this.lock;
  }

  // The *Now methods run directly; the public ones wait for a running transaction first.
  runNow(sql: string, params: SqlValue[] = []): { changes: number } {
    const info = this.stmt(sql).run(...params);
    return { changes: info.changes };
  }

  getNow<T>(sql: string, params: SqlValue[] = []): T | undefined {
    return this.stmt(sql).get(...params) as T | undefined;
  }

  allNow<T>(sql: string, params: SqlValue[] = []): T[] {
    return this.stmt(sql).all(...params) as T[];
  }

  async run(sql: string, params?: SqlValue[]) {
    while (this.lock) await this.lock;
    return this.runNow(sql, params);
  }

  async get<T>(sql: string, params?: SqlValue[]) {
    while (this.lock) await this.lock;
    return this.getNow<T>(sql, params);
  }

  async all<T>(sql: string, params?: SqlValue[]) {
    while (this.lock) await this.lock;
    return this.allNow<T>(sql, params);
  }

  async *iterate<T>(sql: string, params: SqlValue[] = []): AsyncIterable<T> {
    // Paged, because better-sqlite3 forbids other statements while a cursor is open.
    for (let offset = 0; ; offset += ITERATE_BATCH) {
      const rows = await this.all<T>(`SELECT * FROM (${sql}) LIMIT ${ITERATE_BATCH} OFFSET ${offset}`, params);
      yield* rows;
      if (rows.length < ITERATE_BATCH) return;
    }
  }

  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    // Checked and taken in the same tick: awaiting idle() even when free would let a second caller in.
    while (this.lock) await this.lock;
    let release!: () => void;
    this.lock = new Promise((r) => {
      release = r;
    });
    const tx = new SqliteTx(this);
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = await fn(tx);
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    } finally {
      tx.closed = true;
      this.lock = undefined;
      release();
    }
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  async describe() {
    await this.idle();
    const tables = this.db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
      .all() as { name: string }[];
    return tables.map(({ name }) => ({
      table: name,
      columns: (this.db.pragma(`table_info("${name.replace(/"/g, '""')}")`) as { name: string; type: string }[]).map(
        (c) => ({ name: c.name, type: c.type.toUpperCase() }),
      ),
    }));
  }

  async close(): Promise<void> {
    await this.idle();
    this.db.close();
  }
}

/** The handle given to a transaction's body: runs without queueing on the lock its transaction holds. */
class SqliteTx implements Db {
  readonly engine = 'sqlite' as const;
  closed = false;
  constructor(private readonly owner: SqliteDb) {}

  private check(): void {
    if (this.closed) throw new Error('transaction handle used after its transaction ended');
  }

  async run(sql: string, params?: SqlValue[]) {
    this.check();
    return this.owner.runNow(sql, params);
  }

  async get<T>(sql: string, params?: SqlValue[]) {
    this.check();
    return this.owner.getNow<T>(sql, params);
  }

  async all<T>(sql: string, params?: SqlValue[]) {
    this.check();
    return this.owner.allNow<T>(sql, params);
  }

  async *iterate<T>(sql: string, params: SqlValue[] = []): AsyncIterable<T> {
    yield* this.owner.allNow<T>(sql, params);
  }

  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    this.check();
    return fn(this);
  }

  describe() {
    return this.owner.describe();
  }

  async close(): Promise<void> {}
}
