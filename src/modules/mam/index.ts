import { randomUUID } from 'node:crypto';
import { StanzaError } from '../../core/errors.js';
import type { LetheModule } from '../../core/module.js';
import type { StanzaEvent } from '../../core/router.js';
import type { Server } from '../../core/server.js';
import type { ClientSession } from '../../core/session.js';
import { UnsealError } from '../../privacy/keys.js';
import type { DataCategory } from '../../privacy/registry.js';
import { buildForm, formBoolean } from '../../xml/dataform.js';
import { type XmlElement, x } from '../../xml/element.js';
import { parseFragments } from '../../xml/fragment.js';
import { Jid } from '../../xml/jid.js';
import { adhocCommands, type FormValues } from '../adhoc.js';
import type { AccountInfoEvent } from '../disco.js';
import { NS_SID, sentStanzaId } from '../stanza-id.js';
import { ArchiveWriter, PURPOSE, worthArchiving } from './archiver.js';
import { archiveXep0227 } from './pie.js';
import {
  archives,
  type ConsentChannel,
  NS_MAM,
  type Prefs,
  PrefsStore,
  parsePrefs,
  renderPrefs,
  verdict,
} from './prefs.js';
import { fin, parseQuery, queryForm, runQuery } from './query.js';
import { ArchiveStore, archiveMigrations, type StoredRow } from './store.js';

/**
 * The message archive (XEP-0313 with `#extended`, preferences XEP-0441, trimming urn:xmpp:mamtrim:0):
 * opt-in, expiring, encrypted at rest. What is archived: see archiver.ts; how it is stored and queried:
 * store.ts and query.ts; preferences and consent: prefs.ts.
 *
 * A message is archived on its owner's side: incoming when it is delivered to the account (also when
 * the account is offline: at arrival), under the stanza-id the account stamped on it; outgoing when the
 * user's client sends it, under the id the stanza-id module keeps for the sender (also named in the sent
 * carbons). A message to one's own account is archived once.
 *
 * Retention: `mam.maxAgeDays` (a user may choose fewer days) and `mam.maxPerUser`, enforced by a
 * background sweeper that deletes in small batches. Turning archiving off deletes the archive when
 * `mam.purgeOnDisable`.
 */

export const NS_MAM_EXTENDED = `${NS_MAM}#extended`;
export const NS_MAMTRIM = 'urn:xmpp:mamtrim:0';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_DELAY = 'urn:xmpp:delay';
/** XEP-0441 §2.2: the well-known node of an archive's configuration command. */
export const CONFIGURE_NODE = 'urn:xmpp:mam#configure';
export const DELETE_NODE = 'urn:lethe:mam:delete';

const DAY_MS = 86_400_000;

const yieldToRouting = () => new Promise((resolve) => setImmediate(resolve));

export class MessageArchive {
  /** The archive's clock (ms): timestamps of new messages, consent entries, the sweeper. Tests replace it. */
  clock: () => number = Date.now;
  readonly store: ArchiveStore;
  readonly prefs: PrefsStore;
  private readonly writer: ArchiveWriter;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;

  constructor(private readonly server: Server) {
    this.store = new ArchiveStore(() => server.db);
    this.prefs = new PrefsStore(server, () => this.clock());
    this.writer = new ArchiveWriter(server, this.store);
  }

  private get config() {
    return this.server.config.mam;
  }

  async attach(): Promise<void> {
    const { hooks, privacy } = this.server;
    await this.prefs.load();
    // After stanza ids (100), which give the archive id; before carbons (0) and delivery (-1).
    for (const target of ['bare', 'full']) hooks.on(`message/${target}`, (e: StanzaEvent) => this.observe(e), 50);
    const on = (event: string, handler: (e: StanzaEvent, owner: string) => Promise<void>) =>
      hooks.on(event, async (e: StanzaEvent) => {
        await handler(e, e.to.bareString());
        return true;
      });
    on(`iq-get/self/${NS_MAM}:query`, async (e) => this.server.router.reply(e.stanza, queryForm()));
    on(`iq-set/self/${NS_MAM}:query`, (e, owner) => this.query(e, owner));
    on(`iq-get/self/${NS_MAM}:metadata`, (e, owner) => this.metadata(e, owner));
    on(`iq-get/self/${NS_MAM}:prefs`, async (e, owner) =>
      this.server.router.reply(e.stanza, renderPrefs(this.prefs.get(owner))),
    );
    on(`iq-set/self/${NS_MAM}:prefs`, async (e, owner) => {
      const next = parsePrefs(e.stanza.getChild('prefs', NS_MAM) as XmlElement, this.prefs.get(owner));
      await this.apply(owner, next, 'xep-0441');
      this.server.router.reply(e.stanza, renderPrefs(next));
    });
    on(`iq-set/self/${NS_MAMTRIM}:trim`, (e, owner) => this.trim(e, owner));
    // XEP-0313 §7: the archive is the account; only its owner may use it, so only the owner is told.
    hooks.on('disco-info/account', (e: AccountInfoEvent) => {
      if (e.from.bareString() === e.account.bareString()) e.info.features.push(NS_MAM, NS_MAM_EXTENDED, NS_MAMTRIM);
    });
    this.registerCommands();
    privacy.register(this.archiveCategory());
    privacy.register(this.settingsCategory());
    this.sweeper = setInterval(() => this.sweep(), this.config.sweepInterval * 1000);
    this.sweeper.unref();
    this.sweep();
  }

  async detach(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([this.sweeping, this.writer.settled()]);
  }

  /** Resolves once every message seen so far is in the archive. */
  settled(): Promise<void> {
    return this.writer.settled();
  }

  /** On the routing path: decides and queues, never waits. */
  private observe({ stanza, from, to, origin }: StanzaEvent): void {
    if (!worthArchiving(stanza)) return;
    const owner = to.bare;
    const id = stanza.getChildren('stanza-id', NS_SID).find((s) => s.attrs.by === owner.bareString())?.attrs.id;
    if (id !== undefined) this.consider(owner, 'in', from, id, () => stanza.toString());
    if (origin && from.bareString() !== owner.bareString())
      this.consider(from.bare, 'out', to, sentStanzaId(stanza), () => {
        // The recipient's stanza-id is theirs, not part of the sender's copy.
        const copy = stanza.clone();
        for (const sid of copy.getChildren('stanza-id', NS_SID))
          if (sid.attrs.by === owner.bareString()) copy.remove(sid);
        return copy.toString();
      });
  }

  private consider(owner: Jid, direction: 'in' | 'out', peer: Jid, id: string, serialise: () => string): void {
    const decision = verdict(this.prefs.get(owner.bareString()), peer);
    if (decision === 'skip') return;
    this.writer.push({
      owner,
      id,
      ts: this.clock(),
      peer,
      direction,
      stanza: serialise(),
      ifInRoster: decision === 'roster',
    });
  }

  /** Whether `owner`'s preferences archive anything: their consent to archiving stands. */
  archiving(owner: string): boolean {
    return archives(this.prefs.get(owner));
  }

  /** Gives or withdraws consent to archiving from outside the archive's own protocol (the terms command). */
  async setArchiving(owner: string, enabled: boolean, via: ConsentChannel): Promise<{ purged: number }> {
    const current = this.prefs.get(owner);
    if (archives(current) === enabled) return { purged: 0 };
    const next: Prefs = enabled
      ? { ...current, default: current.default === 'never' ? 'always' : current.default }
      : { ...current, default: 'never', always: [] };
    return this.apply(owner, next, via);
  }

  /**
   * New preferences: stored (with the consent they give or withdraw) before the queue is drained, so
   * nothing decided under the old ones is written after a purge.
   */
  async apply(owner: string, prefs: Prefs, via: ConsentChannel): Promise<{ purged: number }> {
    const { disabled } = await this.prefs.set(owner, prefs, via);
    await this.writer.settled();
    let purged = 0;
    if (disabled && this.config.purgeOnDisable) purged = await this.store.deleteThrough(owner);
    if (prefs.retentionDays !== null)
      purged += await this.store.deleteOlder(this.clock() - prefs.retentionDays * DAY_MS, owner);
    return { purged };
  }

  private async query(e: StanzaEvent, owner: string): Promise<void> {
    const session = e.origin;
    if (!session) throw new StanzaError('not-allowed', 'archive queries come from the owner’s clients');
    const q = parseQuery(e.stanza.getChild('query', NS_MAM) as XmlElement, this.config.maxPageSize);
    await this.writer.settled();
    const page = await runQuery(this.store, owner, q);
    const results = await Promise.all(page.rows.map((row) => this.result(owner, session, q.queryid, row)));
    if (q.flip) results.reverse();
    for (const result of results) session.send(result);
    this.server.router.reply(e.stanza, fin(page));
  }

  /** One result (§4.2): sent to the querying client itself, never routed, so nothing archives or stamps it. */
  private async result(
    owner: string,
    session: ClientSession,
    queryid: string | undefined,
    row: StoredRow,
  ): Promise<XmlElement> {
    const forwarded = x('forwarded', { xmlns: NS_FORWARD }, x('delay', { xmlns: NS_DELAY, stamp: iso(row.ts) }));
    const inner = await this.open(owner, row);
    // §3: a message that cannot be read any more keeps its place (id, time), without content.
    if (inner) forwarded.append(inner);
    return x(
      'message',
      { xmlns: 'jabber:client', from: owner, to: session.jid.toString(), id: randomUUID() },
      x('result', { xmlns: NS_MAM, queryid, id: row.id }, forwarded),
    );
  }

  private async open(owner: string, row: StoredRow): Promise<XmlElement | undefined> {
    try {
      const text = (await this.server.keys.openFor(Jid.parse(owner), row.sealed, PURPOSE)).toString();
      const message = parseFragments(text)[0];
      if (message) message.attrs.xmlns = 'jabber:client';
      return message;
    } catch (err) {
      if (!(err instanceof UnsealError)) throw err;
      this.server.log.warn({ reason: err.reason }, 'an archived message cannot be decrypted');
      return undefined;
    }
  }

  private async metadata(e: StanzaEvent, owner: string): Promise<void> {
    await this.writer.settled();
    const el = x('metadata', { xmlns: NS_MAM });
    const first = await this.store.edge(owner, false);
    const last = await this.store.edge(owner, true);
    if (first && last) {
      el.c('start', { id: first.id, timestamp: iso(first.ts) });
      el.c('end', { id: last.id, timestamp: iso(last.ts) });
    }
    this.server.router.reply(e.stanza, el);
  }

  /** urn:xmpp:mamtrim:0: everything up to and including an id, or the whole archive. */
  private async trim(e: StanzaEvent, owner: string): Promise<void> {
    const id = e.stanza.getChild('trim', NS_MAMTRIM)?.getChildText('id')?.trim();
    await this.writer.settled();
    if (id) {
      const cursor = await this.store.cursor(owner, id);
      if (!cursor) throw new StanzaError('item-not-found', `no message ${id} in the archive`);
      await this.store.deleteThrough(owner, cursor);
    } else {
      await this.store.deleteThrough(owner);
    }
    this.server.router.reply(e.stanza);
  }

  private registerCommands(): void {
    const commands = adhocCommands(this.server);
    const max = this.config.maxAgeDays;
    commands.register({
      node: CONFIGURE_NODE,
      name: 'Archive settings',
      access: 'user',
      stages: [
        {
          form: (ctx) => {
            const prefs = this.prefs.get(ctx.requester.bareString());
            return buildForm(
              'form',
              [
                {
                  var: 'enabled',
                  type: 'boolean',
                  label: 'Keep an archive of my messages on the server',
                  desc: 'Your apps use it to show your history on every device. Turning it off deletes it.',
                  values: [archives(prefs) ? 'true' : 'false'],
                },
                {
                  var: 'retention',
                  type: 'text-single',
                  label: `Days to keep messages (at most ${max})`,
                  values: [String(prefs.retentionDays ?? max)],
                },
              ],
              { title: 'Archive settings' },
            );
          },
          check: (values) =>
            retentionOf(values, max) === undefined ? `retention must be 1 to ${max} days` : undefined,
        },
      ],
      execute: async (ctx) => {
        const owner = ctx.requester.bareString();
        const values = ctx.submitted[0] as FormValues;
        const current = this.prefs.get(owner);
        const enabled = formBoolean(values.get('enabled')?.[0]);
        const days = retentionOf(values, max) as number;
        const next: Prefs = enabled
          ? { ...current, default: current.default === 'never' ? 'always' : current.default }
          : { ...current, default: 'never', always: [] };
        next.retentionDays = days === max ? null : days;
        const { purged } = await this.apply(owner, next, 'ad-hoc');
        const text = enabled
          ? `Archiving is on; messages are kept ${days} days.`
          : 'Archiving is off; nothing new is archived.';
        return { notes: [{ type: 'info', text: purged ? `${text} ${purged} archived messages were deleted.` : text }] };
      },
    });
    commands.register({
      node: DELETE_NODE,
      name: 'Delete my message history',
      access: 'user',
      stages: [
        {
          form: () =>
            buildForm(
              'form',
              [
                {
                  var: 'confirm',
                  type: 'boolean',
                  label: 'Delete every message in my archive on this server',
                  desc: 'Copies your apps or your contacts keep are not affected.',
                  required: true,
                  values: ['false'],
                },
              ],
              { title: 'Delete my message history' },
            ),
        },
      ],
      execute: async (ctx) => {
        if (!formBoolean(ctx.submitted[0]?.get('confirm')?.[0]))
          return { notes: [{ type: 'info', text: 'Nothing was deleted.' }] };
        await this.writer.settled();
        const n = await this.store.deleteThrough(ctx.requester.bareString());
        return { notes: [{ type: 'info', text: `${n} archived messages were deleted.` }] };
      },
    });
  }

  private archiveCategory(): DataCategory {
    const { maxAgeDays, maxPerUser, defaultPolicy, purgeOnDisable } = this.config;
    const store = this.store;
    const open = (owner: string, row: StoredRow) => this.open(owner, row);
    return {
      id: 'archive',
      description:
        'Your message archive, kept only while you have archiving turned on: each message you sent or received, as it was, and when. The message is stored encrypted with your own key (see data-keys); the address of the other party and the time stay readable to the server, to answer your apps’ searches and delete old messages',
      purpose: 'Letting your chat apps show and synchronise your conversation history on all your devices',
      // Opt-in is consent; an operator who archives without asking needs, and names, another basis.
      legalBasis: defaultPolicy === 'never' ? 'consent' : 'legitimate-interest',
      retention: {
        description: `at most ${maxAgeDays} days (fewer if you choose) and ${maxPerUser} messages${purgeOnDisable ? '; deleted when you turn archiving off' : ''}`,
        maxAgeSeconds: maxAgeDays * 86_400,
      },
      content: true,
      encryptedAtRest: true,
      recipients: [],
      tables: ['mam_messages', 'mam_counts'],
      // The archive is its owner's copy (the email model): it names the other party, and stays when they are erased.
      mentions: [{ table: 'mam_messages', column: 'peer', ownerColumn: 'owner' }],
      count: (user) => store.count(user.bareString(), { after: [], before: [] }),
      export: async function* (user) {
        const owner = user.bareString();
        for await (const row of store.all(owner)) {
          const message = await open(owner, row);
          // A message that cannot be decrypted any more is nobody's to read; it is left out (and logged).
          if (message)
            yield {
              id: row.id,
              time: iso(row.ts),
              direction: row.direction === 'in' ? 'received' : 'sent',
              with: row.peer_resource ? `${row.peer}/${row.peer_resource}` : row.peer,
              stanza: message.toString(),
            };
        }
      },
      message: (record) => ({ time: record.time as string, stanza: record.stanza as string }),
      xep0227: archiveXep0227(this.server, async function* (user) {
        const owner = user.bareString();
        for await (const row of store.all(owner)) {
          const message = await open(owner, row);
          if (message) yield { id: row.id, ts: row.ts, message };
        }
      }),
      erase: (user, tx) => store.erase(user.bareString(), tx),
      expire: (now) => this.expire(now),
    };
  }

  private settingsCategory(): DataCategory {
    const prefs = this.prefs;
    return {
      id: 'archive-settings',
      description:
        'Your archiving preferences (whether to archive, the addresses always or never archived, how many days to keep messages) and the record of each time you turned archiving on or off, when and how',
      purpose: 'Archiving only what you chose, and being able to show that you agreed to it',
      legalBasis: 'legal-obligation',
      retention: { description: 'until the account is deleted' },
      recipients: [],
      tables: ['mam_prefs'],
      // Addresses the owner listed are the owner's settings, and stay when those people are erased.
      mentions: [
        { table: 'mam_prefs', column: 'always_jids', ownerColumn: 'owner' },
        { table: 'mam_prefs', column: 'never_jids', ownerColumn: 'owner' },
      ],
      count: (user) => prefs.count(user.bareString()),
      export: async function* (user) {
        const owner = user.bareString();
        if (prefs.has(owner)) {
          const p = prefs.get(owner);
          yield {
            kind: 'preferences',
            default: p.default,
            always: p.always,
            never: p.never,
            retentionDays: p.retentionDays,
          };
        }
      },
      erase: (user, tx) => prefs.erase(user.bareString(), tx),
    };
  }

  /** The retention sweep: age for everyone, shorter ages users chose, then the count cap per archive. */
  async expire(now: Date): Promise<number> {
    const t = now.getTime();
    let removed = await this.store.deleteOlder(t - this.config.maxAgeDays * DAY_MS);
    for (const { owner, days } of this.prefs.shorterRetention()) {
      removed += await this.store.deleteOlder(t - days * DAY_MS, owner);
      await yieldToRouting();
    }
    for (let owner = await this.store.nextOwner(''); owner !== undefined; owner = await this.store.nextOwner(owner)) {
      const beyond = await this.store.beyondCap(owner, this.config.maxPerUser);
      if (beyond) removed += await this.store.deleteThrough(owner, beyond);
      await yieldToRouting();
    }
    return removed;
  }

  private sweep(): void {
    if (this.sweeping) return;
    this.sweeping = this.expire(new Date(this.clock()))
      .then((n) => {
        if (n) this.server.log.info({ removed: n }, 'expired archived messages deleted');
      })
      .catch((err) => this.server.log.error({ err }, 'could not delete expired archived messages'))
      .finally(() => {
        this.sweeping = undefined;
      });
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function retentionOf(values: FormValues, max: number): number | undefined {
  const text = values.get('retention')?.[0]?.trim() ?? String(max);
  const days = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  return days >= 1 && days <= max ? days : undefined;
}

const instances = new WeakMap<Server, MessageArchive>();

/** The server's archive (tests set its clock and wait for its writes). */
export function messageArchive(server: Server): MessageArchive {
  const archive = instances.get(server);
  if (!archive) throw new Error('the mam module is not loaded');
  return archive;
}

export const mamModule: LetheModule = {
  name: 'mam',
  migrations: archiveMigrations,
  async load(server) {
    const archive = new MessageArchive(server);
    await archive.attach();
    instances.set(server, archive);
  },
  async unload(server) {
    await instances.get(server)?.detach();
  },
};
