import { userInfo } from 'node:os';
import type { LetheModule } from '../core/module.js';
import type { Server } from '../core/server.js';
import type { Db } from '../storage/db.js';
import type { Jid } from '../xml/jid.js';
import { addressHash } from './address-hash.js';
import { tellUser } from './notice.js';

/**
 * The append-only audit log (GDPR art. 5(2), accountability): every operator action that touches a
 * user's personal data, and the user's own erasure requests. Entries are never updated, except that
 * erasing an account replaces its address by the keyed hash (pseudonymisation), and deleted only when
 * older than `audit.retentionDays`.
 *
 * Access transparency: recording an action someone else took on an active account tells its user,
 * with the stated reason, by a message from the server's domain (kept offline when they are not online).
 */

export interface AuditRecord {
  /** The OS user for command-line actions, the user's bare JID for self-service, `lethe` for the server itself. */
  actor: string;
  /** e.g. `export`, `import`, `erasure-requested`, `erased`, `restore`, `deactivate`, `reactivate`, `password-reset`. */
  action: string;
  /** The account concerned; after its erasure, its keyed hash. */
  account: Jid | string;
  reason?: string | undefined;
  details?: Record<string, unknown>;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  account: string;
  reason: string | null;
  details: Record<string, unknown> | null;
}

interface Row {
  id: number;
  at: string;
  actor: string;
  action: string;
  account: string;
  reason: string | null;
  details: string | null;
}

/** How the user is told what an operator did, by action. */
const TOLD: Record<string, string> = {
  export: 'exported a copy of your data',
  import: 'imported data into your account',
  'password-reset': 'set a new password for your account',
  restore: 'cancelled the erasure of your account; it is active again',
  reactivate: 'reactivated your account',
};

const DAY_MS = 86_400_000;
const EXPIRE_BATCH = 500;

function toEntry(row: Row): AuditEntry {
  return { ...row, details: row.details === null ? null : (JSON.parse(row.details) as Record<string, unknown>) };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class AuditLog {
  readonly module: LetheModule;

  constructor(private readonly server: Server) {
    this.module = {
      name: 'audit',
      migrations: [
        {
          component: 'audit',
          version: 1,
          sql: `CREATE TABLE audit_log (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              at TEXT NOT NULL,
              actor TEXT NOT NULL,
              action TEXT NOT NULL,
              account TEXT NOT NULL,
              reason TEXT,
              details TEXT
            );
            CREATE INDEX audit_log_account ON audit_log (account)`,
        },
      ],
      load: () => this.registerCategory(),
    };
  }

  /**
   * Appends an entry and tells the user when someone else acted on their active account. Inside a
   * transaction pass `tx`: the user is then not told (the message would need the storage the
   * transaction holds), so call `tell` once it has committed.
   */
  async record(entry: AuditRecord, tx?: Db): Promise<void> {
    const account = typeof entry.account === 'string' ? entry.account : entry.account.bareString();
    await (tx ?? this.server.db).run(
      'INSERT INTO audit_log (at, actor, action, account, reason, details) VALUES (?, ?, ?, ?, ?, ?)',
      [
        new Date().toISOString(),
        entry.actor,
        entry.action,
        account,
        entry.reason ?? null,
        entry.details ? JSON.stringify(entry.details) : null,
      ],
    );
    if (!tx) await this.tell(entry);
  }

  /** Access transparency: the user of an active account learns what someone else did to it, and why. */
  async tell(entry: AuditRecord): Promise<void> {
    if (typeof entry.account === 'string' || entry.actor === entry.account.bareString()) return;
    const what = TOLD[entry.action] ?? `did the following to your account: ${entry.action}`;
    await tellUser(
      this.server,
      entry.account,
      `On ${new Date().toISOString().slice(0, 10)} the operator of this server ${what}.` +
        (entry.reason ? ` Reason given: ${entry.reason}.` : '') +
        ' Every such action is recorded in the server’s audit log.',
    );
  }

  /** Entries oldest first; for an account, also those kept under its hash after its erasure. */
  async list(filter: { account?: Jid } = {}): Promise<AuditEntry[]> {
    const rows = filter.account
      ? await this.server.db.all<Row>('SELECT * FROM audit_log WHERE account IN (?, ?) OR actor = ? ORDER BY id', [
          filter.account.bareString(),
          addressHash(this.server.config, filter.account),
          filter.account.bareString(),
        ])
      : await this.server.db.all<Row>('SELECT * FROM audit_log ORDER BY id');
    return rows.map(toEntry);
  }

  private registerCategory(): void {
    const server = this.server;
    const days = server.config.audit.retentionDays;
    const ofUser = (user: Jid) =>
      server.db.all<Row>('SELECT * FROM audit_log WHERE account = ? OR actor = ? ORDER BY id', [
        user.bareString(),
        user.bareString(),
      ]);
    server.privacy.register({
      id: 'audit-log',
      description:
        'The audit log: every action the operator took on your data (export, import, password reset, erasure, deactivation and their undoing), and your own erasure requests, with who did it, when and the reason given',
      purpose: 'Accountability: showing what was done with personal data, by whom and why',
      legalBasis: 'legal-obligation',
      retention: {
        description: `${days} days; when the account is erased, kept with its address replaced by a keyed hash`,
        maxAgeSeconds: days * 86_400,
      },
      recipients: ['the operator'],
      tables: ['audit_log'],
      keeps: {
        what: 'the audit-log entries about the account, with its address replaced by a keyed hash',
        why: 'accountability (GDPR art. 5(2)): the operator must be able to show what was done with the account’s data and that it was erased',
      },
      count: async (user) => (await ofUser(user)).length,
      export: async function* (user) {
        for (const row of await ofUser(user)) yield toEntry(row) as unknown as Record<string, unknown>;
      },
      erase: async (user, tx) => {
        const address = user.bareString();
        const pseudonym = addressHash(server.config, user);
        // Free text can name the address too (a reason such as "asked by alice@… by email"), in any case.
        const pattern = new RegExp(escapeRegExp(address), 'gi');
        const rows = await tx.all<Row>(
          `SELECT * FROM audit_log WHERE account = ? OR actor = ? OR lower(reason) LIKE ? OR lower(details) LIKE ?`,
          [address, address, `%${address}%`, `%${address}%`],
        );
        for (const row of rows)
          await tx.run('UPDATE audit_log SET actor = ?, account = ?, reason = ?, details = ? WHERE id = ?', [
            row.actor.replace(pattern, pseudonym),
            row.account.replace(pattern, pseudonym),
            row.reason?.replace(pattern, pseudonym) ?? null,
            row.details?.replace(pattern, pseudonym) ?? null,
            row.id,
          ]);
        return rows.length;
      },
      expire: async (now) => {
        const cutoff = new Date(now.getTime() - days * DAY_MS).toISOString();
        return (
          await server.db.run(
            'DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? ORDER BY id LIMIT ?)',
            [cutoff, EXPIRE_BATCH],
          )
        ).changes;
      },
    });
  }
}

/** The audit actor of a command-line action: the OS user who ran it. */
export function operatorActor(): string {
  return userInfo().username;
}
