import type { Db } from '../storage/db.js';
import type { XmlElement } from '../xml/element.js';
import type { Jid } from '../xml/jid.js';

/**
 * The privacy registry: every store of personal data is declared here once, by the module that owns it.
 * Export, erasure, retention sweeps and the operator's reports are generated from these declarations,
 * so a store that is not registered is a bug (the residue scan test finds it).
 */

export type LegalBasis = 'contract' | 'consent' | 'legal-obligation' | 'legitimate-interest';

export const legalBasisText: Record<LegalBasis, string> = {
  contract: 'GDPR art. 6(1)(b): necessary to provide the service the user signed up for',
  consent: 'GDPR art. 6(1)(a): the user’s consent, which can be withdrawn at any time',
  'legal-obligation': 'GDPR art. 6(1)(c): a legal obligation of the operator',
  'legitimate-interest': 'GDPR art. 6(1)(f): the operator’s legitimate interest',
};

export interface Retention {
  /** Human-readable, for exports and reports, e.g. "until the account is deleted" or "30 days". */
  description: string;
  /** Maximum age in seconds when the store expires items by age; undefined when kept until erasure. */
  maxAgeSeconds?: number;
}

/** One exported item: plain JSON, streamed so that large stores never sit in memory whole. */
export type ExportRecord = Record<string, unknown>;

export interface DataCategory {
  /** Stable identifier, e.g. `roster`. Used as file name in exports. */
  id: string;
  description: string;
  purpose: string;
  legalBasis: LegalBasis;
  retention: Retention;
  /**
   * True for stores of what people send (messages, files) rather than account data: XEP-0504's
   * `data_retention` and the reports' content risks are about these.
   */
  content?: boolean;
  /** What this store keeps of what people send is sealed with the owner's data key (src/privacy/keys.ts). */
  encryptedAtRest?: boolean;
  /** Who else gets to see this data, e.g. "contacts, possibly on other servers". */
  recipients: string[];
  /** Tables this category owns (the residue scan reports hits by table). */
  tables: string[];
  /**
   * Where the category keeps data outside the database (files, memory), for a category with no
   * table; the residue scan cannot read it, so erasure is checked there through `count`.
   */
  elsewhere?: string;
  count(user: Jid): Promise<number>;
  export(user: Jid): AsyncIterable<ExportRecord>;
  /** How the category appears in an XEP-0227 document (export and import); absent when it has no representation there. */
  xep0227?: Xep0227Mapping;
  /** For stores of messages: the time and stanza of one export record, which the export also writes as CSV. */
  message?(record: ExportRecord): { time: string; stanza: string };
  /**
   * Destroys what the user has outside the database (their data key in the key store), before the
   * erasure's transaction: however an erasure is interrupted after this, their data stays unreadable.
   * Idempotent, since an interrupted erasure is run again. `db` is what `eraseAll` was given, which may
   * be a transaction of the caller's.
   */
  shred?(user: Jid, db: Db): Promise<void>;
  /** Removes all of the user's items inside `tx`; returns how many went (for the erasure receipt). */
  erase(user: Jid, tx: Db): Promise<number>;
  /** Called by the retention sweeper; removes items past their retention in bounded batches. */
  expire?(now: Date): Promise<number>;
  /**
   * Where this store legitimately keeps *another* user's address, in rows that belong to someone else
   * (a contact's own roster item): the residue scan accepts hits in `column` only when the row's
   * `ownerColumn` (a bare JID) names a different user.
   */
  mentions?: { table: string; column: string; ownerColumn: string }[];
  /**
   * Set when `erase` keeps a pseudonymised remainder instead of deleting (audit entries, the tombstone):
   * what stays and why, for the erasure receipt. Such a table may hold the erased address's keyed hash
   * (src/privacy/address-hash.ts), never the address; the residue scan allows exactly that.
   */
  keeps?: { what: string; why: string };
}

/** What an XEP-0227 import gives a category's `import`: the import's transaction, and a place for what it skipped. */
export interface Xep0227ImportContext {
  tx: Db;
  /** The account existed before the import (`--merge`): what only its owner should change, such as credentials, stays. */
  merging: boolean;
  /** Reports data that was left out (the operator is told, XEP-0227 §3); throwing instead aborts the whole import. */
  warn(message: string): void;
}

/**
 * A category's part of the XEP-0227 (PIE) `<user/>` element. Elements are named `{namespace}localName`.
 * With `container`, the category's elements are the children of that one element under `<user/>`
 * (`<offline-messages/>`), written and read one at a time so that a large store streams both ways.
 */
export interface Xep0227Mapping {
  container?: string;
  /** The elements this category reads, under `<user/>` or the container. */
  elements: string[];
  export(user: Jid): AsyncIterable<XmlElement>;
  import(user: Jid, el: XmlElement, ctx: Xep0227ImportContext): Promise<void>;
}

export interface ErasureReceiptLine {
  category: string;
  description: string;
  removed: number;
}

export class PrivacyRegistry {
  private readonly categories = new Map<string, DataCategory>();
  private readonly plain = new Map<string, string>();

  /**
   * Declares a table that holds nobody's personal data (published policy documents), with why not, so
   * that the residue scan's check that every table belongs to a category can tell it from a forgotten store.
   */
  declareNonPersonal(table: string, why: string): void {
    this.plain.set(table, why);
  }

  /** Tables declared free of personal data, with the reason. */
  nonPersonalTables(): Map<string, string> {
    return new Map(this.plain);
  }

  register(category: DataCategory): void {
    if (this.categories.has(category.id)) throw new Error(`data category ${category.id} registered twice`);
    this.categories.set(category.id, category);
  }

  get(id: string): DataCategory | undefined {
    return this.categories.get(id);
  }

  all(): DataCategory[] {
    return [...this.categories.values()];
  }

  async countAll(user: Jid): Promise<{ category: DataCategory; count: number }[]> {
    const out = [];
    for (const category of this.all()) out.push({ category, count: await category.count(user) });
    return out;
  }

  /**
   * Erases the user from every category in one transaction. Categories are erased in reverse
   * registration order, so stores that reference the account go before the account itself. Key
   * material outside the database is destroyed first (`shred`), so that even a copy of the database
   * taken before the erasure can no longer be read.
   */
  async eraseAll(
    user: Jid,
    db: Db,
    onErased?: (line: ErasureReceiptLine) => void | Promise<void>,
  ): Promise<ErasureReceiptLine[]> {
    for (const category of this.all().reverse()) await category.shred?.(user, db);
    return db.transaction(async (tx) => {
      const receipt: ErasureReceiptLine[] = [];
      for (const category of this.all().reverse()) {
        const line = {
          category: category.id,
          description: category.description,
          removed: await category.erase(user, tx),
        };
        receipt.push(line);
        await onErased?.(line);
      }
      return receipt;
    });
  }
}
