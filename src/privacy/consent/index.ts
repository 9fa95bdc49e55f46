import { StanzaError } from '../../core/errors.js';
import type { LetheModule } from '../../core/module.js';
import { perServer } from '../../core/per-server.js';
import { Periodic } from '../../core/periodic.js';
import type { StanzaEvent } from '../../core/router.js';
import type { Server } from '../../core/server.js';
import type { ClientSession } from '../../core/session.js';
import { x } from '../../xml/element.js';
import type { Jid } from '../../xml/jid.js';
import { consentMethodText, LEDGER_MIGRATION } from './ledger.js';
import { LINKS_MIGRATION } from './links.js';
import {
  deliverQueuedNotices,
  isNoticeSender,
  NOTICES_MIGRATION,
  noticeOnlineUsers,
  noticeSender,
  sendTermsNotice,
} from './notices.js';
import { POLICIES_MIGRATION, type PolicyVersion } from './policies.js';
import { consent } from './service.js';

/**
 * Consent (DESIGN.md, privacy model 3): the ledger and its data categories, the terms notices, the
 * operator's queued notices, and the gate. What a user who has not accepted the current version after
 * the grace period may still do: log in, read, and talk to the server and its notice sender; messages
 * and subscription requests to anyone else are refused with `policy-violation`, whose text says where
 * to accept. Accepting lifts it at once (the service updates the standing the gate reads).
 */

const NS_TOS = 'urn:xmpp:tos:0';
const HOUR_MS = 3_600_000;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function registerCategories(server: Server): void {
  const service = consent(server);
  const { config, privacy } = server;
  const keepDays = config.consent.keepProofDays;
  privacy.declareNonPersonal('policy_versions', 'published terms and privacy policies: the operator’s documents');
  privacy.declareNonPersonal('policy_documents', 'published terms and privacy policies: the operator’s documents');
  privacy.register({
    id: 'consent',
    description:
      'Consent history: which version of the terms and privacy policy you accepted, and when you turned opt-in processing such as the message archive on or off, with the time and the way it was given',
    purpose: 'to prove that consent was given (GDPR art. 7(1)) and to know which terms apply to you',
    legalBasis: 'legal-obligation',
    retention: {
      description:
        keepDays === 0
          ? 'until the account is deleted'
          : `while the account exists; after its deletion ${keepDays} days more, with the address replaced by a keyed hash`,
    },
    recipients: [],
    tables: ['consent_ledger'],
    ...(keepDays > 0 && {
      keeps: {
        what: 'consent entries with the address replaced by its keyed hash',
        why: `proof that consent was given (GDPR art. 7(1)), kept ${keepDays} days (consent.keepProofDays)`,
      },
    }),
    count: (user) => service.ledger.count(user),
    export: async function* (user) {
      for (const e of await service.ledger.history(user))
        yield {
          purpose: e.purpose,
          action: e.action === 'given' ? (e.purpose === 'terms' ? 'accepted' : 'given') : 'withdrawn',
          ...(e.version !== null && { version: e.version }),
          at: iso(e.at),
          how: consentMethodText[e.method] ?? e.method,
        };
    },
    erase: (user, tx) => service.ledger.erase(user, tx, service.clock()),
    expire: (now) => service.ledger.expire(now.getTime()),
  });
  privacy.register({
    id: 'terms-notices',
    description:
      'Server notices to you: which versions of the terms you were told about, unused single-use links to accept them, and operator notices waiting for delivery',
    purpose: 'to tell you about new terms once, and let you accept them with one click',
    legalBasis: 'contract',
    retention: {
      description: `links until used or ${config.consent.linkValidDays} days; notices until delivered; the record of being told until the account is deleted`,
    },
    recipients: [],
    tables: ['consent_notices', 'consent_links', 'notice_outbox'],
    count: async (user) => {
      const row = await server.db.get<{ n: number }>(
        `SELECT (SELECT count(*) FROM consent_notices WHERE account = ?)
              + (SELECT count(*) FROM notice_outbox WHERE recipient = ?) AS n`,
        [user.bareString(), user.bareString()],
      );
      return (row?.n ?? 0) + (await service.links.count(user));
    },
    export: async function* (user) {
      const told = await server.db.all<{ version: string; sent_at: number }>(
        'SELECT version, sent_at FROM consent_notices WHERE account = ? ORDER BY sent_at',
        [user.bareString()],
      );
      for (const t of told) yield { kind: 'terms-notice', version: t.version, sentAt: iso(t.sent_at) };
      const queued = await server.db.all<{ subject: string | null; body: string; queued_at: number }>(
        'SELECT subject, body, queued_at FROM notice_outbox WHERE recipient = ? ORDER BY seq',
        [user.bareString()],
      );
      for (const q of queued)
        yield { kind: 'queued-notice', subject: q.subject, body: q.body, queuedAt: iso(q.queued_at) };
    },
    erase: async (user, tx) => {
      const account = user.bareString();
      const notices = (await tx.run('DELETE FROM consent_notices WHERE account = ?', [account])).changes;
      const queued = (await tx.run('DELETE FROM notice_outbox WHERE recipient = ?', [account])).changes;
      return notices + queued + (await service.links.erase(user, tx));
    },
    expire: (now) => service.links.expire(now.getTime()),
  });
}

/** The refusal a held-back user gets, with where to accept. */
function gateError(server: Server, user: Jid): StanzaError {
  const service = consent(server);
  const version = service.current?.version ?? '';
  const where = service.pageUrl();
  return new StanzaError(
    'policy-violation',
    `You have not accepted the current terms of service and privacy policy (version ${version}) of ${user.domain}, so you cannot write to others. ${
      where ? `Read and accept them at ${where}` : 'Accept them with your client’s terms command (urn:xmpp:tos:0)'
    }; it takes effect at once.`,
    'cancel',
  ).withApplicationCondition(x('agreement-required', { xmlns: NS_TOS }));
}

/** What a held-back user may not do: write to, or ask for or grant presence subscriptions with, others. */
function gatedStanza(server: Server, e: StanzaEvent): boolean {
  const { stanza, to, from } = e;
  const type = stanza.attrs.type;
  if (stanza.name === 'message') {
    if (type === 'error') return false;
  } else if (stanza.name !== 'presence' || (type !== 'subscribe' && type !== 'subscribed')) return false;
  if (!to.local || to.bareString() === from.bareString()) return false;
  return !isNoticeSender(server, to);
}

/** One look at the database: a version published elsewhere, queued notices, and (hourly) expiry. */
async function poll(server: Server, state: { lastExpiry: number }): Promise<void> {
  const service = consent(server);
  await service.refresh();
  await deliverQueuedNotices(server);
  const now = service.clock();
  if (now - state.lastExpiry >= HOUR_MS) {
    state.lastExpiry = now;
    for (const id of ['consent', 'terms-notices']) await server.privacy.get(id)?.expire?.(new Date(now));
  }
}

export const consentModule: LetheModule = {
  name: 'consent',
  migrations: [LEDGER_MIGRATION, POLICIES_MIGRATION, LINKS_MIGRATION, NOTICES_MIGRATION],
  async load(server) {
    const service = consent(server);
    const { hooks } = server;
    registerCategories(server);
    await service.refresh();

    hooks.on('account/creating', ({ jid }: { jid: Jid }) => {
      if (isNoticeSender(server, jid))
        throw new StanzaError(
          'conflict',
          `${jid} is the server's notice sender (notices.sender) and cannot be registered`,
        );
    });

    hooks.on('pre-route', (e: StanzaEvent): boolean | Promise<boolean> => {
      if (!service.current || !gatedStanza(server, e)) return false;
      const gated = service.gated(e.from);
      const refuse = (held: boolean): boolean => {
        if (held) throw gateError(server, e.from);
        return false;
      };
      return gated instanceof Promise ? gated.then(refuse) : refuse(gated);
    });

    hooks.on('consent/published', async ({ version }: { version: PolicyVersion }) => {
      const sent = await noticeOnlineUsers(server);
      server.log.info({ version: version.version, notified: sent }, 'new terms published');
    });
    hooks.on('session/bound', ({ session }: { session: ClientSession }) => {
      if (!service.current) return;
      sendTermsNotice(server, session.jid.bare).catch((err) => server.log.error({ err }, 'terms notice failed'));
    });
    hooks.on('session/closed', ({ session }: { session: ClientSession }) => {
      if (!server.sessions.resources(session.jid.bareString()).length) service.forget(session.jid);
    });

    // The notice sender is no account: it answers chat with where to read and accept the terms.
    hooks.on(
      'message/bare',
      (e: StanzaEvent) => {
        if (!isNoticeSender(server, e.to)) return false;
        const type = e.stanza.attrs.type ?? 'normal';
        if (e.origin && (type === 'chat' || type === 'normal') && e.stanza.getChild('body')) {
          const current = service.current;
          const page = service.pageUrl();
          const body = current
            ? `This address only sends notices from ${e.to.domain}. The current terms are version ${current.version}${
                page ? `: read and accept them at ${page}` : ''
              }. Questions go to the operator (see the server's contact addresses).`
            : `This address only sends notices from ${e.to.domain}; nobody reads what is sent to it.`;
          void server.router.route(
            x(
              'message',
              { from: noticeSender(server, e.to.domain).toString(), to: e.from.toString(), type },
              x('body', {}, body),
            ),
          );
        }
        return true;
      },
      10,
    );
    // Presence to it (a client adding it to the roster) is dropped rather than bounced.
    hooks.on('presence/bare', (e: StanzaEvent) => isNoticeSender(server, e.to), 10);

    hooks.on('server/started', () => {
      if (!service.current)
        server.log.warn(
          'no terms of service or privacy policy are published: registration asks no consent; see docs/consent.md (lethe policy init, lethe policy publish)',
        );
      poller(server).start(server.config.consent.checkInterval * 1000);
    });
  },
  async unload(server) {
    await poller(server).stop();
  },
};

const poller = perServer((server) => {
  const state = { lastExpiry: 0 };
  return new Periodic(server.log, 'consent check', () => poll(server, state));
});

/** One check now, as a started server makes every `consent.checkInterval` seconds (without the hourly expiry). */
export async function checkConsentNow(server: Server): Promise<void> {
  await poll(server, { lastExpiry: Number.POSITIVE_INFINITY });
}
