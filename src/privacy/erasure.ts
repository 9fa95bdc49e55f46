import { StanzaError } from '../core/errors.js';
import { publicBaseUrl } from '../core/http-routes.js';
import type { LetheModule } from '../core/module.js';
import { perServer } from '../core/per-server.js';
import { Periodic } from '../core/periodic.js';
import type { Server } from '../core/server.js';
import type { Db } from '../storage/db.js';
import { Jid } from '../xml/jid.js';
import { addressHash } from './address-hash.js';
import { tellSessions } from './notice.js';
import type { ErasureReceiptLine } from './registry.js';

/**
 * The erasure lifecycle (GDPR art. 17, DESIGN.md "email model") and deactivation.
 *
 * A request (XEP-0077 `<remove/>` with the password, `lethe user erase`, or `requestErasure` from other
 * front ends) locks the account at once: status `locked`, a row in `account_holds` with the erasure
 * date, sessions told and closed. A locked account cannot log in (SASL `account-disabled` with the
 * date) and looks missing to everyone else. `lethe user restore` cancels until the date; then the
 * sweeper erases.
 *
 * Erasing is resumable: the hold is marked `erasing` and the tombstone written before anything goes,
 * and everything else (every registered category, the receipt, the audit entry) is one transaction.
 * A crash anywhere leaves a locked account with an `erasing` hold, which the next start finishes.
 *
 * Deactivation uses the same lock and hold without an erasure date, and deletes nothing.
 */

/** Test hook, harmless otherwise: SIGKILLs this process after the first category is erased, inside the transaction. */
export const KILL_DURING_ERASURE_ENV = 'LETHE_TEST_KILL_DURING_ERASURE';

const DAY_MS = 86_400_000;

interface HoldRow {
  jid: string;
  kind: 'erasure' | 'deactivation';
  since: string;
  erase_at: string | null;
  requested_by: string;
  reason: string | null;
  reminded_at: string | null;
  erasing: number;
}

export interface ErasureReceipt {
  /** The keyed hash of the erased address, which the tombstone keeps. */
  tombstone: string;
  requestedAt: string;
  completedAt: string;
  requestedBy: 'the user' | 'the operator';
  reason: string | null;
  /** Per data category, how many items were deleted. */
  erased: ErasureReceiptLine[];
  /** What was deliberately kept, why and for how long. */
  kept: { category: string; what: string; why: string; howLong: string; items: number }[];
}

export interface ErasureRequest {
  account: string;
  eraseAt: Date;
  /** What will go, per data category (the registry's counts at request time). */
  willErase: { category: string; description: string; count: number }[];
  /** What the user is (or should be) told: the date, what goes and how to undo. */
  notice: string;
  /** Present when the erasure already ran (no grace period, or `now`). */
  receipt?: ErasureReceipt;
}

export interface ActionOptions {
  /** Who asks: the OS user for the command line, the user's own bare JID for self-service. */
  by: string;
  reason?: string | undefined;
}

function day(iso: string | Date): string {
  return (typeof iso === 'string' ? iso : iso.toISOString()).slice(0, 10);
}

function getHold(db: Db, jid: Jid): Promise<HoldRow | undefined> {
  return db.get<HoldRow>('SELECT * FROM account_holds WHERE jid = ?', [jid.bareString()]);
}

export const RESTORE_PATH = '/account/restore';

/** The page's address as users reach it, or undefined when the HTTPS listener is off. */
export function restorePageUrl(server: Server): string | undefined {
  if (!server.config.http.enabled) return undefined;
  // On the command line no listener runs: the address the server will have.
  return server.http.listening ? server.http.url(RESTORE_PATH) : `${publicBaseUrl(server.config)}${RESTORE_PATH}`;
}

/** Whether an erasure of the account is pending and can still be cancelled. */
export async function pendingErasure(server: Server, account: Jid): Promise<boolean> {
  const hold = await getHold(server.db, account.bare);
  return hold?.kind === 'erasure' && !hold.erasing;
}

function contactHint(server: Server): string {
  const { privacy, support, admin } = server.config.contactAddresses;
  const addresses = privacy.length ? privacy : support.length ? support : admin;
  return addresses.length ? ` (${addresses.join(', ')})` : '';
}

function restoreHow(server: Server, jid: Jid): string {
  const url = restorePageUrl(server);
  const operator = `ask the operator of ${jid.domain}${contactHint(server)} to restore it`;
  return url ? `log in at ${url} or ${operator}` : operator;
}

function graceNotice(server: Server, jid: Jid, eraseAt: Date, willErase: ErasureRequest['willErase']): string {
  const what = willErase
    .filter((c) => c.count > 0)
    .map((c) => `${c.category} (${c.count})`)
    .join(', ');
  return (
    `Your account ${jid} will be erased on ${day(eraseAt)} (UTC), with everything this server keeps for you` +
    `${what ? `: ${what}` : ''}. Messages you sent to others stay with them. Until then the account is locked: ` +
    `you cannot log in and messages to it are refused. To cancel, ${restoreHow(server, jid)} before that date.`
  );
}

function deactivationNotice(server: Server, jid: Jid, reason: string | null): string {
  return (
    `The operator of ${jid.domain} has deactivated your account ${jid}${reason ? ` (reason: ${reason})` : ''}. ` +
    `Nothing was deleted; you cannot log in and messages to it are refused until it is reactivated. ` +
    `Ask the operator${contactHint(server)} about it.`
  );
}

/** Tells the account's sessions (in this process) why, then ends them: contacts see them go unavailable. */
function lockSessions(server: Server, jid: Jid, notice: string, reason: string): void {
  tellSessions(server, jid, notice);
  for (const session of server.sessions.resources(jid.bareString()))
    session.close({ condition: 'not-authorized', text: reason });
}

function pseudonymise(text: string | null, jid: Jid, hash: string): string | null {
  return text?.replace(new RegExp(jid.bareString().replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi'), hash) ?? null;
}

/**
 * Requests the erasure of an account: locks it at once and erases it when the grace period
 * (`erasure.graceDays`) ends, or now with `now` or a grace period of 0. The caller has
 * re-authenticated the user (self-service) or has the operator's reason.
 */
export async function requestErasure(
  server: Server,
  account: Jid,
  options: ActionOptions & { now?: boolean },
): Promise<ErasureRequest> {
  const jid = account.bare;
  if (!(await server.accounts.get(jid))) throw new StanzaError('item-not-found', `${jid} does not exist`);
  const hold = await getHold(server.db, jid);
  if (hold?.kind === 'erasure' && !options.now)
    throw new StanzaError(
      'conflict',
      `${jid} is already to be erased on ${day(hold.erase_at as string)}; restore it to cancel, or erase it now`,
    );
  const grace = options.now ? 0 : server.config.erasure.graceDays;
  const requestedAt = new Date();
  const eraseAt = new Date(requestedAt.getTime() + grace * DAY_MS);
  const willErase = (await server.privacy.countAll(jid))
    .filter(({ category }) => !category.keeps)
    .map(({ category, count }) => ({ category: category.id, description: category.description, count }));
  await server.db.transaction(async (tx) => {
    await server.accounts.setStatus(jid, 'locked', tx);
    await tx.run(
      `INSERT INTO account_holds (jid, kind, since, erase_at, requested_by, reason, reminded_at, erasing)
       VALUES (?, 'erasure', ?, ?, ?, ?, NULL, 0)
       ON CONFLICT (jid) DO UPDATE SET kind = 'erasure', since = excluded.since, erase_at = excluded.erase_at,
         requested_by = excluded.requested_by, reason = excluded.reason, reminded_at = NULL`,
      [jid.bareString(), requestedAt.toISOString(), eraseAt.toISOString(), options.by, options.reason ?? null],
    );
    await server.audit.record(
      {
        actor: options.by,
        action: 'erasure-requested',
        account: jid,
        reason: options.reason,
        details: { eraseAt: eraseAt.toISOString() },
      },
      tx,
    );
  });
  if (grace === 0) {
    const receipt = await eraseAccount(server, jid);
    return { account: jid.bareString(), eraseAt, willErase, notice: `Your account ${jid} has been erased.`, receipt };
  }
  const notice = graceNotice(server, jid, eraseAt, willErase);
  lockSessions(server, jid, notice, `this account is locked and will be erased on ${day(eraseAt)}`);
  return { account: jid.bareString(), eraseAt, willErase, notice };
}

/** Cancels a pending erasure (`lethe user restore`): the account is active again, nothing was lost. */
export async function restoreAccount(server: Server, account: Jid, options: ActionOptions): Promise<void> {
  const jid = account.bare;
  const hold = await getHold(server.db, jid);
  if (hold?.kind !== 'erasure') throw new StanzaError('item-not-found', `no erasure of ${jid} is pending`);
  if (hold.erasing) throw new StanzaError('conflict', `the erasure of ${jid} has begun and cannot be cancelled`);
  await unlock(server, jid, { actor: options.by, action: 'restore', account: jid, reason: options.reason });
}

/** Locks and hides an account without deleting anything (`lethe user deactivate`); reversible. */
export async function deactivateAccount(server: Server, account: Jid, options: ActionOptions): Promise<void> {
  const jid = account.bare;
  if (!(await server.accounts.get(jid))) throw new StanzaError('item-not-found', `${jid} does not exist`);
  const hold = await getHold(server.db, jid);
  if (hold)
    throw new StanzaError(
      'conflict',
      hold.kind === 'erasure' ? `${jid} is to be erased; restore it first` : `${jid} is already deactivated`,
    );
  await server.db.transaction(async (tx) => {
    await server.accounts.setStatus(jid, 'deactivated', tx);
    await tx.run(
      `INSERT INTO account_holds (jid, kind, since, requested_by, reason, erasing) VALUES (?, 'deactivation', ?, ?, ?, 0)`,
      [jid.bareString(), new Date().toISOString(), options.by, options.reason ?? null],
    );
    await server.audit.record({ actor: options.by, action: 'deactivate', account: jid, reason: options.reason }, tx);
  });
  lockSessions(
    server,
    jid,
    deactivationNotice(server, jid, options.reason ?? null),
    'this account has been deactivated',
  );
}

export async function reactivateAccount(server: Server, account: Jid, options: ActionOptions): Promise<void> {
  const jid = account.bare;
  const hold = await getHold(server.db, jid);
  if (hold?.kind !== 'deactivation') throw new StanzaError('item-not-found', `${jid} is not deactivated`);
  await unlock(server, jid, { actor: options.by, action: 'reactivate', account: jid, reason: options.reason });
}

async function unlock(server: Server, jid: Jid, entry: Parameters<Server['audit']['record']>[0]): Promise<void> {
  await server.db.transaction(async (tx) => {
    await server.accounts.setStatus(jid, 'active', tx);
    await tx.run('DELETE FROM account_holds WHERE jid = ?', [jid.bareString()]);
    await server.audit.record(entry, tx);
  });
  await server.audit.tell(entry);
}

/**
 * Erases an account whose erasure was requested, through every registered data category. Idempotent:
 * run again after a crash it finishes the job; run for an address already erased it returns the receipt.
 */
export async function eraseAccount(server: Server, account: Jid): Promise<ErasureReceipt> {
  const jid = account.bare;
  const bare = jid.bareString();
  const hash = addressHash(server.config, jid);
  const hold = await getHold(server.db, jid);
  if (hold?.kind !== 'erasure') {
    const done = await latestReceipt(server.db, hash);
    if (done && !(await server.accounts.get(jid))) return done;
    throw new StanzaError('item-not-found', `no erasure of ${jid} was requested`);
  }
  const { tombstoneDays } = server.config.erasure;
  const started = new Date();
  // From here on a crash leaves a locked account marked `erasing`, which the next start finishes.
  await server.db.transaction(async (tx) => {
    await server.accounts.setStatus(jid, 'locked', tx);
    await tx.run('UPDATE account_holds SET erasing = 1 WHERE jid = ?', [bare]);
    await tx.run(
      `INSERT INTO tombstones (hash, created_at, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (hash) DO UPDATE SET created_at = excluded.created_at, expires_at = excluded.expires_at`,
      [
        hash,
        started.toISOString(),
        tombstoneDays === null ? null : new Date(started.getTime() + tombstoneDays * DAY_MS).toISOString(),
      ],
    );
  });
  // Contacts are told (unsubscription, unavailable presence) and sessions end before the data goes.
  await server.hooks.notify('account/removing', { jid });
  for (const session of server.sessions.resources(bare))
    session.close({ condition: 'not-authorized', text: 'this account has been erased' });
  const receipt = await server.db.transaction(async (tx): Promise<ErasureReceipt> => {
    // Another process (the CLI and the server's sweeper) may have finished it meanwhile.
    if (!(await tx.get('SELECT 1 FROM account_holds WHERE jid = ?', [bare])))
      return (await latestReceipt(tx, hash)) as ErasureReceipt;
    let first = true;
    const lines = await server.privacy.eraseAll(jid, tx, () => {
      if (first && process.env[KILL_DURING_ERASURE_ENV]) process.kill(process.pid, 'SIGKILL');
      first = false;
    });
    const completedAt = new Date().toISOString();
    const keeping = new Map(server.privacy.all().map((c) => [c.id, c]));
    const result: ErasureReceipt = {
      tombstone: hash,
      requestedAt: hold.since,
      completedAt,
      requestedBy: hold.requested_by === bare ? 'the user' : 'the operator',
      reason: pseudonymise(hold.reason, jid, hash),
      erased: lines.filter((l) => !keeping.get(l.category)?.keeps),
      kept: lines.flatMap((l) => {
        const category = keeping.get(l.category);
        if (!category?.keeps) return [];
        const { what, why } = category.keeps;
        return [{ category: l.category, what, why, howLong: category.retention.description, items: l.removed }];
      }),
    };
    await tx.run('INSERT INTO erasure_receipts (tombstone, completed_at, receipt) VALUES (?, ?, ?)', [
      hash,
      completedAt,
      JSON.stringify(result),
    ]);
    await server.audit.record(
      {
        actor: hold.requested_by === bare ? hash : hold.requested_by,
        action: 'erased',
        account: hash,
        reason: result.reason ?? undefined,
        details: { items: result.erased.reduce((n, l) => n + l.removed, 0) },
      },
      tx,
    );
    return result;
  });
  server.log.info({ account: hash.slice(0, 16) }, 'account erased');
  return receipt;
}

async function latestReceipt(db: Db, hash: string): Promise<ErasureReceipt | undefined> {
  const row = await db.get<{ receipt: string }>(
    'SELECT receipt FROM erasure_receipts WHERE tombstone = ? ORDER BY id DESC LIMIT 1',
    [hash],
  );
  return row ? (JSON.parse(row.receipt) as ErasureReceipt) : undefined;
}

/** The receipt of an erased address, for the operator (found by the address's keyed hash). */
export function erasureReceipt(server: Server, jid: Jid): Promise<ErasureReceipt | undefined> {
  return latestReceipt(server.db, addressHash(server.config, jid.bare));
}

export interface PendingHold {
  account: string;
  kind: 'erasure' | 'deactivation';
  since: string;
  eraseAt: string | null;
  requestedBy: string;
  reason: string | null;
  /** Erasure only: the reminder is due or was given, so the user should be told once more. */
  reminderDue: boolean;
}

/** Locked and deactivated accounts, for `lethe user pending`. */
export async function pendingHolds(server: Server, now = new Date()): Promise<PendingHold[]> {
  const rows = await server.db.all<HoldRow>('SELECT * FROM account_holds ORDER BY since');
  return rows.map((r) => ({
    account: r.jid,
    kind: r.kind,
    since: r.since,
    eraseAt: r.erase_at,
    requestedBy: r.requested_by,
    reason: r.reason,
    reminderDue: r.kind === 'erasure' && remindAt(server, r) <= now.getTime(),
  }));
}

function remindAt(server: Server, hold: HoldRow): number {
  const days = server.config.erasure.reminderDays;
  return days > 0 ? new Date(hold.erase_at as string).getTime() - days * DAY_MS : Number.POSITIVE_INFINITY;
}

/**
 * One run of the sweeper, with an injectable clock: finishes interrupted erasures, erases accounts whose
 * grace period ended, gives due reminders, closes sessions of accounts locked by another process (the
 * command line), and expires audit entries, receipts and tombstones past their retention.
 */
export async function sweepErasures(server: Server, now = new Date()): Promise<{ erased: number; reminded: number }> {
  let erased = 0;
  let reminded = 0;
  for (const hold of await server.db.all<HoldRow>('SELECT * FROM account_holds ORDER BY since')) {
    const jid = Jid.parse(hold.jid);
    try {
      if (hold.kind === 'erasure' && (hold.erasing || new Date(hold.erase_at as string) <= now)) {
        await eraseAccount(server, jid);
        erased++;
        continue;
      }
      if (hold.kind === 'erasure' && !hold.reminded_at && remindAt(server, hold) <= now.getTime()) {
        // The account is locked, so in-band the user is reachable only through a session still open here.
        const notice = graceNotice(server, jid, new Date(hold.erase_at as string), []);
        tellSessions(server, jid, notice);
        await server.db.run('UPDATE account_holds SET reminded_at = ? WHERE jid = ?', [now.toISOString(), hold.jid]);
        server.log.info(
          { account: addressHash(server.config, jid).slice(0, 16), eraseAt: hold.erase_at },
          'erasure reminder due: tell the user (lethe user pending lists the account)',
        );
        reminded++;
      }
      if (server.sessions.resources(hold.jid).length)
        lockSessions(
          server,
          jid,
          hold.kind === 'erasure'
            ? graceNotice(server, jid, new Date(hold.erase_at as string), [])
            : deactivationNotice(server, jid, hold.reason),
          hold.kind === 'erasure' ? 'this account is locked' : 'this account has been deactivated',
        );
    } catch (err) {
      server.log.error({ err }, 'erasure sweep failed for one account');
    }
  }
  for (const id of ['audit-log', 'erasure-receipt', 'tombstone']) await server.privacy.get(id)?.expire?.(now);
  return { erased, reminded };
}

function registerCategories(server: Server): void {
  const db = () => server.db;
  const { tombstoneDays } = server.config.erasure;
  const auditDays = server.config.audit.retentionDays;
  server.privacy.register({
    id: 'account-hold',
    description:
      'Whether your account is locked pending erasure or deactivated: since when, the erasure date, who asked for it and the reason given',
    purpose: 'Honouring an erasure request after its grace period, and keeping a deactivated account closed',
    legalBasis: 'legal-obligation',
    retention: { description: 'until the account is erased, restored or reactivated' },
    recipients: [],
    tables: ['account_holds'],
    count: async (user) =>
      (await db().get<{ n: number }>('SELECT count(*) AS n FROM account_holds WHERE jid = ?', [user.bareString()]))
        ?.n ?? 0,
    export: async function* (user) {
      const hold = await getHold(db(), user);
      if (hold)
        yield {
          kind: hold.kind,
          since: hold.since,
          eraseAt: hold.erase_at,
          requestedBy: hold.requested_by,
          reason: hold.reason,
        };
    },
    erase: async (user, tx) => (await tx.run('DELETE FROM account_holds WHERE jid = ?', [user.bareString()])).changes,
  });
  const tombstoneFor = (user: Jid) =>
    db().get<{ created_at: string; expires_at: string | null }>(
      'SELECT created_at, expires_at FROM tombstones WHERE hash = ?',
      [addressHash(server.config, user)],
    );
  server.privacy.register({
    id: 'tombstone',
    description:
      'After an account is erased: a keyed hash of its address (never the address itself), so that nobody else can register it',
    purpose: 'Stopping someone else from taking over an erased user’s address and receiving what was meant for them',
    legalBasis: 'legitimate-interest',
    retention: {
      description: tombstoneDays === null ? 'forever' : `${tombstoneDays} days after the erasure`,
      ...(tombstoneDays !== null && { maxAgeSeconds: tombstoneDays * 86_400 }),
    },
    recipients: [],
    tables: ['tombstones'],
    keeps: {
      what: 'a tombstone: the keyed hash of the address',
      why: 'so that nobody else can register the address and receive what contacts still send to it',
    },
    count: async (user) => ((await tombstoneFor(user)) ? 1 : 0),
    export: async function* (user) {
      const row = await tombstoneFor(user);
      if (row) yield { createdAt: row.created_at, expiresAt: row.expires_at };
    },
    // Written by the erasure itself, before this runs: kept, and counted for the receipt.
    erase: async (user, tx) =>
      (await tx.get('SELECT 1 FROM tombstones WHERE hash = ?', [addressHash(server.config, user)])) ? 1 : 0,
    expire: async (now) =>
      (await db().run('DELETE FROM tombstones WHERE expires_at IS NOT NULL AND expires_at < ?', [now.toISOString()]))
        .changes,
  });
  server.privacy.register({
    id: 'erasure-receipt',
    description:
      'After an account is erased: the receipt of its erasure, keyed by the tombstone hash: how many items each category deleted and what was kept',
    purpose: 'Accountability: proving that an erasure request was carried out, and how',
    legalBasis: 'legal-obligation',
    retention: { description: `${auditDays} days after the erasure`, maxAgeSeconds: auditDays * 86_400 },
    recipients: ['the operator'],
    tables: ['erasure_receipts'],
    keeps: {
      what: 'this receipt, under the keyed hash of the address',
      why: 'accountability (GDPR art. 5(2)): proof that the erasure was carried out',
    },
    count: async (user) =>
      (
        await db().get<{ n: number }>('SELECT count(*) AS n FROM erasure_receipts WHERE tombstone = ?', [
          addressHash(server.config, user),
        ])
      )?.n ?? 0,
    export: async function* (user) {
      const receipt = await erasureReceipt(server, user);
      if (receipt) yield receipt as unknown as Record<string, unknown>;
    },
    // The erasure writes the receipt right after, in the same transaction: the one item kept.
    erase: async () => 1,
    expire: async (now) =>
      (
        await db().run('DELETE FROM erasure_receipts WHERE completed_at < ?', [
          new Date(now.getTime() - auditDays * DAY_MS).toISOString(),
        ])
      ).changes,
  });
}

const sweeper = perServer((server) => new Periodic(server.log, 'erasure sweep', () => sweepErasures(server)));

export const erasureModule: LetheModule = {
  name: 'erasure',
  migrations: [
    {
      component: 'erasure',
      version: 1,
      sql: `CREATE TABLE account_holds (
          jid TEXT PRIMARY KEY,
          kind TEXT NOT NULL,
          since TEXT NOT NULL,
          erase_at TEXT,
          requested_by TEXT NOT NULL,
          reason TEXT,
          reminded_at TEXT,
          erasing INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE tombstones (
          hash TEXT PRIMARY KEY,
          created_at TEXT NOT NULL,
          expires_at TEXT
        );
        CREATE TABLE erasure_receipts (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          tombstone TEXT NOT NULL,
          completed_at TEXT NOT NULL,
          receipt TEXT NOT NULL
        );
        CREATE INDEX erasure_receipts_tombstone ON erasure_receipts (tombstone)`,
    },
  ],
  load(server) {
    registerCategories(server);
    const { hooks } = server;
    hooks.on('account/creating', async ({ jid }: { jid: Jid }) => {
      const row = await server.db.get<{ expires_at: string | null }>(
        'SELECT expires_at FROM tombstones WHERE hash = ?',
        [addressHash(server.config, jid)],
      );
      if (row && (row.expires_at === null || row.expires_at > new Date().toISOString()))
        throw new StanzaError('conflict', `${jid} belonged to an erased account and cannot be registered again`);
    });
    hooks.on('account/login-refused', async (event: { jid: Jid; text: string }) => {
      const hold = await getHold(server.db, event.jid);
      if (!hold) return;
      event.text =
        hold.kind === 'deactivation'
          ? 'this account has been deactivated by the operator; ask them to reactivate it'
          : hold.erasing
            ? 'this account is being erased'
            : `this account is locked and will be erased on ${day(hold.erase_at as string)}; to cancel, ${restoreHow(server, event.jid)}`;
    });
    // Only a started server sweeps (not every CLI command); its first run finishes interrupted erasures.
    hooks.on('server/started', () => sweeper(server).start(server.config.erasure.sweepInterval * 1000));
  },
  async unload(server) {
    await sweeper(server).stop();
  },
};
