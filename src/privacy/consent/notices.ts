import { randomUUID } from 'node:crypto';
import type { Server } from '../../core/server.js';
import type { Db } from '../../storage/db.js';
import { type XmlElement, x } from '../../xml/element.js';
import { Jid } from '../../xml/jid.js';
import type { PolicyVersion } from './policies.js';
import { consent } from './service.js';

/**
 * Server notices: messages from the notice sender (`notices.sender`@domain) to users. Two kinds:
 * the terms notice, sent once per version to each user who has not accepted it (when it is published
 * to those online, otherwise at their next login), and the operator's notices (`lethe notice send`),
 * queued in the database so that the command line reaches a running server, which delivers them.
 */

export const NOTICES_MIGRATION = {
  component: 'notices',
  version: 1,
  sql: `
    CREATE TABLE consent_notices (
      account TEXT NOT NULL REFERENCES accounts(jid),
      version TEXT NOT NULL,
      sent_at INTEGER NOT NULL,
      PRIMARY KEY (account, version)
    );
    CREATE TABLE notice_outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      recipient TEXT NOT NULL,
      online_only INTEGER NOT NULL DEFAULT 0,
      subject TEXT,
      body TEXT NOT NULL,
      queued_at INTEGER NOT NULL
    );
    CREATE INDEX notice_outbox_recipient ON notice_outbox (recipient)`,
};

const NS_TOS = 'urn:xmpp:tos:0';
/** `notice_outbox.recipient` for a notice to every active account. */
export const EVERYONE = '*';

export function noticeSender(server: Server, domain: string): Jid {
  return new Jid(server.config.notices.sender, domain);
}

export function isNoticeSender(server: Server, jid: Jid): boolean {
  return jid.local === server.config.notices.sender && !jid.resource && server.hosts.has(jid.domain);
}

function message(server: Server, to: Jid, subject: string | null, body: string): XmlElement {
  const el = x('message', {
    // The namespace is explicit: kept offline and exported (XEP-0227), the message stands on its own.
    xmlns: 'jabber:client',
    from: noticeSender(server, to.domain).toString(),
    to: to.bareString(),
    type: 'normal',
    id: randomUUID(),
  });
  if (subject) el.c('subject').t(subject);
  el.c('body').t(body);
  return el;
}

/** urn:xmpp:tos:0's `<tos/>`: the version and where its documents are. */
export function tosElement(server: Server, policy: PolicyVersion): XmlElement {
  const service = consent(server);
  const tos = x('tos', { xmlns: NS_TOS, version: policy.version });
  for (const doc of policy.documents) {
    const d = tos.c('document');
    d.c('title').t(doc.title);
    const url = service.documentUrl(policy.version, doc.id);
    if (url) {
      d.c('source', { url, type: 'text/html' });
      d.c('source', { url: `${url}.md`, type: 'text/markdown' });
    }
  }
  return tos;
}

function formatDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/**
 * Sends `user` the notice about the current version unless they accepted it or were told already.
 * The record that they were told is written first, so two sessions logging in at once send one.
 */
export async function sendTermsNotice(server: Server, user: Jid): Promise<boolean> {
  const service = consent(server);
  const policy = service.current;
  if (!policy || !(await service.mustAccept(user))) return false;
  const claimed = await server.db.run(
    'INSERT INTO consent_notices (account, version, sent_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    [user.bareString(), policy.version, service.clock()],
  );
  if (claimed.changes === 0) return false;
  const deadline = await service.deadline(user);
  const link = await service.linkFor(user);
  const earlier = await service.ledger.lastAccepted(user);
  const lines = [
    earlier
      ? `The terms of service and privacy policy of ${user.domain} have changed (version ${policy.version}, published ${formatDate(policy.publishedAt)} UTC; you accepted version ${earlier.version}).`
      : `${user.domain} asks you to read and accept its terms of service and privacy policy (version ${policy.version}).`,
    ...(policy.changes ? [`What changed: ${policy.changes}`] : []),
    link
      ? `Read them and accept them here (this link works once, for you only): ${link}`
      : 'Read and accept them with your client’s terms command (urn:xmpp:tos:0).',
    deadline
      ? `Until ${formatDate(deadline.getTime())} UTC everything works as before; after that you can only write to others once you have accepted them.`
      : '',
  ].filter(Boolean);
  const el = message(server, user, 'New terms of service', lines.join('\n\n'));
  const push = el.c('tos-push', { xmlns: NS_TOS });
  push.append(tosElement(server, policy));
  if (deadline) push.c('deadline').t(deadline.toISOString());
  await server.router.route(el);
  return true;
}

/** Sends the terms notice to every online user who needs it (a version was just published). */
export async function noticeOnlineUsers(server: Server): Promise<number> {
  const accounts = new Set<string>();
  for (const session of server.sessions.all()) accounts.add(session.jid.bareString());
  let sent = 0;
  for (const account of accounts) if (await sendTermsNotice(server, Jid.parse(account))) sent++;
  return sent;
}

/** Queues an operator's notice; a running server delivers it within `consent.checkInterval`. */
export async function queueNotice(
  db: Db,
  notice: { to: Jid | typeof EVERYONE; subject?: string; body: string; onlineOnly?: boolean },
  now = Date.now(),
): Promise<void> {
  await db.run('INSERT INTO notice_outbox (recipient, online_only, subject, body, queued_at) VALUES (?, ?, ?, ?, ?)', [
    notice.to === EVERYONE ? EVERYONE : notice.to.bareString(),
    notice.onlineOnly ? 1 : 0,
    notice.subject ?? null,
    notice.body,
    now,
  ]);
}

/**
 * Delivers queued notices: to online sessions, and through offline storage to those who are not
 * (unless the notice is for online users only). Each is deleted once handed to the router.
 */
export async function deliverQueuedNotices(server: Server): Promise<number> {
  const rows = await server.db.all<{
    seq: number;
    recipient: string;
    online_only: number;
    subject: string | null;
    body: string;
  }>('SELECT seq, recipient, online_only, subject, body FROM notice_outbox ORDER BY seq LIMIT 100');
  let delivered = 0;
  for (const row of rows) {
    await server.db.run('DELETE FROM notice_outbox WHERE seq = ?', [row.seq]);
    const recipients: string[] = [];
    if (row.recipient !== EVERYONE) recipients.push(row.recipient);
    else if (row.online_only) for (const s of server.sessions.all()) recipients.push(s.jid.bareString());
    else
      for await (const account of server.accounts.list()) if (account.status === 'active') recipients.push(account.jid);
    for (const recipient of new Set(recipients)) {
      const to = Jid.tryParse(recipient);
      if (!to || !(await server.accounts.exists(to))) continue;
      if (row.online_only && !server.sessions.resources(to.bareString()).length) continue;
      await server.router.route(message(server, to, row.subject, row.body));
      delivered++;
    }
  }
  return delivered;
}
