import { randomUUID } from 'node:crypto';
import { errorReply, StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import type { ClientSession } from '../core/session.js';
import type { Db, Migration } from '../storage/db.js';
import { type XmlElement, x } from '../xml/element.js';
import { Jid } from '../xml/jid.js';
import { blocklistXep0227 } from './blocking-pie.js';
import { type RosterStore, rosterStore } from './roster/store.js';
import { announce, hasFrom, hasTo, presence } from './roster/subscription.js';

/**
 * Blocking command (XEP-0191): each user's list of addresses (full, bare, domain/resource or domain)
 * they exchange nothing with, kept across sessions, with pushes to the resources that asked for it.
 *
 * Enforcement (§3.3), in two router hooks:
 * - `pre-route`: what the user's own client sends to a blocked address is not routed. Messages and iq
 *   get/set are answered `not-acceptable` with `<blocked/>`; presence, errors and iq results are dropped.
 * - `pre-dispatch`: every stanza to a local account that blocks its sender, whoever routes it (another
 *   local client, a module, later s2s): presence is dropped, chat and normal messages and iq get/set are
 *   answered `service-unavailable` (the user looks offline or absent), anything else is dropped. Also what
 *   the server sends on a blocker's behalf (presence broadcasts, probes) to a blocked address is dropped.
 *   One router hook rather than `message/bare`, `iq/bare` and friends, because it also covers the specific
 *   iq events (a blocked stranger's vCard or disco request to the user's bare JID) and iq replies, which
 *   never reach `iq/bare`.
 *
 * Memory: `blockers` holds every local user with at least one item, loaded at start; a stanza between
 * users who block nobody costs one Set lookup per direction and touches no storage. The items of
 * blockers with a bound session are kept while they are online; for an offline blocker one indexed
 * query decides, so a blocked sender's message is refused rather than stored for later.
 */

const NS_BLOCKING = 'urn:xmpp:blocking';
const NS_ERRORS = 'urn:xmpp:blocking:errors';
/** session.state key: the session asked for the list, so it gets pushes (§3.3). */
const INTERESTED = 'blocking';
// Errors are never answered (RFC 6120 §8.3.1); headlines and groupchat messages expect no answer: dropped too, as in Prosody.
const SILENT_MESSAGE_TYPES = new Set<string | undefined>(['error', 'headline', 'groupchat']);

const migrations: Migration[] = [
  {
    component: 'blocking',
    version: 1,
    sql: `CREATE TABLE blocklist (
        owner TEXT NOT NULL REFERENCES accounts(jid),
        jid TEXT NOT NULL,
        PRIMARY KEY (owner, jid)
      )`,
  },
];

/** The item forms that match `jid`, in the order of XEP-0191 §6 (and XEP-0016): full, bare, domain/resource, domain. */
function candidates(jid: Jid): string[] {
  const out = [jid.toString()];
  if (jid.local !== '' && jid.resource !== '') out.push(jid.bareString(), `${jid.domain}/${jid.resource}`);
  if (jid.local !== '' || jid.resource !== '') out.push(jid.domain);
  return out;
}

function matches(items: ReadonlySet<string>, jid: Jid): boolean {
  return candidates(jid).some((c) => items.has(c));
}

/** The command's items as canonical JID strings, without repeats. */
function itemsOf(command: XmlElement): string[] {
  const jids = new Set<string>();
  for (const item of command.getChildren('item', NS_BLOCKING)) {
    if (item.attrs.jid === undefined) throw new StanzaError('bad-request', 'every item needs a jid attribute');
    const jid = Jid.tryParse(item.attrs.jid);
    if (!jid) throw new StanzaError('jid-malformed', 'an item’s jid is not a valid JID');
    jids.add(jid.toString());
  }
  return [...jids];
}

class Blocking {
  private readonly blockers = new Set<string>();
  private readonly lists = new Map<string, ReadonlySet<string>>();
  /** Unavailable presence sent when blocking, which must get past the block it announces. */
  private readonly exempt = new WeakSet<XmlElement>();
  private readonly roster: RosterStore;

  constructor(private readonly server: Server) {
    this.roster = rosterStore(server);
  }

  async attach(): Promise<void> {
    const { hooks, db } = this.server;
    for (const { owner } of await db.all<{ owner: string }>('SELECT DISTINCT owner FROM blocklist'))
      this.blockers.add(owner);
    this.registerCategory();
    hooks.on('pre-route', (e: StanzaEvent) => this.outbound(e));
    hooks.on('pre-dispatch', (e: StanzaEvent) => this.filter(e));
    hooks.on(`iq-get/self/${NS_BLOCKING}:blocklist`, (e: StanzaEvent) => this.get(e));
    hooks.on(`iq-set/self/${NS_BLOCKING}:block`, (e: StanzaEvent) => this.block(e));
    hooks.on(`iq-set/self/${NS_BLOCKING}:unblock`, (e: StanzaEvent) => this.unblock(e));
    hooks.on('session/bound', async ({ session }: { session: ClientSession }) => {
      const owner = session.jid.bareString();
      if (!this.blockers.has(owner)) return;
      try {
        await this.load(owner);
      } catch (err) {
        this.server.log.error({ err }, 'could not load a blocklist');
      }
    });
    // Low priority: the unavailable broadcast of the ending session is still filtered from memory.
    hooks.on(
      'session/closed',
      ({ session }: { session: ClientSession }) => {
        const owner = session.jid.bareString();
        if (!this.server.sessions.byResource(owner)) this.lists.delete(owner);
      },
      -100,
    );
    // Before the presence module tells the contacts of a removed account: that reaches blocked ones too.
    hooks.on('account/removing', ({ jid }: { jid: Jid }) => this.forget(jid.bareString()), 10);
  }

  private registerCategory(): void {
    const db = () => this.server.db;
    this.server.privacy.register({
      id: 'blocklist',
      description:
        'The addresses you blocked (people, single devices or whole servers): nothing is exchanged with them in either direction',
      purpose: 'Stopping all messages, presence and requests between you and the addresses you chose',
      legalBasis: 'contract',
      retention: { description: 'until you unblock the address or the account is deleted' },
      recipients: [],
      tables: ['blocklist'],
      count: async (user) =>
        (await db().get<{ n: number }>('SELECT count(*) AS n FROM blocklist WHERE owner = ?', [user.bareString()]))
          ?.n ?? 0,
      export: async function* (user) {
        for await (const row of db().iterate<{ jid: string }>(
          'SELECT jid FROM blocklist WHERE owner = ? ORDER BY jid',
          [user.bareString()],
        ))
          yield { jid: row.jid };
      },
      erase: async (user, tx) => {
        const owner = user.bareString();
        this.forget(owner);
        return (await tx.run('DELETE FROM blocklist WHERE owner = ?', [owner])).changes;
      },
      // An item naming someone is the blocker's own data and stays when that someone is erased (the email model).
      mentions: [{ table: 'blocklist', column: 'jid', ownerColumn: 'owner' }],
      xep0227: blocklistXep0227(
        (user) =>
          db().iterate<{ jid: string }>('SELECT jid FROM blocklist WHERE owner = ? ORDER BY jid', [user.bareString()]),
        async (user, jid, tx) => {
          await tx.run('INSERT INTO blocklist (owner, jid) VALUES (?, ?) ON CONFLICT (owner, jid) DO NOTHING', [
            user.bareString(),
            jid,
          ]);
          // A running server then looks the list up when the user next needs it.
          this.blockers.add(user.bareString());
          this.lists.delete(user.bareString());
        },
      ),
    });
  }

  private forget(owner: string): void {
    this.blockers.delete(owner);
    this.lists.delete(owner);
  }

  /** Keeps memory in step with the table; called inside the transaction that read or changed `owner`'s items. */
  private remember(owner: string, items: ReadonlySet<string>): void {
    if (items.size === 0) return this.forget(owner);
    this.blockers.add(owner);
    if (this.server.sessions.byResource(owner)) this.lists.set(owner, items);
    else this.lists.delete(owner);
  }

  private load(owner: string): Promise<ReadonlySet<string>> {
    const cached = this.lists.get(owner);
    if (cached) return Promise.resolve(cached);
    return this.server.db.transaction(async (tx) => {
      const items = await this.read(tx, owner);
      this.remember(owner, items);
      return items;
    });
  }

  private async read(db: Db, owner: string): Promise<Set<string>> {
    const rows = await db.all<{ jid: string }>('SELECT jid FROM blocklist WHERE owner = ?', [owner]);
    return new Set(rows.map((r) => r.jid));
  }

  /** Whether `owner` blocks `jid`: from memory while the owner is online, else one indexed query. */
  private isBlocked(owner: string, jid: Jid): boolean | Promise<boolean> {
    if (!this.blockers.has(owner)) return false;
    const items = this.lists.get(owner);
    if (items) return matches(items, jid);
    const forms = candidates(jid);
    return this.server.db
      .get(`SELECT 1 AS hit FROM blocklist WHERE owner = ? AND jid IN (${forms.map(() => '?').join(', ')})`, [
        owner,
        ...forms,
      ])
      .then((row) => row !== undefined);
  }

  /** `pre-route`: the user's client sends to an address the user blocked. */
  private outbound(e: StanzaEvent): boolean | Promise<boolean> {
    const owner = e.from.bareString();
    // §5: never between the user's own resources.
    if (!this.blockers.has(owner) || e.to.bareString() === owner) return false;
    const hit = this.isBlocked(owner, e.to);
    return hit instanceof Promise ? hit.then((h) => h && this.bounce(e)) : hit && this.bounce(e);
  }

  private bounce(e: StanzaEvent): true {
    const { stanza } = e;
    const type = stanza.attrs.type;
    if (stanza.name === 'presence' || type === 'error' || (stanza.name === 'iq' && type === 'result')) return true;
    // The XEP's example gives the error type `cancel`: unblocking, not changing the stanza, is the way out.
    const reply = errorReply(stanza, new StanzaError('not-acceptable', 'you have blocked this address', 'cancel'));
    reply.getChild('error')?.c('blocked', { xmlns: NS_ERRORS });
    e.origin?.send(reply);
    return true;
  }

  /** `pre-dispatch`: inbound to a blocker, then what the server relays on a blocker's behalf. */
  private filter(e: StanzaEvent): boolean | Promise<boolean> {
    if (this.blockers.size === 0) return false;
    const recipient = e.to.bareString();
    if (recipient === e.from.bareString()) return false;
    const hit = this.isBlocked(recipient, e.from);
    if (hit === true) return this.refuse(e);
    if (hit instanceof Promise) return hit.then((h) => (h ? this.refuse(e) : this.relayed(e)));
    return this.relayed(e);
  }

  /** §3.3 inbound: presence and what needs no answer is dropped; messages and requests get `service-unavailable`. */
  private refuse(e: StanzaEvent): true {
    const { stanza } = e;
    const type = stanza.attrs.type;
    const answer =
      stanza.name === 'iq'
        ? type === 'get' || type === 'set'
        : stanza.name === 'message' && !SILENT_MESSAGE_TYPES.has(type);
    if (answer) this.server.router.reject(stanza, new StanzaError('service-unavailable'));
    return true;
  }

  /**
   * Server-sent stanzas from a blocker (presence broadcasts, probes) to a blocked address are dropped; a
   * client's own went through `pre-route`. Errors go out: they answer what the blocked address sent.
   */
  private relayed(e: StanzaEvent): boolean | Promise<boolean> {
    const owner = e.from.bareString();
    if (e.origin || !this.blockers.has(owner)) return false;
    if (e.stanza.attrs.type === 'error' || this.exempt.has(e.stanza)) return false;
    return this.isBlocked(owner, e.to);
  }

  private async get(e: StanzaEvent): Promise<boolean> {
    const owner = e.from.bareString();
    e.origin?.state.set(INTERESTED, true);
    const items = this.blockers.has(owner) ? await this.load(owner) : new Set<string>();
    const list = x('blocklist', { xmlns: NS_BLOCKING });
    for (const jid of [...items].sort()) list.c('item', { jid });
    this.server.router.reply(e.stanza, list);
    return true;
  }

  /** Reads the items, applies `change` and updates memory, in one transaction. */
  private change(
    owner: string,
    change: (tx: Db, current: ReadonlySet<string>) => Promise<ReadonlySet<string>>,
  ): Promise<{ before: ReadonlySet<string>; after: ReadonlySet<string> }> {
    return this.server.db.transaction(async (tx) => {
      const before = await this.read(tx, owner);
      const after = await change(tx, before);
      this.remember(owner, after);
      return { before, after };
    });
  }

  private async block(e: StanzaEvent): Promise<boolean> {
    const owner = e.from.bareString();
    const jids = itemsOf(e.stanza.elements()[0] as XmlElement);
    if (jids.length === 0) throw new StanzaError('bad-request', 'a block command names at least one JID');
    const max = this.server.config.blocking.maxItems;
    const { before, after } = await this.change(owner, async (tx, current) => {
      const added = jids.filter((jid) => !current.has(jid));
      if (current.size + added.length > max)
        throw new StanzaError('not-acceptable', `a blocklist holds at most ${max} addresses`);
      for (const jid of added) await tx.run('INSERT INTO blocklist (owner, jid) VALUES (?, ?)', [owner, jid]);
      return new Set([...current, ...added]);
    });
    this.server.router.reply(e.stanza);
    this.push(owner, 'block', jids);
    await this.announceBlock(owner, before, after);
    return true;
  }

  private async unblock(e: StanzaEvent): Promise<boolean> {
    const owner = e.from.bareString();
    // §3.5: an empty unblock unblocks everyone.
    const jids = itemsOf(e.stanza.elements()[0] as XmlElement);
    const { before, after } = await this.change(owner, async (tx, current) => {
      if (jids.length === 0) {
        await tx.run('DELETE FROM blocklist WHERE owner = ?', [owner]);
        return new Set<string>();
      }
      for (const jid of jids) await tx.run('DELETE FROM blocklist WHERE owner = ? AND jid = ?', [owner, jid]);
      return new Set([...current].filter((jid) => !jids.includes(jid)));
    });
    this.server.router.reply(e.stanza);
    this.push(owner, 'unblock', jids);
    await this.announceUnblock(owner, before, after);
    return true;
  }

  /** §3.3 to §3.5: the change, to every resource that asked for the list. */
  private push(owner: string, command: 'block' | 'unblock', jids: string[]): void {
    const resources = this.server.sessions.byResource(owner);
    if (!resources) return;
    for (const session of resources.values()) {
      if (session.state.get(INTERESTED) !== true) continue;
      const payload = x(command, { xmlns: NS_BLOCKING });
      for (const jid of jids) payload.c('item', { jid });
      session.send(
        x('iq', { xmlns: 'jabber:client', type: 'set', id: randomUUID(), to: session.jid.toString() }, payload),
      );
    }
  }

  /**
   * §3.3: whoever may see the user's presence (a subscriber, or someone who got directed presence) and is
   * now blocked gets unavailable from each resource. A blocked requester can no longer be answered, so a
   * pending subscription request from them goes too (as Prosody does).
   */
  private async announceBlock(owner: string, before: ReadonlySet<string>, after: ReadonlySet<string>) {
    const newly = (jid: string) => {
      const parsed = Jid.parse(jid);
      return matches(after, parsed) && !matches(before, parsed);
    };
    const roster = await this.roster.get(owner);
    const sessions = this.server.sessions.available(owner);
    const unavailable = async (from: ClientSession, to: string) => {
      const el = presence({ type: 'unavailable', from: from.jid.toString(), to });
      this.exempt.add(el);
      await this.server.router.route(el);
    };
    for (const item of roster.items.values())
      if (hasFrom(item.subscription) && newly(item.jid)) for (const s of sessions) await unavailable(s, item.jid);
    for (const s of this.server.sessions.resources(owner))
      for (const to of [...s.directedPresence])
        if (newly(to)) {
          s.directedPresence.delete(to);
          await unavailable(s, to);
        }
    for (const contact of [...roster.requests.keys()])
      if (newly(contact))
        await this.roster.transition(owner, contact, (current) => ({ item: current.item, request: undefined }));
  }

  /**
   * §3.4: whoever may see the user's presence and is no longer blocked gets it again; contacts whose
   * presence the user sees are probed, since what they sent meanwhile was dropped.
   */
  private async announceUnblock(owner: string, before: ReadonlySet<string>, after: ReadonlySet<string>) {
    const online = this.server.sessions.available(owner).length > 0;
    for (const item of (await this.roster.get(owner)).items.values()) {
      const jid = Jid.parse(item.jid);
      if (!matches(before, jid) || matches(after, jid)) continue;
      if (hasFrom(item.subscription)) await announce(this.server, owner, item.jid, false);
      if (online && hasTo(item.subscription))
        await this.server.router.route(presence({ type: 'probe', from: owner, to: item.jid }));
    }
  }
}

export const blockingModule: LetheModule = {
  name: 'blocking',
  features: [NS_BLOCKING],
  migrations,
  async load(server) {
    await new Blocking(server).attach();
  },
};
