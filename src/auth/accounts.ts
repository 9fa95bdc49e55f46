import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import type { Db } from '../storage/db.js';
import { Jid } from '../xml/jid.js';
import { deriveScramCredentials } from './scram.js';
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

  async exists(jid: Jid): Promise<boolean> {
    return (await this.get(jid)) !== undefined;
  }

  async create(jid: Jid, password: string): Promise<void> {
    jid = this.checkJid(jid);
    checkPassword(password);
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

  async credentials(jid: Jid, hash: ScramHash): Promise<ScramCredentials | undefined> {
    const row = await this.db.get<{ salt: Buffer; iterations: number; stored_key: Buffer; server_key: Buffer }>(
      `SELECT c.salt, c.iterations, c.stored_key, c.server_key FROM scram_credentials c
       JOIN accounts a ON a.jid = c.jid WHERE c.jid = ? AND c.hash = ? AND a.status = 'active'`,
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

  /**
   * Deletes every piece of the user's data through the privacy registry, after closing their sessions.
   * Returns the receipt: what went, per data category.
   */
  async remove(jid: Jid) {
    if (!(await this.exists(jid))) throw new StanzaError('item-not-found', `${jid} does not exist`);
    await this.server.hooks.notify('account/removing', { jid });
    for (const session of this.server.sessions.resources(jid.bareString()))
      session.close({ condition: 'not-authorized', text: 'this account has been removed' });
    return this.server.privacy.eraseAll(jid, this.db);
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
