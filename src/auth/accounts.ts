import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import { key, NS_LETHE_PIE, NS_PIE_SCRAM } from '../privacy/xep0227/names.js';
import type { Db } from '../storage/db.js';
import { x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import { parseScramElement, scramElement } from './pie-credentials.js';
import { deriveScramCredentials, verifyPassword } from './scram.js';
import type { ScramCredentials, ScramHash } from './types.js';

export type AccountStatus = 'active' | 'locked' | 'deactivated';

export interface AccountRow {
  jid: string;
  created_at: string;
  status: AccountStatus;
}

const HASHES: ScramHash[] = ['sha1', 'sha256'];

/**
 * Accounts and their credentials. Every per-user row in Lethe is keyed by the bare JID string, so
 * that the residue scan can find any trace of an erased user by that one string.
 */
export class AccountStore {
  readonly module: LetheModule;

  constructor(private readonly server: Server) {
    this.module = {
      name: 'accounts',
      migrations: [
        {
          component: 'accounts',
          version: 1,
          sql: `CREATE TABLE accounts (
              jid TEXT PRIMARY KEY,
              created_at TEXT NOT NULL,
              status TEXT NOT NULL DEFAULT 'active'
            );
            CREATE TABLE scram_credentials (
              jid TEXT NOT NULL REFERENCES accounts(jid),
              hash TEXT NOT NULL,
              salt BLOB NOT NULL,
              iterations INTEGER NOT NULL,
              stored_key BLOB NOT NULL,
              server_key BLOB NOT NULL,
              PRIMARY KEY (jid, hash)
            )`,
        },
      ],
      load: () => this.registerCategories(),
    };
  }

  private get db(): Db {
    return this.server.db;
  }

  private registerCategories(): void {
    const db = () => this.db;
    this.server.privacy.register({
      id: 'account',
      description: 'Your account: its address, when it was created and whether it is active',
      purpose: 'Providing the messaging service you signed up for',
      legalBasis: 'contract',
      retention: { description: 'until the account is deleted' },
      recipients: [],
      tables: ['accounts'],
      count: async (user) =>
        (await db().get<{ n: number }>('SELECT count(*) AS n FROM accounts WHERE jid = ?', [user.bareString()]))?.n ??
        0,
      export: async function* (user) {
        const row = await db().get<AccountRow>('SELECT jid, created_at, status FROM accounts WHERE jid = ?', [
          user.bareString(),
        ]);
        if (row) yield { jid: row.jid, createdAt: row.created_at, status: row.status };
      },
      erase: async (user, tx) => (await tx.run('DELETE FROM accounts WHERE jid = ?', [user.bareString()])).changes,
      xep0227: {
        // XEP-0227 has no place for these; the `<user/>` element itself is the account (see importUser).
        elements: [key(NS_LETHE_PIE, 'account')],
        export: async function* (user) {
          const row = await db().get<AccountRow>('SELECT jid, created_at, status FROM accounts WHERE jid = ?', [
            user.bareString(),
          ]);
          if (row) yield x('account', { xmlns: NS_LETHE_PIE, created: row.created_at, status: row.status });
        },
        import: async (user, el, { tx, merging, warn }) => {
          if (merging) return;
          const { created, status } = el.attrs;
          if (created === undefined || Number.isNaN(Date.parse(created)))
            throw new Error(`${user}: <account created=…/> is not a date`);
          if (status !== 'active' && status !== 'deactivated' && status !== 'locked')
            throw new Error(`${user}: <account status=…/> must be active, deactivated or locked`);
          // Locked means an erasure was pending on the old server; that request does not travel, the lock does.
          if (status === 'locked') warn(`${user} was locked pending erasure; imported as deactivated`);
          await tx.run('UPDATE accounts SET created_at = ?, status = ? WHERE jid = ?', [
            new Date(created).toISOString(),
            status === 'locked' ? 'deactivated' : status,
            user.bareString(),
          ]);
        },
      },
    });
    this.server.privacy.register({
      id: 'credentials',
      description:
        'Salted SCRAM keys derived from your password, used to check it when you log in; the password itself is never stored',
      purpose: 'Authenticating you',
      legalBasis: 'contract',
      retention: { description: 'until the account is deleted or the password is changed' },
      recipients: [],
      tables: ['scram_credentials'],
      count: async (user) =>
        (
          await db().get<{ n: number }>('SELECT count(*) AS n FROM scram_credentials WHERE jid = ?', [
            user.bareString(),
          ])
        )?.n ?? 0,
      export: async function* (user) {
        for (const row of await db().all<{
          hash: string;
          salt: Buffer;
          iterations: number;
          stored_key: Buffer;
          server_key: Buffer;
        }>('SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials WHERE jid = ? ORDER BY hash', [
          user.bareString(),
        ]))
          yield {
            mechanism: row.hash === 'sha1' ? 'SCRAM-SHA-1' : 'SCRAM-SHA-256',
            salt: row.salt.toString('base64'),
            iterations: row.iterations,
            storedKey: row.stored_key.toString('base64'),
            serverKey: row.server_key.toString('base64'),
          };
      },
      erase: async (user, tx) =>
        (await tx.run('DELETE FROM scram_credentials WHERE jid = ?', [user.bareString()])).changes,
      xep0227: {
        elements: [key(NS_PIE_SCRAM, 'scram-credentials')],
        export: async function* (user) {
          for (const row of await db().all<{
            hash: ScramHash;
            salt: Buffer;
            iterations: number;
            stored_key: Buffer;
            server_key: Buffer;
          }>(
            'SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials WHERE jid = ? ORDER BY hash',
            [user.bareString()],
          ))
            yield scramElement({
              hash: row.hash,
              salt: row.salt,
              iterations: row.iterations,
              storedKey: row.stored_key,
              serverKey: row.server_key,
            });
        },
        import: async (user, el, { tx, merging, warn }) => {
          // The existing password stays: a second one, valid only for some mechanisms, would be a trap.
          if (merging) return warn(`${user}: kept the existing credentials, not the document's`);
          const c = parseScramElement(el);
          if (!c)
            return warn(
              `${user}: ${el.attrs.mechanism} credentials skipped (Lethe uses SCRAM-SHA-1 and SCRAM-SHA-256)`,
            );
          await tx.run(
            `INSERT INTO scram_credentials (jid, hash, salt, iterations, stored_key, server_key) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (jid, hash) DO UPDATE SET salt = excluded.salt, iterations = excluded.iterations,
               stored_key = excluded.stored_key, server_key = excluded.server_key`,
            [user.bareString(), c.hash, c.salt, c.iterations, c.storedKey, c.serverKey],
          );
        },
      },
    });
  }

  /** Checks the address names a hosted domain and a valid, non-empty localpart. */
  checkJid(address: string | Jid): Jid {
    const jid = typeof address === 'string' ? Jid.parse(address) : address;
    if (!jid.local) throw new StanzaError('jid-malformed', `${jid} has no user part; use name@domain`);
    if (jid.resource) throw new StanzaError('jid-malformed', `${jid} has a resource; use the bare name@domain`);
    if (!this.server.hosts.has(jid.domain))
      throw new StanzaError(
        'not-allowed',
        `${jid.domain} is not a domain this server hosts (${[...this.server.hosts].join(', ')})`,
      );
    return jid;
  }

  async get(jid: Jid): Promise<AccountRow | undefined> {
    return this.db.get<AccountRow>('SELECT jid, created_at, status FROM accounts WHERE jid = ?', [jid.bareString()]);
  }

  /**
   * Whether the account exists and is active. A locked (pending erasure) or deactivated account looks
   * like a missing one to everybody: messages bounce, probes see it unavailable. `get` sees it.
   */
  async exists(jid: Jid): Promise<boolean> {
    return (await this.get(jid))?.status === 'active';
  }

  /**
   * Why the account may not log in although its password was right (locked pending erasure,
   * deactivated), or undefined when it may. The module that locked it words the text through
   * `account/login-refused`, e.g. with the erasure date.
   */
  async loginRefusal(jid: Jid): Promise<string | undefined> {
    const row = await this.get(jid);
    if (row?.status === 'active') return undefined;
    const event = {
      jid,
      status: row?.status,
      text: row ? `this account is ${row.status}` : 'this account no longer exists',
    };
    if (row) await this.server.hooks.notify('account/login-refused', event);
    return event.text;
  }

  async create(jid: Jid, password: string): Promise<void> {
    jid = this.checkJid(jid);
    checkPassword(password);
    // Handlers refuse addresses that may not be registered (the tombstone of an erased account).
    await this.server.hooks.notify('account/creating', { jid });
    const credentials = this.derive(password);
    await this.db.transaction(async (tx) => {
      if (await tx.get('SELECT 1 FROM accounts WHERE jid = ?', [jid.bareString()]))
        throw new StanzaError('conflict', `${jid} already exists`);
      await tx.run('INSERT INTO accounts (jid, created_at, status) VALUES (?, ?, ?)', [
        jid.bareString(),
        new Date().toISOString(),
        'active',
      ]);
      await writeCredentials(tx, jid, credentials);
    });
    await this.server.hooks.notify('account/created', { jid });
  }

  /**
   * The account of an XEP-0227 `<user/>`, inside the import's transaction: created (with SCRAM keys
   * derived from the document's plaintext password, if it has one; the password itself is not kept),
   * or, when it exists already, refused, kept for merging (returns true) or erased first (`replace`).
   */
  async importUser(
    jid: Jid,
    password: string | undefined,
    existing: 'refuse' | 'merge' | 'replace',
    tx: Db,
  ): Promise<boolean> {
    jid = this.checkJid(jid);
    if (await tx.get('SELECT 1 FROM accounts WHERE jid = ?', [jid.bareString()])) {
      if (existing === 'merge') return true;
      if (existing === 'refuse')
        throw new StanzaError(
          'conflict',
          `${jid} already exists: use --merge to add the document's data to it, or --replace to erase it first`,
        );
      await this.server.privacy.eraseAll(jid, tx);
    }
    // `account/creating` is not notified here: its handlers read the database, which this transaction
    // holds. The importer asks them before it begins (src/privacy/import.ts).
    await tx.run('INSERT INTO accounts (jid, created_at, status) VALUES (?, ?, ?)', [
      jid.bareString(),
      new Date().toISOString(),
      'active',
    ]);
    if (password !== undefined) {
      checkPassword(password);
      await writeCredentials(tx, jid, this.derive(password));
    }
    return false;
  }

  async setPassword(jid: Jid, password: string): Promise<void> {
    checkPassword(password);
    const credentials = this.derive(password);
    await this.db.transaction(async (tx) => {
      if (!(await tx.get('SELECT 1 FROM accounts WHERE jid = ?', [jid.bareString()])))
        throw new StanzaError('item-not-found', `${jid} does not exist`);
      await tx.run('DELETE FROM scram_credentials WHERE jid = ?', [jid.bareString()]);
      await writeCredentials(tx, jid, credentials);
    });
  }

  /** SCRAM keys for both hashes; SASLprep (RFC 4013) refuses some passwords, which is the user's error. */
  private derive(password: string): ScramCredentials[] {
    try {
      return HASHES.map((h) => deriveScramCredentials(password, h, this.server.config.auth.scramIterations));
    } catch (err) {
      throw new StanzaError('not-acceptable', `the password cannot be used: ${(err as Error).message}`);
    }
  }

  /** Re-authentication before a sensitive request (deleting the account): the password against the stored SCRAM keys. */
  async checkPassword(jid: Jid, password: string): Promise<boolean> {
    const credentials = await this.credentials(jid, 'sha256');
    return credentials !== undefined && verifyPassword(password, credentials);
  }

  /**
   * Whatever the account's status, so that a locked account's owner who gives the right password can
   * be told why they may not log in: a login must also pass `loginRefusal`.
   */
  async credentials(jid: Jid, hash: ScramHash): Promise<ScramCredentials | undefined> {
    const row = await this.db.get<{ salt: Buffer; iterations: number; stored_key: Buffer; server_key: Buffer }>(
      'SELECT salt, iterations, stored_key, server_key FROM scram_credentials WHERE jid = ? AND hash = ?',
      [jid.bareString(), hash],
    );
    if (!row) return undefined;
    return { hash, salt: row.salt, iterations: row.iterations, storedKey: row.stored_key, serverKey: row.server_key };
  }

  async *list(domain?: string): AsyncIterable<AccountRow> {
    yield* domain
      ? this.db.iterate<AccountRow>('SELECT jid, created_at, status FROM accounts WHERE jid LIKE ? ORDER BY jid', [
          `%@${domain}`,
        ])
      : this.db.iterate<AccountRow>('SELECT jid, created_at, status FROM accounts ORDER BY jid');
  }

  /** Sets the status; erasure and deactivation (src/privacy/erasure.ts) lock and unlock through this, inside their transaction. */
  async setStatus(jid: Jid, status: AccountStatus, tx: Db = this.db): Promise<void> {
    await tx.run('UPDATE accounts SET status = ? WHERE jid = ?', [status, jid.bareString()]);
  }
}

async function writeCredentials(tx: Db, jid: Jid, credentials: ScramCredentials[]): Promise<void> {
  for (const c of credentials)
    await tx.run(
      'INSERT INTO scram_credentials (jid, hash, salt, iterations, stored_key, server_key) VALUES (?, ?, ?, ?, ?, ?)',
      [jid.bareString(), c.hash, c.salt, c.iterations, c.storedKey, c.serverKey],
    );
}

function checkPassword(password: string): void {
  if (password.length < 1) throw new StanzaError('not-acceptable', 'the password must not be empty');
  if (Buffer.byteLength(password) > 1024)
    throw new StanzaError('not-acceptable', 'the password is longer than 1024 bytes');
}
