import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import { isoDate, key, setLetheAttr, takeLetheAttr } from '../privacy/xep0227/names.js';
import { type XmlElement, x } from '../xml/element.js';
import { detachedXml, parseFragments } from '../xml/fragment.js';

/**
 * Private XML storage (XEP-0049): clients keep XML for themselves on the server, one entry per
 * namespace, replaced as a whole on every set. Bookmarks (XEP-0048, `storage:bookmarks`) and contact
 * notes (XEP-0145, `storage:rosternotes`) live here for older clients. Only the owner's own resources
 * reach it.
 */

export const NS_PRIVATE = 'jabber:iq:private';

/**
 * The namespaces XEP-0049 §2.3 calls reserved: `jabber:*` (which includes jabber:client and
 * jabber:server, and jabber:iq:private itself, the namespace a child declaring none of its own
 * inherits from <query/>, which §2.3 requires every fragment to have), `http://jabber.org/*`
 * (protocol namespaces whose payloads mean something elsewhere) and `vcard-temp` (the public vCard
 * has its own store; a private copy would only mislead clients about what others see).
 * The XEP makes refusing them optional and names not-acceptable for it.
 */
function checkNamespace(ns: string | undefined): string {
  if (ns === undefined || ns === '')
    throw new StanzaError('not-acceptable', 'every element in private storage needs a namespace of its own');
  if (ns.startsWith('jabber:') || ns.startsWith('http://jabber.org/') || ns === 'vcard-temp')
    throw new StanzaError('not-acceptable', `${ns} is a reserved namespace (XEP-0049) and cannot be stored`);
  return ns;
}

/** Elements without content or attributes say "nothing stored": a set of only those clears the entry. */
function isEmpty(el: XmlElement): boolean {
  return (
    el.children.every((c) => typeof c === 'string' && c.trim() === '') &&
    Object.keys(el.attrs).every((k) => k === 'xmlns' || k.startsWith('xmlns:'))
  );
}

async function getPrivate(server: Server, event: StanzaEvent): Promise<boolean> {
  const requested = (event.stanza.elements()[0] as XmlElement).elements();
  const namespaces = new Set(requested.map((el) => el.xmlns));
  // §2.3: at least one element, and a client MUST NOT ask for more than one namespace at a time.
  if (namespaces.size !== 1)
    throw new StanzaError('not-acceptable', 'a private storage get carries an empty element in exactly one namespace');
  const ns = checkNamespace(requested[0]?.xmlns);
  const row = await server.db.get<{ xml: string }>(
    'SELECT xml FROM private_storage WHERE owner = ? AND namespace = ?',
    [event.from.bareString(), ns],
  );
  const query = x('query', { xmlns: NS_PRIVATE });
  if (row) for (const el of parseFragments(row.xml)) query.append(el);
  else query.append(x((requested[0] as XmlElement).localName, { xmlns: ns }));
  server.router.reply(event.stanza, query);
  return true;
}

async function setPrivate(server: Server, event: StanzaEvent): Promise<boolean> {
  const elements = (event.stanza.elements()[0] as XmlElement).elements();
  if (elements.length === 0)
    throw new StanzaError('not-acceptable', 'a private storage set carries at least one element with its namespace');
  // §2.3: a set may carry several elements of one namespace; they are stored, and returned, together.
  const byNs = new Map<string, XmlElement[]>();
  for (const el of elements) {
    const ns = checkNamespace(el.xmlns);
    byNs.set(ns, [...(byNs.get(ns) ?? []), el]);
  }
  const changes = [...byNs].map(([ns, els]) => ({
    ns,
    xml: els.every(isEmpty) ? undefined : els.map(detachedXml).join(''),
  }));
  const owner = event.from.bareString();
  const { maxEntries, maxBytesPerUser } = server.config.private;
  await server.db.transaction(async (tx) => {
    const stored = new Map(
      (
        await tx.all<{ namespace: string; bytes: number }>(
          'SELECT namespace, bytes FROM private_storage WHERE owner = ?',
          [owner],
        )
      ).map((r) => [r.namespace, r.bytes]),
    );
    const before = { entries: stored.size, bytes: sum(stored.values()) };
    for (const { ns, xml } of changes) {
      if (xml === undefined) stored.delete(ns);
      else stored.set(ns, Buffer.byteLength(xml));
    }
    const after = { entries: stored.size, bytes: sum(stored.values()) };
    // A quota is a criterion the server sets and a smaller request would meet: not-acceptable (type modify),
    // as for XEP-0049's other refusals; resource-constraint (type wait) would invite retrying the same set.
    // A user over a quota lowered since may still shrink their storage.
    if (after.entries > maxEntries && after.entries > before.entries)
      throw new StanzaError('not-acceptable', `private storage holds at most ${maxEntries} namespaces per user`);
    if (after.bytes > maxBytesPerUser && after.bytes > before.bytes)
      throw new StanzaError('not-acceptable', `private storage holds at most ${maxBytesPerUser} bytes per user`);
    const now = new Date().toISOString();
    for (const { ns, xml } of changes) {
      if (xml === undefined) await tx.run('DELETE FROM private_storage WHERE owner = ? AND namespace = ?', [owner, ns]);
      else
        await tx.run(
          `INSERT INTO private_storage (owner, namespace, xml, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (owner, namespace) DO UPDATE SET xml = excluded.xml, bytes = excluded.bytes, updated_at = excluded.updated_at`,
          [owner, ns, xml, Buffer.byteLength(xml), now],
        );
    }
  });
  server.router.reply(event.stanza);
  return true;
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** §2.3 and §4: a user's private storage is reached only by their own resources, addressed to no one or their bare JID. */
async function notYours(): Promise<boolean> {
  throw new StanzaError(
    'forbidden',
    'private storage is only your own: send the request without a to address, or to your own bare JID',
  );
}

function registerCategory(server: Server): void {
  const { db } = server;
  server.privacy.register({
    id: 'private',
    description:
      'Private XML storage: data your chat apps keep on the server for themselves, such as chat-room bookmarks (which can include your nickname and room passwords), notes about your contacts and app settings. Only you can read it',
    purpose: 'Letting your apps keep their settings and bookmarks across devices',
    legalBasis: 'contract',
    retention: { description: 'until your app replaces or clears it, or the account is deleted' },
    recipients: [],
    tables: ['private_storage'],
    // Notes a user keeps about a contact (XEP-0145) name the contact; they are the note-taker's own data.
    mentions: [{ table: 'private_storage', column: 'xml', ownerColumn: 'owner' }],
    count: async (user) =>
      (await db.get<{ n: number }>('SELECT count(*) AS n FROM private_storage WHERE owner = ?', [user.bareString()]))
        ?.n ?? 0,
    export: async function* (user) {
      for await (const row of db.iterate<{ namespace: string; xml: string; updated_at: string }>(
        'SELECT namespace, xml, updated_at FROM private_storage WHERE owner = ? ORDER BY namespace',
        [user.bareString()],
      ))
        yield { namespace: row.namespace, xml: row.xml, updatedAt: row.updated_at };
    },
    erase: async (user, tx) =>
      (await tx.run('DELETE FROM private_storage WHERE owner = ?', [user.bareString()])).changes,
    xep0227: {
      elements: [key(NS_PRIVATE, 'query')],
      async *export(user) {
        const query = x('query', { xmlns: NS_PRIVATE });
        for await (const row of db.iterate<{ xml: string; updated_at: string }>(
          'SELECT xml, updated_at FROM private_storage WHERE owner = ? ORDER BY namespace',
          [user.bareString()],
        )) {
          const fragments = parseFragments(row.xml);
          setLetheAttr(fragments[0] as XmlElement, 'updated', row.updated_at);
          for (const el of fragments) query.append(el);
        }
        if (query.children.length > 0) yield query;
      },
      async import(user, query, { tx, warn }) {
        const byNs = new Map<string, { xml: string; updated: string | undefined }>();
        for (const el of query.elements()) {
          const updated = takeLetheAttr(el, 'updated');
          let ns: string;
          try {
            ns = checkNamespace(el.xmlns);
          } catch (err) {
            warn(`${user}: private storage <${el.localName}/> skipped: ${(err as Error).message}`);
            continue;
          }
          const entry = byNs.get(ns) ?? { xml: '', updated: undefined };
          entry.xml += detachedXml(el);
          entry.updated ??= isoDate(updated);
          byNs.set(ns, entry);
        }
        for (const [ns, { xml, updated }] of byNs)
          await tx.run(
            `INSERT INTO private_storage (owner, namespace, xml, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (owner, namespace) DO UPDATE SET xml = excluded.xml, bytes = excluded.bytes, updated_at = excluded.updated_at`,
            [user.bareString(), ns, xml, Buffer.byteLength(xml), updated ?? new Date().toISOString()],
          );
      },
    },
  });
}

export const privateModule: LetheModule = {
  name: 'private',
  features: [NS_PRIVATE],
  migrations: [
    {
      component: 'private',
      version: 1,
      sql: `CREATE TABLE private_storage (
          owner TEXT NOT NULL REFERENCES accounts(jid),
          namespace TEXT NOT NULL,
          xml TEXT NOT NULL,
          bytes INTEGER NOT NULL,
          updated_at TEXT NOT NULL,
          PRIMARY KEY (owner, namespace)
        )`,
    },
  ],
  load(server) {
    registerCategory(server);
    const { hooks } = server;
    hooks.on('iq-get/self/jabber:iq:private:query', (e: StanzaEvent) => getPrivate(server, e));
    hooks.on('iq-set/self/jabber:iq:private:query', (e: StanzaEvent) => setPrivate(server, e));
    for (const target of ['bare', 'full', 'host'])
      for (const type of ['get', 'set']) hooks.on(`iq-${type}/${target}/jabber:iq:private:query`, notYours);
  },
};
