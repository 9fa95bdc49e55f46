/**
 * The storage interface every module uses. SQL is written in the portable subset shared by SQLite and
 * PostgreSQL, with `?` placeholders; engines translate. All calls are asynchronous so that a networked
 * engine can sit behind the same interface.
 */
export type SqlValue = string | number | bigint | Buffer | null;

export interface Db {
  readonly engine: 'sqlite';
  run(sql: string, params?: SqlValue[]): Promise<{ changes: number }>;
  get<T = Record<string, unknown>>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  all<T = Record<string, unknown>>(sql: string, params?: SqlValue[]): Promise<T[]>;
  /** Streams rows in batches of `batchSize`, keyed on an ascending integer `rowid`-like column (never all in memory). */
  iterate<T = Record<string, unknown>>(sql: string, params?: SqlValue[]): AsyncIterable<T>;
  /** Runs `fn` in one transaction; other callers wait until it ends. Nested calls join the outer transaction. */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** Names of all tables and their text/blob columns: the residue scan and the export check use this. */
  describe(): Promise<{ table: string; columns: { name: string; type: string }[] }[]>;
  close(): Promise<void>;
}

export interface Migration {
  /** The component that owns the tables, e.g. `roster`. */
  component: string;
  /** Versions start at 1 and only ever grow; a shipped migration is never edited. */
  version: number;
  /** Statements separated by `;`, or a list of statements (for those with `;` inside, like triggers). */
  sql: string | string[];
}
