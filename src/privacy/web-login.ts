import type { Server } from '../core/server.js';
import { Jid } from '../xml/jid.js';

/**
 * Password checks on the server's web pages (restoring an account, accepting terms): failures are
 * counted per address in memory only, so that the pages cannot be used to guess passwords, and every
 * failure looks the same, so that they do not tell who exists.
 */

const MAX_FAILURES = 5;
const FAILURE_WINDOW_MS = 3_600_000;

export type WebLogin = { ok: true; jid: Jid } | { ok: false; reason: 'refused' | 'too-many' };

export class WebLogins {
  private readonly failures = new Map<string, { count: number; resetAt: number }>();

  constructor(private readonly server: Server) {}

  private blocked(key: string, now: number): boolean {
    const f = this.failures.get(key);
    if (f && f.resetAt <= now) this.failures.delete(key);
    return (this.failures.get(key)?.count ?? 0) >= MAX_FAILURES;
  }

  private failed(key: string, now: number): void {
    if (this.failures.size > 10_000) for (const [k, f] of this.failures) if (f.resetAt <= now) this.failures.delete(k);
    const f = this.failures.get(key) ?? { count: 0, resetAt: now + FAILURE_WINDOW_MS };
    f.count++;
    this.failures.set(key, f);
  }

  /**
   * Checks the address and password from a form; `allowed` adds what else must hold for this page
   * (a pending erasure), and counts as a failure when it does not.
   */
  async check(address: string, password: string, allowed?: (jid: Jid) => Promise<boolean>): Promise<WebLogin> {
    const jid = Jid.tryParse(address.trim())?.bare;
    if (!jid?.local || !this.server.hosts.has(jid.domain)) return { ok: false, reason: 'refused' };
    const key = jid.bareString();
    const now = Date.now();
    if (this.blocked(key, now)) return { ok: false, reason: 'too-many' };
    if ((allowed && !(await allowed(jid))) || !(await this.server.accounts.checkPassword(jid, password))) {
      this.failed(key, now);
      return { ok: false, reason: 'refused' };
    }
    this.failures.delete(key);
    return { ok: true, jid };
  }
}
