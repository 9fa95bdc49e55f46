import type { Db } from '../../storage/db.js';

/**
 * Published versions of the terms of service and the privacy policy. A version is immutable once
 * published: it keeps the Markdown as users were shown it (generated values filled in) and the
 * template it came from, so that old versions stay readable at their URLs and a changed configuration
 * can be detected. These tables hold no personal data.
 */

export type PolicyDocumentId = 'terms' | 'privacy';
export const POLICY_DOCUMENTS: PolicyDocumentId[] = ['terms', 'privacy'];
export const policyTitles: Record<PolicyDocumentId, string> = {
  terms: 'Terms of Service',
  privacy: 'Privacy Policy',
};

export interface PolicyDocument {
  id: PolicyDocumentId;
  title: string;
  /** As published, generated values filled in. */
  markdown: string;
  /** The source with its `{{placeholders}}`, to tell whether the running configuration still says the same. */
  template: string;
}

export interface PolicyVersion {
  version: string;
  /** Milliseconds since the epoch. */
  publishedAt: number;
  /** The operator's summary of what changed, shown to users who accepted an earlier version. */
  changes: string | null;
  documents: PolicyDocument[];
}

export const POLICIES_MIGRATION = {
  component: 'policies',
  version: 1,
  sql: `
    CREATE TABLE policy_versions (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      version TEXT NOT NULL UNIQUE,
      published_at INTEGER NOT NULL,
      changes TEXT
    );
    CREATE TABLE policy_documents (
      version TEXT NOT NULL REFERENCES policy_versions(version),
      document TEXT NOT NULL,
      title TEXT NOT NULL,
      markdown TEXT NOT NULL,
      template TEXT NOT NULL,
      PRIMARY KEY (version, document)
    )`,
};

/** Versions are opaque to clients (urn:xmpp:tos:0 §6) but appear in URLs: a short, URL-safe name. */
export function policyVersionProblem(version: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(version))
    return 'a version is 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit (e.g. 2026-12 or v2)';
  if (version === 'current') return '"current" names whatever version is current; choose another name';
  return undefined;
}

interface VersionRow {
  version: string;
  published_at: number;
  changes: string | null;
}

export class PolicyStore {
  constructor(private readonly db: Db) {}

  private async withDocuments(row: VersionRow | undefined): Promise<PolicyVersion | undefined> {
    if (!row) return undefined;
    const docs = await this.db.all<{ document: PolicyDocumentId; title: string; markdown: string; template: string }>(
      'SELECT document, title, markdown, template FROM policy_documents WHERE version = ?',
      [row.version],
    );
    const documents = POLICY_DOCUMENTS.flatMap((id) => {
      const d = docs.find((doc) => doc.document === id);
      return d ? [{ id, title: d.title, markdown: d.markdown, template: d.template }] : [];
    });
    return { version: row.version, publishedAt: row.published_at, changes: row.changes, documents };
  }

  /** The newest published version, which users must accept; undefined while none was published. */
  async current(): Promise<PolicyVersion | undefined> {
    return this.withDocuments(
      await this.db.get<VersionRow>(
        'SELECT version, published_at, changes FROM policy_versions ORDER BY seq DESC LIMIT 1',
      ),
    );
  }

  async get(version: string): Promise<PolicyVersion | undefined> {
    return this.withDocuments(
      await this.db.get<VersionRow>('SELECT version, published_at, changes FROM policy_versions WHERE version = ?', [
        version,
      ]),
    );
  }

  /** Every version, oldest first, without documents. */
  async list(): Promise<Omit<PolicyVersion, 'documents'>[]> {
    const rows = await this.db.all<VersionRow>(
      'SELECT version, published_at, changes FROM policy_versions ORDER BY seq',
    );
    return rows.map((r) => ({ version: r.version, publishedAt: r.published_at, changes: r.changes }));
  }

  /** The versions published after `version`, oldest first (what a user who accepted it has not seen). */
  async since(version: string): Promise<Omit<PolicyVersion, 'documents'>[]> {
    const rows = await this.db.all<VersionRow>(
      `SELECT version, published_at, changes FROM policy_versions
         WHERE seq > (SELECT seq FROM policy_versions WHERE version = ?) ORDER BY seq`,
      [version],
    );
    return rows.map((r) => ({ version: r.version, publishedAt: r.published_at, changes: r.changes }));
  }

  /** Makes `policy` the current version. Throws when the name is taken or malformed. */
  async publish(policy: PolicyVersion): Promise<void> {
    const problem = policyVersionProblem(policy.version);
    if (problem) throw new Error(`version ${JSON.stringify(policy.version)}: ${problem}`);
    if (!policy.documents.length) throw new Error('a version needs at least one document');
    await this.db.transaction(async (tx) => {
      if (await tx.get('SELECT 1 FROM policy_versions WHERE version = ?', [policy.version]))
        throw new Error(`version ${policy.version} was published already; published versions never change`);
      await tx.run('INSERT INTO policy_versions (version, published_at, changes) VALUES (?, ?, ?)', [
        policy.version,
        policy.publishedAt,
        policy.changes,
      ]);
      for (const d of policy.documents)
        await tx.run(
          'INSERT INTO policy_documents (version, document, title, markdown, template) VALUES (?, ?, ?, ?, ?)',
          [policy.version, d.id, d.title, d.markdown, d.template],
        );
    });
  }
}
