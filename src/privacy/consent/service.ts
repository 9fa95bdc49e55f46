import { perServer } from '../../core/per-server.js';
import type { Server } from '../../core/server.js';
import type { Db } from '../../storage/db.js';
import type { Jid } from '../../xml/jid.js';
import { type ConsentEntry, ConsentLedger, type ConsentMethod } from './ledger.js';
import { ConsentLinks } from './links.js';
import { type PolicyDocumentId, PolicyStore, type PolicyVersion } from './policies.js';

/**
 * The consent service modules use: the current policy version, the ledger, consent links, and whether
 * a user is held back until they accept (the gate). A running server notices versions published from
 * the command line within `consent.checkInterval` (see `refresh`).
 */

export const CONSENT_PATH = '/consent';
/** The web registration page (src/modules/register-web.ts). */
export const REGISTER_PATH = '/register';

/** The per-user answer the gate needs on every outgoing message, kept while the user has sessions. */
interface Standing {
  accepted: boolean;
  /** When the user's grace period for the current version ends (ms). */
  deadline: number;
}

export class ConsentService {
  /** The clock of acceptance times, deadlines and link expiry (ms). Tests replace it. */
  clock: () => number = Date.now;
  readonly ledger: ConsentLedger;
  readonly policies: PolicyStore;
  readonly links: ConsentLinks;
  private currentVersion: PolicyVersion | undefined;
  private readonly standing = new Map<string, Standing>();

  constructor(private readonly server: Server) {
    this.ledger = new ConsentLedger(server.db, server.config);
    this.policies = new PolicyStore(server.db);
    this.links = new ConsentLinks(server.db, server.config);
  }

  /** The version users must accept, as last read from the database; undefined while none is published. */
  get current(): PolicyVersion | undefined {
    return this.currentVersion;
  }

  /** Reads the current version; returns it when it is new since the last look (a version was published). */
  async refresh(): Promise<PolicyVersion | undefined> {
    const latest = await this.policies.current();
    if (latest?.version === this.currentVersion?.version) return undefined;
    this.currentVersion = latest;
    this.standing.clear();
    if (latest) await this.server.hooks.notify('consent/published', { version: latest });
    return latest;
  }

  /** Publishes a version in this process (the command line, tests) and makes it current here at once. */
  async publish(version: PolicyVersion): Promise<void> {
    await this.policies.publish(version);
    await this.refresh();
  }

  /** The end of the grace period for `user`: publication (or the account's creation, if later) plus `consent.graceDays`. */
  deadlineFor(createdAt: number | undefined): number | undefined {
    const current = this.currentVersion;
    if (!current) return undefined;
    return Math.max(current.publishedAt, createdAt ?? 0) + this.server.config.consent.graceDays * 86_400_000;
  }

  private async standingOf(user: Jid): Promise<Standing | undefined> {
    const current = this.currentVersion;
    if (!current) return undefined;
    const key = user.bareString();
    const known = this.standing.get(key);
    if (known) return known;
    const account = await this.server.accounts.get(user);
    const fresh: Standing = {
      accepted: await this.ledger.accepted(user, current.version),
      deadline: this.deadlineFor(account ? Date.parse(account.created_at) : undefined) as number,
    };
    // Only users with sessions are asked on every stanza; others are looked up when they come.
    if (this.server.sessions.resources(key).length) this.standing.set(key, fresh);
    return fresh;
  }

  /** Whether a version is published that `user` has not accepted. */
  async mustAccept(user: Jid): Promise<boolean> {
    const standing = await this.standingOf(user);
    return standing !== undefined && !standing.accepted;
  }

  /**
   * Whether `user` is held back now: a version they have not accepted, and their grace period over.
   * Synchronous while nothing is published or the user's standing is known, as on the routing path.
   */
  gated(user: Jid): boolean | Promise<boolean> {
    if (!this.currentVersion) return false;
    const held = (s: Standing | undefined) => s !== undefined && !s.accepted && this.clock() >= s.deadline;
    const known = this.standing.get(user.bareString());
    return known ? held(known) : this.standingOf(user).then(held);
  }

  /** When `user` must have accepted the current version by, or undefined when nothing is asked of them. */
  async deadline(user: Jid): Promise<Date | undefined> {
    const standing = await this.standingOf(user);
    return standing && !standing.accepted ? new Date(standing.deadline) : undefined;
  }

  /** Forgets what the gate knew of a user whose last session ended. */
  forget(user: Jid): void {
    this.standing.delete(user.bareString());
  }

  /**
   * Records that `user` accepted `version` (the current one by default), and lifts the gate at once for
   * their sessions. `db` may be the caller's transaction (registration records it with the account).
   */
  async accept(user: Jid, method: ConsentMethod, version?: string, db?: Db): Promise<ConsentEntry> {
    const accepted = version ?? this.currentVersion?.version;
    if (accepted === undefined) throw new Error('no terms are published, so there is nothing to accept');
    const entry: ConsentEntry = { purpose: 'terms', action: 'given', version: accepted, method, at: this.clock() };
    await this.ledger.record(user, entry, db);
    if (accepted === this.currentVersion?.version) {
      const known = this.standing.get(user.bareString());
      if (known) known.accepted = true;
    }
    await this.server.hooks.notify('consent/accepted', { jid: user.bare, version: accepted, method });
    return entry;
  }

  /** The consent page's URL, or undefined when the HTTPS listener is off. */
  pageUrl(): string | undefined {
    return this.server.http.listening ? this.server.http.url(CONSENT_PATH) : undefined;
  }

  /** The stable URL of one document of one version, or undefined when the HTTPS listener is off. */
  documentUrl(version: string, document: PolicyDocumentId): string | undefined {
    return this.server.http.listening
      ? this.server.http.url(`/policy/${encodeURIComponent(version)}/${document}`)
      : undefined;
  }

  /** A single-use link to the consent page for `user` and the current version. */
  async linkFor(user: Jid): Promise<string | undefined> {
    const current = this.currentVersion;
    const page = this.pageUrl();
    if (!current || !page) return undefined;
    return `${page}?token=${await this.links.issue(user, current.version, this.clock())}`;
  }
}

/** The server's consent service (src/privacy/consent/index.ts loads its tables and categories). */
export const consent = perServer((server) => new ConsentService(server));
