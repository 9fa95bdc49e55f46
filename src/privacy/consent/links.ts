import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config } from '../../core/config.js';
import type { Db } from '../../storage/db.js';
import { Jid } from '../../xml/jid.js';
import { serverSecret } from '../address-hash.js';

/**
 * Consent links: a URL that lets one user accept one version of the terms on the web page without
 * typing their password. The token names the account, the version and the expiry, signed with a key
 * derived from the server key; its hash is stored when it is issued and deleted when it is used, so a
 * link works once, and erasing the account (or its expiry) removes it.
 */

export const LINKS_MIGRATION = {
  component: 'consent-links',
  version: 1,
  sql: `
    CREATE TABLE consent_links (
      token_hash TEXT PRIMARY KEY,
      account TEXT NOT NULL REFERENCES accounts(jid),
      version TEXT NOT NULL,
      expires_at INTEGER NOT NULL
    );
    CREATE INDEX consent_links_account ON consent_links (account);
    CREATE INDEX consent_links_expiry ON consent_links (expires_at)`,
};

const b64 = (data: Buffer | string) => Buffer.from(data).toString('base64url');
const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');

export interface LinkClaim {
  account: Jid;
  version: string;
  expiresAt: number;
}

export class ConsentLinks {
  constructor(
    private readonly db: Db,
    private readonly config: Config,
  ) {}

  private sign(payload: string): Buffer {
    return createHmac('sha256', serverSecret(this.config, 'lethe consent link v1')).update(payload).digest();
  }

  async issue(account: Jid, version: string, now: number): Promise<string> {
    const expiresAt = now + this.config.consent.linkValidDays * 86_400_000;
    const payload = b64(JSON.stringify({ a: account.bareString(), v: version, e: expiresAt, n: b64(randomBytes(12)) }));
    const token = `${payload}.${b64(this.sign(payload))}`;
    await this.db.run('INSERT INTO consent_links (token_hash, account, version, expires_at) VALUES (?, ?, ?, ?)', [
      hashOf(token),
      account.bareString(),
      version,
      expiresAt,
    ]);
    return token;
  }

  /** What a token claims, when it is authentic, unexpired and unused; it stays usable until `use`. */
  async check(token: string, now: number): Promise<LinkClaim | undefined> {
    const [payload, signature, extra] = token.split('.');
    if (!payload || !signature || extra !== undefined) return undefined;
    const given = Buffer.from(signature, 'base64url');
    const expected = this.sign(payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let claim: { a?: unknown; v?: unknown; e?: unknown };
    try {
      claim = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const account = typeof claim.a === 'string' ? Jid.tryParse(claim.a) : undefined;
    if (!account || typeof claim.v !== 'string' || typeof claim.e !== 'number' || claim.e <= now) return undefined;
    if (!(await this.db.get('SELECT 1 FROM consent_links WHERE token_hash = ?', [hashOf(token)]))) return undefined;
    return { account, version: claim.v, expiresAt: claim.e };
  }

  /** Spends the token: true when it was unused. */
  async use(token: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM consent_links WHERE token_hash = ?', [hashOf(token)])).changes === 1;
  }

  async count(user: Jid): Promise<number> {
    const row = await this.db.get<{ n: number }>('SELECT count(*) AS n FROM consent_links WHERE account = ?', [
      user.bareString(),
    ]);
    return row?.n ?? 0;
  }

  async erase(user: Jid, tx: Db): Promise<number> {
    return (await tx.run('DELETE FROM consent_links WHERE account = ?', [user.bareString()])).changes;
  }

  async expire(now: number): Promise<number> {
    return (await this.db.run('DELETE FROM consent_links WHERE expires_at <= ?', [now])).changes;
  }
}
