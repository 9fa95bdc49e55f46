import { StanzaError } from '../core/errors.js';
import type { LetheModule } from '../core/module.js';
import type { StanzaEvent } from '../core/router.js';
import type { Server } from '../core/server.js';
import { isoDate, key, setLetheAttr, takeLetheAttr } from '../privacy/xep0227/names.js';
import type { XmlElement } from '../xml/element.js';
import { x } from '../xml/element.js';
import { detachedXml, parseFragments } from '../xml/fragment.js';

/**
 * vcard-temp (XEP-0054): a user sets their own vCard and anyone may read it; avatars (XEP-0153)
 * are the PHOTO element inside it, so they round-trip with the rest. A vCard is kept as the XML the
 * client sent, one row per user.
 */

export const NS_VCARD = 'vcard-temp';

interface VcardRow {
  xml: string;
  updated_at: string;
}

async function ownVcard(server: Server, event: StanzaEvent): Promise<boolean> {
  const row = await server.db.get<VcardRow>('SELECT xml FROM vcards WHERE owner = ?', [event.from.bareString()]);
  // §3.1: a user without a vCard may get an empty one back.
  server.router.reply(event.stanza, row ? (parseFragments(row.xml)[0] as XmlElement) : x('vCard', { xmlns: NS_VCARD }));
  return true;
}

/**
 * §3.3: served by the server on the user's behalf. No vCard and no such account give the same
 * `service-unavailable` (the XEP's MUST, against directory harvesting), so the account itself is
 * never looked up. Accounts that are not active (deactivated, or locked pending erasure) show none.
 */
async function othersVcard(server: Server, event: StanzaEvent): Promise<boolean> {
  const row = await server.db.get<VcardRow>(
    `SELECT v.xml FROM vcards v JOIN accounts a ON a.jid = v.owner WHERE v.owner = ? AND a.status = 'active'`,
    [event.to.bareString()],
  );
  if (!row) throw new StanzaError('service-unavailable');
  server.router.reply(event.stanza, parseFragments(row.xml)[0] as XmlElement);
  return true;
}

async function setVcard(server: Server, event: StanzaEvent): Promise<boolean> {
  const vcard = event.stanza.elements()[0] as XmlElement;
  const owner = event.from.bareString();
  // An empty vCard is how clients clear theirs: nothing is kept rather than an empty row.
  if (vcard.children.every((c) => typeof c === 'string' && c.trim() === '')) {
    await server.db.run('DELETE FROM vcards WHERE owner = ?', [owner]);
    server.router.reply(event.stanza);
    return true;
  }
  const xml = detachedXml(vcard);
  const max = server.config.vcard.maxBytes;
  // not-acceptable (RFC 6120 §8.3.3.12, type modify): the request fails a criterion the server sets, and a
  // smaller vCard (usually a smaller photo) would pass. XEP-0054 names no condition; policy-violation is
  // for forbidden content and resource-constraint (type wait) would invite the same request again.
  if (Buffer.byteLength(xml) > max)
    throw new StanzaError('not-acceptable', `the vCard is larger than ${max} bytes; use a smaller photo`);
  await server.db.run(
    `INSERT INTO vcards (owner, xml, updated_at) VALUES (?, ?, ?)
     ON CONFLICT (owner) DO UPDATE SET xml = excluded.xml, updated_at = excluded.updated_at`,
    [owner, xml, new Date().toISOString()],
  );
  server.router.reply(event.stanza);
  return true;
}

/** §3.2: a user sets only their own vCard, with no `to` or their own bare JID as `to`. */
async function notYours(): Promise<boolean> {
  throw new StanzaError('forbidden', 'set your vCard without a to address, or with your own bare JID');
}

/**
 * A vcard-temp payload whose root is not `vCard` is malformed rather than an unknown request. Synchronous
 * for every other iq, since all unhandled iq to the account pass here.
 */
function wrongRoot(event: StanzaEvent): false | Promise<never> {
  const child = event.stanza.elements()[0];
  if (child?.xmlns !== NS_VCARD || child.localName === 'vCard') return false;
  return Promise.reject(
    new StanzaError('bad-request', `a vcard-temp payload must be a <vCard/> element, not <${child.localName}/>`),
  );
}

function registerCategory(server: Server): void {
  const { db } = server;
  server.privacy.register({
    id: 'vcard',
    description:
      'Your vCard: the profile you publish, such as your name, nickname, avatar photo, addresses and anything else you put in it. vCards are public in XMPP: anyone who asks for yours gets it, whether or not they are your contact and whichever server they are on',
    purpose: 'Showing your profile and avatar to the people you talk to',
    legalBasis: 'contract',
    retention: { description: 'until you replace or clear it, or the account is deleted' },
    recipients: ['anyone who asks for it, on this server or others: vCards are public in XMPP'],
    tables: ['vcards'],
    // Someone may name another user in their own vCard (a colleague's address): that copy is theirs.
    mentions: [{ table: 'vcards', column: 'xml', ownerColumn: 'owner' }],
    count: async (user) =>
      (await db.get<{ n: number }>('SELECT count(*) AS n FROM vcards WHERE owner = ?', [user.bareString()]))?.n ?? 0,
    export: async function* (user) {
      const row = await db.get<VcardRow>('SELECT xml, updated_at FROM vcards WHERE owner = ?', [user.bareString()]);
      if (row) yield { vcard: row.xml, updatedAt: row.updated_at };
    },
    erase: async (user, tx) => (await tx.run('DELETE FROM vcards WHERE owner = ?', [user.bareString()])).changes,
    xep0227: {
      elements: [key(NS_VCARD, 'vCard')],
      async *export(user) {
        const row = await db.get<VcardRow>('SELECT xml, updated_at FROM vcards WHERE owner = ?', [user.bareString()]);
        if (!row) return;
        const vcard = parseFragments(row.xml)[0] as XmlElement;
        setLetheAttr(vcard, 'updated', row.updated_at);
        yield vcard;
      },
      async import(user, vcard, { tx }) {
        const updated = takeLetheAttr(vcard, 'updated');
        if (vcard.children.every((c) => typeof c === 'string' && c.trim() === '')) return;
        await tx.run(
          `INSERT INTO vcards (owner, xml, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (owner) DO UPDATE SET xml = excluded.xml, updated_at = excluded.updated_at`,
          [user.bareString(), vcard.toString(), isoDate(updated) ?? new Date().toISOString()],
        );
      },
    },
  });
}

export const vcardModule: LetheModule = {
  name: 'vcard',
  features: [NS_VCARD],
  migrations: [
    {
      component: 'vcard',
      version: 1,
      sql: `CREATE TABLE vcards (
          owner TEXT PRIMARY KEY REFERENCES accounts(jid),
          xml TEXT NOT NULL,
          updated_at TEXT NOT NULL
        )`,
    },
  ],
  load(server) {
    registerCategory(server);
    const { hooks } = server;
    hooks.on('iq-get/self/vcard-temp:vCard', (e: StanzaEvent) => ownVcard(server, e));
    hooks.on('iq-set/self/vcard-temp:vCard', (e: StanzaEvent) => setVcard(server, e));
    hooks.on('iq-get/bare/vcard-temp:vCard', (e: StanzaEvent) => othersVcard(server, e));
    for (const target of ['bare', 'full', 'host']) hooks.on(`iq-set/${target}/vcard-temp:vCard`, notYours);
    hooks.on('iq/self', wrongRoot);
  },
};
