import type { Config } from '../../core/config.js';
import type { Db } from '../../storage/db.js';
import type { Jid } from '../../xml/jid.js';
import { addressHash } from '../address-hash.js';

/**
 * The consent ledger: one append-only row per consent given or withdrawn, for every purpose that needs
 * it (the terms and privacy policy of a version, the message archive), with when and how. It is the
 * proof GDPR art. 7(1) asks the operator to keep. When an account is erased its rows lose the address
 * (replaced by its keyed hash) and are kept `consent.keepProofDays`, or deleted when that is 0.
 */

/** What consent is about: the published terms (with their version) or an opt-in processing. */
export type ConsentPurpose = 'terms' | 'archive';

/** How it was given or withdrawn. */
export type ConsentMethod =
  | 'in-band-registration'
  | 'invitation'
  | 'web-registration'
  | 'web'
  | 'ad-hoc'
  | 'operator'
  | 'import'
  | 'xep-0441';

export const consentMethodText: Record<ConsentMethod, string> = {
  'in-band-registration': 'at in-band registration (XEP-0077)',
  invitation: 'at registration with an invitation',
  'web-registration': 'at registration on the web page',
  web: 'on the consent web page',
  'ad-hoc': 'with an ad-hoc command of a client (XEP-0050)',
  operator: 'recorded by the operator when creating the account',
  import: 'recorded by the operator when importing the account',
  'xep-0441': 'in the archiving preferences of a client (XEP-0441)',
};

export interface ConsentEntry {
  purpose: ConsentPurpose;
  action: 'given' | 'withdrawn';
  /** The policy version, for `terms`. */
  version: string | null;
  method: ConsentMethod;
  /** Milliseconds since the epoch. */
  at: number;
}

export const LEDGER_MIGRATION = {
  component: 'consent',
  version: 1,
  sql: `
    CREATE TABLE consent_ledger (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      account TEXT NOT NULL,
      pseudonymised_at INTEGER,
      purpose TEXT NOT NULL,
      action TEXT NOT NULL CHECK (action IN ('given', 'withdrawn')),
      version TEXT,
      method TEXT NOT NULL,
      at INTEGER NOT NULL
    );
    CREATE INDEX consent_ledger_account ON consent_ledger (account, purpose, seq);
    CREATE INDEX consent_ledger_pseudonymised ON consent_ledger (pseudonymised_at)`,
};

const BATCH = 500;

export class ConsentLedger {
  constructor(
    private readonly db: Db,
    private readonly config: Config,
  ) {}

  /** Appends one entry; `db` may be a caller's transaction, so that consent is recorded with what it allows. */
  async record(user: Jid, entry: ConsentEntry, db: Db = this.db): Promise<void> {
    await db.run(
      'INSERT INTO consent_ledger (account, purpose, action, version, method, at) VALUES (?, ?, ?, ?, ?, ?)',
      [user.bareString(), entry.purpose, entry.action, entry.version, entry.method, entry.at],
    );
  }

  /** The user's entries, oldest first. */
  async history(user: Jid): Promise<ConsentEntry[]> {
    return (
      await this.db.all<ConsentEntry>(
        'SELECT purpose, action, version, method, at FROM consent_ledger WHERE account = ? AND pseudonymised_at IS NULL ORDER BY seq',
        [user.bareString()],
      )
    ).map((row) => ({ ...row }));
  }

  /** Whether the user accepted this version of the terms. */
  async accepted(user: Jid, version: string): Promise<boolean> {
    return !!(await this.db.get(
      `SELECT 1 FROM consent_ledger WHERE account = ? AND purpose = 'terms' AND version = ? AND action = 'given'
         AND pseudonymised_at IS NULL`,
      [user.bareString(), version],
    ));
  }

  /** The newest terms entry: which version the user accepted last, and when. */
  async lastAccepted(user: Jid): Promise<ConsentEntry | undefined> {
    return this.db.get<ConsentEntry>(
      `SELECT purpose, action, version, method, at FROM consent_ledger WHERE account = ? AND purpose = 'terms'
         AND action = 'given' AND pseudonymised_at IS NULL ORDER BY seq DESC LIMIT 1`,
      [user.bareString()],
    );
  }

  async count(user: Jid): Promise<number> {
    const row = await this.db.get<{ n: number }>(
      'SELECT count(*) AS n FROM consent_ledger WHERE account = ? AND pseudonymised_at IS NULL',
      [user.bareString()],
    );
    return row?.n ?? 0;
  }

  /**
   * At erasure: the address becomes its keyed hash, so the entries still prove consent if the operator
   * is asked about that address, but name nobody; with `keepProofDays` 0 they go.
   */
  async erase(user: Jid, tx: Db, now: number): Promise<number> {
    const account = user.bareString();
    if (this.config.consent.keepProofDays === 0)
      return (await tx.run('DELETE FROM consent_ledger WHERE account = ?', [account])).changes;
    return (
      await tx.run(
        'UPDATE consent_ledger SET account = ?, pseudonymised_at = ? WHERE account = ? AND pseudonymised_at IS NULL',
        [addressHash(this.config, user), now, account],
      )
    ).changes;
  }

  /** Pseudonymised entries older than `keepProofDays` go, in batches. */
  async expire(now: number): Promise<number> {
    const before = now - this.config.consent.keepProofDays * 86_400_000;
    let removed = 0;
    for (;;) {
      const { changes } = await this.db.run(
        `DELETE FROM consent_ledger WHERE seq IN (
           SELECT seq FROM consent_ledger WHERE pseudonymised_at IS NOT NULL AND pseudonymised_at <= ? LIMIT ${BATCH})`,
        [before],
      );
      removed += changes;
      if (changes < BATCH) return removed;
    }
  }
}
