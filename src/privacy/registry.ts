import type { Db } from '../storage/db.js';
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
  /** Who else gets to see this data, e.g. "contacts, possibly on other servers". */
  recipients: string[];
  /** Tables this category owns (the residue scan reports hits by table). */
  tables: string[];
  count(user: Jid): Promise<number>;
  export(user: Jid): AsyncIterable<ExportRecord>;
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
}

export interface ErasureReceiptLine {
  category: string;
  description: string;
  removed: number;
}

export class PrivacyRegistry {
  private readonly categories = new Map<string, DataCategory>();

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
   * registration order, so stores that reference the account go before the account itself.
   */
  async eraseAll(user: Jid, db: Db): Promise<ErasureReceiptLine[]> {
    return db.transaction(async (tx) => {
      const receipt: ErasureReceiptLine[] = [];
      for (const category of this.all().reverse()) {
        receipt.push({
          category: category.id,
          description: category.description,
          removed: await category.erase(user, tx),
        });
      }
      return receipt;
    });
  }
}
