import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../core/config.js';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import type { Db, Migration } from '../storage/db.js';
import { migrate } from '../storage/migrate.js';
import { SqliteDb } from '../storage/sqlite.js';
import type { Jid } from '../xml/jid.js';
import type { DataCategory } from './registry.js';

/**
 * Encryption at rest and crypto-shredding (DESIGN.md §5). Message bodies at rest are sealed with
 * AES-256-GCM under a random data key per user; data keys are wrapped (AES-256-GCM) under a key derived
 * from the server key and kept in a key store of their own, a small SQLite file apart from the
 * database. The database names a user's key only by a random id. Erasing a user deletes their wrapped
 * key first, so every copy of the database, backups included, holds only ciphertext nobody can open.
 *
 * The key store holds random ids and wrapped keys, nothing else: no addresses, no times, so it is not
 * a list of users. The link from a user to their key id lives in the database (`data_keys`), where
 * erasure removes it like any other row.
 */

export const SERVER_KEY_ENV = 'LETHE_SERVER_KEY';

const KEY_BYTES = 32;
const KEY_ID_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENVELOPE_V1 = 1;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
/** Unwrapped keys kept in memory, by key id: bounded, so that churn cannot grow them. */
const CACHE_SIZE = 4096;

/** Missing, malformed or mismatched key material: the message names the key, file or variable and the fix. */
export class KeyMaterialError extends Error {
  override name = 'KeyMaterialError';
}

/**
 * Why a sealed value cannot be opened: its data key was `destroyed` (the owner was erased, or the key
 * store was lost), it is `invalid` (tampered with, or bound to another owner or purpose), or it has an
 * unknown envelope `version`.
 */
export class UnsealError extends Error {
  override name = 'UnsealError';
  constructor(
    readonly reason: 'destroyed' | 'invalid' | 'version',
    message: string,
  ) {
    super(message);
  }
}

/** A user's data key, with the random id that names it in envelopes and in the key store. */
export interface DataKey {
  id: Buffer;
  key: Buffer;
}

export interface ServerKey {
  key: Buffer;
  /** Where it came from, for messages: the variable, the file, or `memory`. */
  source: string;
  /** Set when the key was just generated: the file to write it to once the key store agrees. */
  createAt?: string;
  /** Worth a warning at start, e.g. a key file other users can read. */
  warnings: string[];
}

/**
 * The server key: `LETHE_SERVER_KEY` (base64) when set, else the key file (`encryption.serverKeyFile`,
 * by default `<dataDir>/server.key`, generated when missing), else, with an in-memory database, a key
 * for this run only. A configured file that is missing is an error, not a reason to make a new key:
 * a new key would silently make every stored message unreadable.
 */
export function loadServerKey(
  config: Pick<Config, 'encryption' | 'dataDir' | 'databasePath'>,
  env: NodeJS.ProcessEnv = process.env,
): ServerKey {
  const fromEnv = env[SERVER_KEY_ENV];
  if (fromEnv) return { key: decodeKey(fromEnv.trim(), SERVER_KEY_ENV), source: SERVER_KEY_ENV, warnings: [] };
  const configured = config.encryption.serverKeyFile;
  const file = configured ?? (config.databasePath === ':memory:' ? null : join(config.dataDir, 'server.key'));
  if (file === null) return { key: randomBytes(KEY_BYTES), source: 'memory', warnings: [] };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT')
      throw new KeyMaterialError(`encryption.serverKeyFile: cannot read ${file} (${code}); check its owner and mode`);
    if (configured)
      throw new KeyMaterialError(
        `encryption.serverKeyFile: ${file} does not exist; restore it from your backup, or create a new key with \`openssl rand -base64 32 > ${file}\` (only for a server without stored messages)`,
      );
    return { key: randomBytes(KEY_BYTES), source: file, createAt: file, warnings: [] };
  }
  const warnings =
    (statSync(file).mode & 0o077) !== 0 ? [`${file} can be read by other users than Lethe's; chmod 600 it`] : [];
  return { key: decodeKey(text.trim(), file), source: file, warnings };
}

function decodeKey(text: string, where: string): Buffer {
  const key = Buffer.from(text, 'base64');
  // Node's decoder skips what is not base64; re-encoding catches typos, truncation and other encodings.
  if (key.length !== KEY_BYTES || key.toString('base64') !== text)
    throw new KeyMaterialError(
      `${where}: not a base64-encoded ${KEY_BYTES}-byte key; generate one with \`openssl rand -base64 32\``,
    );
  return key;
}

function writeServerKey(file: string, key: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // `wx`: never overwrite a key that appeared meanwhile; chmod because the umask may narrow but not widen.
  writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
}

const hex = (b: Buffer) => b.toString('hex');

function aad(header: Buffer, owner: Jid, purpose: string): Buffer {
  // Binds the ciphertext to its envelope header, owner and purpose: rows cannot be swapped between users or stores.
  return Buffer.concat([header, Buffer.from(`\0${purpose}\0${owner.bareString()}`)]);
}

/** Envelope v1: version (1 byte) | key id (16) | IV (12) | GCM tag (16) | ciphertext. */
export function seal(dataKey: DataKey, owner: Jid, purpose: string, plaintext: Buffer | string): Buffer {
  const header = Buffer.concat([Buffer.of(ENVELOPE_V1), dataKey.id]);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey.key, iv);
  cipher.setAAD(aad(header, owner, purpose));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, cipher.getAuthTag(), body]);
}

/** The id of the data key a sealed value needs. */
function envelopeKeyId(sealed: Buffer): Buffer {
  if (sealed.length < HEADER_BYTES + IV_BYTES + TAG_BYTES)
    throw new UnsealError('invalid', 'sealed value is too short to be an envelope');
  if (sealed[0] !== ENVELOPE_V1)
    throw new UnsealError('version', `sealed value has envelope version ${sealed[0]}, this Lethe knows only 1`);
  return sealed.subarray(1, HEADER_BYTES);
}

/** Opens a sealed value with the data key that `lookup` finds for its key id. */
export async function unsealWith(
  lookup: (id: Buffer) => Promise<DataKey | undefined>,
  owner: Jid,
  purpose: string,
  sealed: Buffer,
): Promise<Buffer> {
  const id = envelopeKeyId(sealed);
  const dataKey = await lookup(id);
  if (!dataKey) throw new UnsealError('destroyed', `data key ${hex(id)} no longer exists: the value cannot be read`);
  const ivEnd = HEADER_BYTES + IV_BYTES;
  const decipher = createDecipheriv('aes-256-gcm', dataKey.key, sealed.subarray(HEADER_BYTES, ivEnd));
  decipher.setAAD(aad(sealed.subarray(0, HEADER_BYTES), owner, purpose));
  decipher.setAuthTag(sealed.subarray(ivEnd, ivEnd + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(ivEnd + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new UnsealError('invalid', `sealed value does not authenticate as ${purpose} data of ${owner.bareString()}`);
  }
}

const KEY_STORE_MIGRATIONS: Migration[] = [
  {
    component: 'keystore',
    version: 1,
    sql: 'CREATE TABLE wrapped_keys (id BLOB PRIMARY KEY, wrapped BLOB NOT NULL)',
  },
];

/** The separate file of wrapped data keys. Deleting a key overwrites it (secure_delete) and empties the WAL. */
export class KeyStore {
  private constructor(
    private readonly db: SqliteDb,
    private readonly wrapping: Buffer,
    readonly path: string,
  ) {}

  static async open(serverKey: Buffer, path: string): Promise<KeyStore> {
    if (path !== ':memory:' && !existsSync(path)) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Created empty with mode 0600 (SQLite gives its WAL the same); an empty file is a new database to SQLite.
      // `a` leaves a file another process created meanwhile as it is.
      writeFileSync(path, '', { mode: 0o600, flag: 'a' });
    }
    const db = new SqliteDb(path);
    try {
      await migrate(db, KEY_STORE_MIGRATIONS);
    } catch (err) {
      await db.close();
      throw err;
    }
    // A key of its own for wrapping, so the server key is never used directly by two algorithms.
    const wrapping = Buffer.from(hkdfSync('sha256', serverKey, Buffer.alloc(0), 'lethe data-key wrapping v1', 32));
    return new KeyStore(db, wrapping, path);
  }

  /** The store's tables, for the residue scan. */
  get database(): Db {
    return this.db;
  }

  async create(): Promise<DataKey> {
    const dataKey = { id: randomBytes(KEY_ID_BYTES), key: randomBytes(KEY_BYTES) };
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.wrapping, iv);
    cipher.setAAD(dataKey.id);
    const wrapped = Buffer.concat([cipher.update(dataKey.key), cipher.final()]);
    await this.db.run('INSERT INTO wrapped_keys (id, wrapped) VALUES (?, ?)', [
      dataKey.id,
      Buffer.concat([iv, cipher.getAuthTag(), wrapped]),
    ]);
    return dataKey;
  }

  async get(id: Buffer): Promise<DataKey | undefined> {
    const row = await this.db.get<{ wrapped: Buffer }>('SELECT wrapped FROM wrapped_keys WHERE id = ?', [id]);
    if (!row) return undefined;
    const key = this.unwrap(id, row.wrapped);
    if (!key) throw new KeyMaterialError(`data key ${hex(id)} in ${this.path} does not unwrap with this server key`);
    return { id, key };
  }

  async delete(id: Buffer): Promise<number> {
    const { changes } = await this.db.run('DELETE FROM wrapped_keys WHERE id = ?', [id]);
    // The deleted key's page is still in the write-ahead log until a checkpoint; TRUNCATE also empties the file.
    if (changes) this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    return changes;
  }

  /** Whether the server key unwraps the stored keys (true for an empty store). */
  async verify(): Promise<boolean> {
    const row = await this.db.get<{ id: Buffer; wrapped: Buffer }>('SELECT id, wrapped FROM wrapped_keys LIMIT 1');
    return !row || this.unwrap(row.id, row.wrapped) !== undefined;
  }

  close(): Promise<void> {
    return this.db.close();
  }

  private unwrap(id: Buffer, wrapped: Buffer): Buffer | undefined {
    const decipher = createDecipheriv('aes-256-gcm', this.wrapping, wrapped.subarray(0, IV_BYTES));
    decipher.setAAD(id);
    decipher.setAuthTag(wrapped.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(wrapped.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
  }
}

/** A Map that forgets its least recently used entry beyond `max`. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }

  delete(k: string): void {
    this.map.delete(k);
  }
}

/**
 * `server.keys`: per-user data keys, made on a user's first sealed write. Stores of message bodies call
 * `sealFor` before writing and `openFor` after reading, with a purpose of their own (`offline`,
 * `archive`, `upload`, ...). Its data category destroys the key before anything else is erased.
 */
export class Keys {
  readonly module: LetheModule;
  private store: KeyStore | undefined;
  private readonly byId = new Lru<DataKey>(CACHE_SIZE);
  /** Keys being looked up or made, so that two messages to a new user do not make two keys. */
  private readonly finding = new Map<string, Promise<DataKey>>();

  constructor(private readonly server: Server) {
    this.module = {
      name: 'keys',
      migrations: [
        {
          component: 'keys',
          version: 1,
          sql: `CREATE TABLE data_keys (
              owner TEXT PRIMARY KEY REFERENCES accounts(jid),
              key_id BLOB NOT NULL,
              created_at INTEGER NOT NULL
            )`,
        },
      ],
      load: () => server.privacy.register(this.describe()),
    };
  }

  /** The key store; only after `open`. */
  get keyStore(): KeyStore {
    if (!this.store) throw new Error('the key store is used before the server was opened');
    return this.store;
  }

  /**
   * Loads the server key and opens the key store, refusing to start when the two do not belong
   * together (a lost or wrong server key would otherwise make every new message under new keys and
   * every old one unreadable, silently). A newly generated server key is written only then.
   */
  async open(): Promise<void> {
    const { config, log } = this.server;
    const serverKey = loadServerKey(config);
    for (const warning of serverKey.warnings) log.warn(warning);
    const path =
      config.encryption.keyStore ??
      (config.databasePath === ':memory:' ? ':memory:' : join(config.dataDir, 'keys.sqlite'));
    const store = await KeyStore.open(serverKey.key, path);
    try {
      if (!(await store.verify()))
        throw new KeyMaterialError(
          serverKey.createAt
            ? `${serverKey.createAt} is missing, but ${path} holds data keys wrapped by the server key it held; restore it from your backup (or set ${SERVER_KEY_ENV})`
            : `the server key from ${serverKey.source} does not unwrap the data keys in ${path}; restore the server key they were made with`,
        );
      if (serverKey.createAt) {
        writeServerKey(serverKey.createAt, serverKey.key);
        log.warn({ file: serverKey.createAt }, 'generated the server key: back it up, apart from the database');
      }
    } catch (err) {
      await store.close();
      throw err;
    }
    this.store = store;
  }

  async close(): Promise<void> {
    await this.store?.close();
    this.store = undefined;
  }

  /**
   * Encrypts `plaintext` for `user` under their data key, made now if they have none. A caller inside a
   * transaction of the database passes it as `tx`: the key's row is then read and written through it.
   */
  async sealFor(user: Jid, plaintext: Buffer | string, purpose: string, tx?: Db): Promise<Buffer> {
    return seal(await this.currentKey(user, tx), user, purpose, plaintext);
  }

  /** Decrypts what `sealFor` sealed for the same user and purpose; throws `UnsealError` otherwise. */
  openFor(user: Jid, sealed: Buffer, purpose: string): Promise<Buffer> {
    return unsealWith((id) => this.load(id), user, purpose, sealed);
  }

  /** Deletes the user's data key from the key store: everything sealed for them becomes unreadable. */
  async destroy(user: Jid, db: Db = this.server.db): Promise<number> {
    const owner = user.bareString();
    const row = await db.get<{ key_id: Buffer }>('SELECT key_id FROM data_keys WHERE owner = ?', [owner]);
    if (!row) return 0;
    this.byId.delete(hex(row.key_id));
    return this.keyStore.delete(row.key_id);
  }

  private async load(id: Buffer): Promise<DataKey | undefined> {
    const cached = this.byId.get(hex(id));
    if (cached) return cached;
    const dataKey = await this.keyStore.get(id);
    if (dataKey) this.byId.set(hex(id), dataKey);
    return dataKey;
  }

  /**
   * Which key is the user's is read from the database every time, never cached: another process (the
   * command line) may have erased the user meanwhile, and data must never be sealed under a key the
   * database no longer names, which erasure could not find.
   */
  private currentKey(user: Jid, tx: Db | undefined): Promise<DataKey> {
    const owner = user.bareString();
    // Inside a caller's transaction on its own: a lookup outside it would wait for it to end.
    if (tx) return this.findOrMake(owner, tx);
    let finding = this.finding.get(owner);
    if (!finding) {
      finding = this.findOrMake(owner, this.server.db).finally(() => this.finding.delete(owner));
      this.finding.set(owner, finding);
    }
    return finding;
  }

  private async findOrMake(owner: string, db: Db): Promise<DataKey> {
    const row = await db.get<{ key_id: Buffer }>('SELECT key_id FROM data_keys WHERE owner = ?', [owner]);
    const existing = row && (await this.load(row.key_id));
    if (existing) return existing;
    // Named in the database but gone from the key store: destroyed by an erasure under way, or a lost key store.
    if (row) this.server.log.warn('a data key is missing from the key store; a new one is made for new data');
    // Into the key store before the database names it: a crash in between leaves an unused key, never a dangling id.
    const made = await this.keyStore.create();
    const { changes } = row
      ? await db.run('UPDATE data_keys SET key_id = ?, created_at = ? WHERE owner = ? AND key_id = ?', [
          made.id,
          Date.now(),
          owner,
          row.key_id,
        ])
      : await db.run(
          `INSERT INTO data_keys (owner, key_id, created_at) SELECT ?, ?, ?
           WHERE EXISTS (SELECT 1 FROM accounts WHERE jid = ?) ON CONFLICT (owner) DO NOTHING`,
          [owner, made.id, Date.now(), owner],
        );
    if (changes === 1) {
      this.byId.set(hex(made.id), made);
      return made;
    }
    await this.keyStore.delete(made.id);
    const winner = await db.get<{ key_id: Buffer }>('SELECT key_id FROM data_keys WHERE owner = ?', [owner]);
    const dataKey = winner && (await this.load(winner.key_id));
    if (!dataKey) throw new Error(`no data key can be made for ${owner}: there is no such account`);
    return dataKey;
  }

  private describe(): DataCategory {
    const db = () => this.server.db;
    return {
      id: 'data-keys',
      description:
        'The key that encrypts your stored messages: random, yours alone, kept in a separate key store and itself encrypted with the server’s key; the database names it only by a random number. Destroying it makes your stored messages unreadable everywhere, copies and backups of the database included',
      purpose:
        'Keeping your stored messages encrypted, so that erasing your account also makes every copy of them unreadable (crypto-shredding)',
      legalBasis: 'contract',
      retention: { description: 'until the account is deleted, when it is destroyed before anything else' },
      recipients: [],
      tables: ['data_keys', 'wrapped_keys'],
      count: async (user) =>
        (await db().get<{ n: number }>('SELECT count(*) AS n FROM data_keys WHERE owner = ?', [user.bareString()]))
          ?.n ?? 0,
      // The key itself stays out of exports: a leaked export link must not also open the server's copies.
      export: async function* (user) {
        const row = await db().get<{ key_id: Buffer; created_at: number }>(
          'SELECT key_id, created_at FROM data_keys WHERE owner = ?',
          [user.bareString()],
        );
        if (row)
          yield { keyId: hex(row.key_id), createdAt: new Date(row.created_at).toISOString(), algorithm: 'AES-256-GCM' };
      },
      shred: async (user, db) => {
        await this.destroy(user, db);
      },
      erase: async (user, tx) => {
        // The key went in `shred`; destroying again catches a key made for a message that arrived meanwhile.
        await this.destroy(user, tx);
        return (await tx.run('DELETE FROM data_keys WHERE owner = ?', [user.bareString()])).changes;
      },
    };
  }
}
