import { StanzaError } from '../../core/errors.js';
import type { Server } from '../../core/server.js';
import { consent } from '../../privacy/consent/service.js';
import type { Db } from '../../storage/db.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';

/**
 * Archiving preferences (XEP-0441, the `<prefs/>` of urn:xmpp:mam:2) and the record of consent.
 *
 * Archiving is opt-in: a user without preferences gets `mam.defaultPolicy`, `never` unless the operator
 * decided otherwise. Preferences "archive something" when the default is not `never` or the `always`
 * list names someone; the moment they start to, consent is recorded in the consent ledger
 * (src/privacy/consent/ledger.ts) with its time and how it was given, and the moment they stop, its
 * withdrawal: the proof GDPR art. 7(1) asks for, exported and erased with the rest of the ledger.
 *
 * Preferences are read on the message path, so they are cached in memory: one entry per user who ever
 * set them (bounded by the accounts, not by traffic); users without an entry have the configured default.
 */

export const NS_MAM = 'urn:xmpp:mam:2';

export type Policy = 'always' | 'never' | 'roster';
const POLICIES = new Set<string>(['always', 'never', 'roster']);

export interface Prefs {
  default: Policy;
  /** JIDs as the user gave them (bare or full), normalised. */
  always: string[];
  never: string[];
  /** Days this user keeps messages, at most `mam.maxAgeDays`; null keeps the server's maximum. */
  retentionDays: number | null;
}

/** How consent was given or withdrawn, for the record. */
export type ConsentChannel = 'xep-0441' | 'ad-hoc';

/** Whether these preferences can archive anything at all. */
export function archives(prefs: Prefs): boolean {
  return prefs.default !== 'never' || prefs.always.length > 0;
}

/**
 * XEP-0441 §2.3: a listed full JID matches that JID only, a listed bare JID any resource of it. `never`
 * wins over `always`. Returns the verdict, or `roster` when the roster has to decide.
 */
export function verdict(prefs: Prefs, peer: Jid): 'archive' | 'skip' | 'roster' {
  const full = peer.toString();
  const bare = peer.bareString();
  const listed = (list: string[]) => list.some((j) => j === full || j === bare);
  if (listed(prefs.never)) return 'skip';
  if (listed(prefs.always)) return 'archive';
  if (prefs.default === 'always') return 'archive';
  return prefs.default === 'roster' ? 'roster' : 'skip';
}

/** Parses a `<prefs/>` set; a missing list is empty (§2.1.2, §2.1.3). */
export function parsePrefs(el: XmlElement, current: Prefs): Prefs {
  const policy = el.attrs.default;
  if (policy === undefined || !POLICIES.has(policy))
    throw new StanzaError('bad-request', 'default must be always, never or roster');
  const list = (name: string): string[] => {
    const jids = (el.getChild(name, NS_MAM)?.getChildren('jid') ?? []).map((j) => {
      const jid = Jid.tryParse(j.text().trim());
      if (!jid) throw new StanzaError('jid-malformed', `not a JID in <${name}/>: ${j.text()}`);
      return jid.toString();
    });
    return [...new Set(jids)];
  };
  return {
    default: policy as Policy,
    always: list('always'),
    never: list('never'),
    retentionDays: current.retentionDays,
  };
}

export function renderPrefs(prefs: Prefs): XmlElement {
  const el = x('prefs', { xmlns: NS_MAM, default: prefs.default });
  for (const name of ['always', 'never'] as const) {
    const list = el.c(name);
    for (const jid of prefs[name]) list.c('jid').t(jid);
  }
  return el;
}

interface PrefsRow {
  owner: string;
  default_policy: Policy;
  always_jids: string;
  never_jids: string;
  retention_days: number | null;
}

function fromRow(row: PrefsRow): Prefs {
  return {
    default: row.default_policy,
    always: JSON.parse(row.always_jids) as string[],
    never: JSON.parse(row.never_jids) as string[],
    retentionDays: row.retention_days,
  };
}

export class PrefsStore {
  private readonly cache = new Map<string, Prefs>();

  constructor(
    private readonly server: Server,
    private readonly clock: () => number,
  ) {}

  private get db(): Db {
    return this.server.db;
  }

  /** Loads every user's preferences, so the message path never waits for the database. */
  async load(): Promise<void> {
    for await (const row of this.db.iterate<PrefsRow>('SELECT * FROM mam_prefs ORDER BY owner'))
      this.cache.set(row.owner, fromRow(row));
  }

  get defaults(): Prefs {
    return { default: this.server.config.mam.defaultPolicy, always: [], never: [], retentionDays: null };
  }

  get(owner: string): Prefs {
    return this.cache.get(owner) ?? this.defaults;
  }

  /** Users who chose a shorter retention than the server's, for the sweeper. */
  shorterRetention(): { owner: string; days: number }[] {
    const max = this.server.config.mam.maxAgeDays;
    const out: { owner: string; days: number }[] = [];
    for (const [owner, prefs] of this.cache)
      if (prefs.retentionDays !== null && prefs.retentionDays < max) out.push({ owner, days: prefs.retentionDays });
    return out;
  }

  /**
   * Stores new preferences and records the consent they give or withdraw. Returns whether archiving
   * was just turned off, so the caller can purge.
   */
  async set(owner: string, prefs: Prefs, via: ConsentChannel): Promise<{ disabled: boolean }> {
    const before = archives(this.get(owner));
    const after = archives(prefs);
    const now = this.clock();
    await this.db.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO mam_prefs (owner, default_policy, always_jids, never_jids, retention_days, updated_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (owner) DO UPDATE SET default_policy = excluded.default_policy, always_jids = excluded.always_jids,
           never_jids = excluded.never_jids, retention_days = excluded.retention_days, updated_at = excluded.updated_at`,
        [owner, prefs.default, JSON.stringify(prefs.always), JSON.stringify(prefs.never), prefs.retentionDays, now],
      );
      if (before !== after)
        await consent(this.server).ledger.record(
          Jid.parse(owner),
          { purpose: 'archive', action: after ? 'given' : 'withdrawn', version: null, method: via, at: now },
          tx,
        );
    });
    this.cache.set(owner, prefs);
    return { disabled: before && !after };
  }

  async count(owner: string): Promise<number> {
    const row = await this.db.get<{ n: number }>('SELECT count(*) AS n FROM mam_prefs WHERE owner = ?', [owner]);
    return row?.n ?? 0;
  }

  /** Whether the user set preferences at all (export shows them only then). */
  has(owner: string): boolean {
    return this.cache.has(owner);
  }

  async erase(owner: string, tx: Db): Promise<number> {
    const prefs = (await tx.run('DELETE FROM mam_prefs WHERE owner = ?', [owner])).changes;
    this.cache.delete(owner);
    return prefs;
  }
}
