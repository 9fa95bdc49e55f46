import { diffArrays, diffWords } from 'diff';
import { Marked, type Token, type Tokens } from 'marked';
import { escapeHtml } from '../../core/html-page.js';
import type { Server } from '../../core/server.js';
import { adhocCommands } from '../../modules/adhoc.js';
import { CONFIGURE_NODE } from '../../modules/mam/index.js';
import { SELF_ERASE_NODE } from '../../modules/self-erase.js';
import { SELF_EXPORT_NODE } from '../../modules/self-export.js';
import { privacyCapabilities } from '../capabilities.js';
import { legalBasisText } from '../registry.js';
import { POLICY_DOCUMENTS, type PolicyDocumentId, type PolicyVersion, policyTitles } from './policies.js';

/**
 * The policy documents as text and HTML: placeholders filled from the running configuration and the
 * privacy registry (so the privacy policy cannot contradict the server), Markdown rendered for the web
 * pages, and what changed between two versions for users asked to accept a new one.
 */

/** Makes generated text literal in Markdown: inline markup characters escaped, on one line (table cells). */
function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_[\]<>|~&]/g, '\\$&').replace(/\s*\n\s*/g, ' ');
}

// ---- Markdown to HTML

/** Links only to web, mail and XMPP addresses, or relative ones: no `javascript:` or `data:` URLs. */
function safeUrl(href: string): boolean {
  // Browsers skip control characters and spaces when reading a scheme (`java\tscript:`).
  const bare = href.replace(/[\u0000-\u0020]/g, '');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(bare)?.[1];
  // Marked keeps character references in the attribute, which the browser decodes: `&#106;avascript:`.
  if (scheme === undefined) return !bare.includes('&');
  return ['http', 'https', 'mailto', 'xmpp'].includes(scheme.toLowerCase());
}

const markdown = new Marked({
  gfm: true,
  async: false,
  renderer: {
    // The operator's raw HTML is shown as text, comments left out: nothing can add script, styles or forms.
    html: ({ text }) => escapeHtml(text.replace(/<!--[\s\S]*?(?:-->|$)/g, '')),
    link(token) {
      return safeUrl(token.href) ? false : this.parser.parseInline(token.tokens);
    },
    // The pages' CSP blocks every image (default-src 'none'): a link to it is the useful remainder.
    image: ({ href, text }) =>
      safeUrl(href) ? `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>` : escapeHtml(text),
  },
});

const isTitle = (t: Token | undefined): t is Tokens.Heading => t?.type === 'heading' && t.depth === 1;

/** HTML of the operator's Markdown (GFM). `withoutTitle` leaves out a leading `# heading`, for a page that shows it already. */
export function renderMarkdown(source: string, options: { withoutTitle?: boolean } = {}): string {
  const tokens = markdown.lexer(source);
  const first = tokens.findIndex((t) => t.type !== 'space');
  if (options.withoutTitle && isTitle(tokens[first])) tokens.splice(first, 1);
  return markdown.parser(tokens);
}

function plainText(tokens: Token[]): string {
  return tokens
    .map((t) => {
      const { tokens: inner, text } = t as { tokens?: Token[]; text?: string };
      return inner ? plainText(inner) : (text ?? '');
    })
    .join('');
}

/** The text of the document's first `# heading`, without markup; undefined when it has none. */
export function markdownTitle(source: string): string | undefined {
  const heading = markdown.lexer(source).find(isTitle);
  return heading ? plainText(heading.tokens).trim() || undefined : undefined;
}

// ---- Placeholders

function contactLinks(uris: string[]): string {
  if (!uris.length) return 'none given';
  return uris
    .map((uri) => {
      const colon = uri.indexOf(':');
      const scheme = uri.slice(0, colon).toLowerCase();
      const rest = uri.slice(colon + 1);
      const shown = scheme === 'https' ? uri : decodeURIComponent(rest.split('?')[0] as string);
      return `[${escapeMarkdown(shown)}](<${uri.replace(/[<>\s]/g, encodeURIComponent)}>)`;
    })
    .join(', ');
}

function categoriesTable(server: Server): string {
  const rows = server.privacy
    .all()
    .map(
      (c) =>
        `| \`${c.id}\` | ${escapeMarkdown(c.description)} | ${escapeMarkdown(c.purpose)} | ${escapeMarkdown(
          legalBasisText[c.legalBasis],
        )} | ${escapeMarkdown(c.retention.description)} | ${escapeMarkdown(
          c.recipients.length ? c.recipients.join('; ') : 'nobody else',
        )} |`,
    );
  return [
    '| data | what it is | why it is kept | legal basis | how long | who else sees it |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** `the command “Name”` when that ad-hoc command is offered in this configuration. */
function command(server: Server, node: string): string | undefined {
  const name = adhocCommands(server).get(node)?.name;
  return name && `the command “${escapeMarkdown(name)}”`;
}

const days = (n: number) => `${n} day${n === 1 ? '' : 's'}`;

function howToExport(server: Server): string {
  const cmd = command(server, SELF_EXPORT_NODE);
  const contents =
    'It holds everything in the table above: your account in the XEP-0227 format that other XMPP servers import, the same data as JSON, your stored messages as CSV, and a readable summary of what is kept and why.';
  return cmd
    ? `Run ${cmd} from your chat app (its list of server commands, XMPP ad-hoc commands): it answers with a short-lived link, for you only, to download a ZIP file. ${contents} You can also ask the operator.`
    : `Ask the operator at a contact address above; they export your data with the server’s tools and send it to you. ${contents}`;
}

function howToErase(server: Server): string {
  const { graceDays } = server.config.erasure;
  const cmd = command(server, SELF_ERASE_NODE);
  const how = privacyCapabilities(server).selfServiceErasure
    ? `Use ${cmd ? `${cmd} or ` : ''}the “delete account” function of your chat app (XEP-0077); you are asked for your password again.`
    : 'Ask the operator at a contact address above.';
  const when =
    graceDays > 0
      ? `The account is locked at once and erased ${days(graceDays)} later; until then you can change your mind${
          server.config.http.enabled ? ' on the web page you are given, or' : ''
        } by asking the operator.`
      : 'The account is erased at once; this cannot be undone.';
  const kept = server.privacy
    .all()
    .filter((c) => c.keeps)
    .map((c) => `- ${escapeMarkdown(`${c.keeps?.what}. Why: ${c.keeps?.why}. How long: ${c.retention.description}.`)}`);
  return kept.length
    ? `${how} ${when} Everything in the table above is then deleted, except these records, kept on purpose:\n\n${kept.join('\n')}`
    : `${how} ${when} Everything in the table above is then deleted.`;
}

function archive(server: Server): string {
  const { defaultPolicy, maxAgeDays, purgeOnDisable } = server.config.mam;
  const cmd = command(server, CONFIGURE_NODE);
  const where = `in your chat app’s archiving settings (XEP-0441)${cmd ? ` or with ${cmd}` : ''}`;
  const off = purgeOnDisable
    ? 'which deletes your archive at once'
    : `after which what was archived expires within ${days(maxAgeDays)}`;
  return defaultPolicy === 'never'
    ? `Your messages are not archived on the server unless you turn archiving on, ${where}. Turning it on is your consent (GDPR art. 6(1)(a)); the server records when and how you gave it. You can withdraw it at any time by turning archiving off, ${off}. Archived messages are kept at most ${days(maxAgeDays)}, fewer if you choose.`
    : `Your messages are archived on the server without asking, for at most ${days(maxAgeDays)}, so that all your devices show the same history; the legal basis is the operator’s legitimate interest (GDPR art. 6(1)(f)) in offering that. You can object and turn archiving off at any time, ${where}, ${off}.`;
}

function federation(server: Server): string {
  return privacyCapabilities(server).federation
    ? 'When you talk to people whose accounts are on other XMPP servers, what you send them (messages, presence, your profile) goes to those servers. They are run by others, possibly outside the EU/EEA, under their own privacy policies; you choose whom you talk to.'
    : 'This server does not exchange messages with other XMPP servers: what you send stays on it and reaches only people with an account here. Where the table says “possibly on other servers”, that applies only once the operator connects the server to others, which will change this policy.';
}

function encryption(server: Server): string {
  return privacyCapabilities(server).encryptionAtRest
    ? 'Messages the server stores for you (your archive, messages waiting while you are offline) are encrypted with a key of your own. When your account is erased that key is destroyed first, so those messages can no longer be read, not even in old backups.'
    : 'Messages the server stores for you are not encrypted by the server itself.';
}

function ipAddresses(server: Server): string {
  const logged = {
    none: 'and the server does not log it',
    truncated:
      'and the server’s logs record it only shortened (an IPv4 address to its first three bytes, IPv6 to its first 48 bits)',
    full: 'but the server’s logs record it in full',
  }[server.config.log.ip];
  return `Your IP address is never written to the database, ${logged}.`;
}

function backups(server: Server): string {
  const { backupFrequencyHours: every, backupRetentionHours: kept } = server.config.dataPolicy;
  if (every === null) return 'This policy does not say how the server is backed up; ask the operator.';
  if (every === 0) return 'No backups of user data are made: what is deleted is gone.';
  const howLong = kept === null ? 'for a time not stated here' : kept === 'infinite' ? 'indefinitely' : `${kept} hours`;
  return `User data is backed up at least every ${every} hours, and backups are kept ${howLong}. Deleted data stays in backups until they are deleted in turn.`;
}

/**
 * Every `{{name}}` a policy document may use, with its value under the running configuration and the
 * privacy registry, as Markdown. Nothing here depends on a listening server, so the command line fills
 * a template exactly as the running server does when it checks for drift.
 */
export function policyValues(server: Server): Map<string, string> {
  const { config } = server;
  const values = new Map<string, string>();
  const primary = config.domains[0] as string;
  values.set('domain', escapeMarkdown(primary));
  values.set('domains', config.domains.map(escapeMarkdown).join(', '));
  values.set('name', escapeMarkdown(config.disco.name ?? primary));
  for (const [kind, uris] of Object.entries(config.contactAddresses)) values.set(`contact.${kind}`, contactLinks(uris));
  const numbers: Record<string, number> = {
    'erasure.graceDays': config.erasure.graceDays,
    'consent.graceDays': config.consent.graceDays,
    'consent.keepProofDays': config.consent.keepProofDays,
    'consent.linkValidDays': config.consent.linkValidDays,
    'offline.retentionDays': config.offline.retentionDays,
    'mam.maxAgeDays': config.mam.maxAgeDays,
    'audit.retentionDays': config.audit.retentionDays,
  };
  for (const [name, n] of Object.entries(numbers)) values.set(name, String(n));
  values.set('categories', categoriesTable(server));
  for (const c of server.privacy.all()) {
    values.set(`retention.${c.id}`, escapeMarkdown(c.retention.description));
    values.set(`legalBasis.${c.id}`, escapeMarkdown(legalBasisText[c.legalBasis]));
  }
  values.set('archive', archive(server));
  values.set('encryption', encryption(server));
  values.set('ipAddresses', ipAddresses(server));
  values.set('federation', federation(server));
  values.set('backups', backups(server));
  values.set('howToExport', howToExport(server));
  values.set('howToErase', howToErase(server));
  return values;
}

const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;

/** Replaces every `{{name}}`; throws on a name it does not know, naming it and the known ones. */
export function fillTemplate(server: Server, template: string): string {
  const values = policyValues(server);
  const unknown = [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => (m[1] as string).trim()))].filter(
    (name) => !values.has(name),
  );
  if (unknown.length)
    throw new Error(
      `unknown placeholder${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `{{${n}}}`).join(', ')}; the known ones are ${[
        ...values.keys(),
      ].join(', ')}`,
    );
  return template.replace(PLACEHOLDER, (_, name: string) => values.get(name.trim()) as string);
}

// ---- Changes between versions

type BlockChange =
  | { kind: 'same'; count: number }
  | { kind: 'changed'; older: string; newer: string }
  | { kind: 'added' | 'removed'; text: string };

const blocks = (source: string) =>
  source
    .replace(/\r\n?/g, '\n')
    .split(/\n\s*\n/)
    .map((b) => b.trim())
    .filter(Boolean);

/** Paragraph by paragraph: a removed paragraph followed by an added one is one changed paragraph. */
function blockChanges(older: string, newer: string): BlockChange[] {
  const out: BlockChange[] = [];
  const changes = diffArrays(blocks(older), blocks(newer));
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    if (!c.added && !c.removed) {
      out.push({ kind: 'same', count: c.count });
      continue;
    }
    let removed: string[] = [];
    let added = c.value;
    if (c.removed) {
      removed = c.value;
      added = changes[i + 1]?.added ? changes[++i]!.value : [];
    }
    for (let k = 0; k < Math.max(removed.length, added.length); k++) {
      const [was, is] = [removed[k], added[k]];
      if (was !== undefined && is !== undefined) out.push({ kind: 'changed', older: was, newer: is });
      else if (was !== undefined) out.push({ kind: 'removed', text: was });
      else out.push({ kind: 'added', text: is as string });
    }
  }
  return out;
}

const markdownOf = (policy: PolicyVersion, id: PolicyDocumentId) => policy.documents.find((d) => d.id === id)?.markdown;

const titleOf = (id: PolicyDocumentId, ...policies: PolicyVersion[]) =>
  policies.flatMap((p) => p.documents.filter((d) => d.id === id).map((d) => d.title))[0] ?? policyTitles[id];

const html = (text: string) => escapeHtml(text).replace(/\n/g, '<br>');

function changeHtml(change: BlockChange): string {
  switch (change.kind) {
    case 'same':
      return `<p>(${change.count} unchanged paragraph${change.count === 1 ? '' : 's'})</p>`;
    case 'added':
      return `<p><ins>${html(change.text)}</ins></p>`;
    case 'removed':
      return `<p><del>${html(change.text)}</del></p>`;
    case 'changed':
      return `<p>${diffWords(change.older, change.newer)
        .map((part) =>
          part.added
            ? `<ins>${html(part.value)}</ins>`
            : part.removed
              ? `<del>${html(part.value)}</del>`
              : html(part.value),
        )
        .join('')}</p>`;
  }
}

/**
 * What changed for a user who accepted `older`: per document, a `<section>` with an `<h2>` title and the
 * changed paragraphs of the published Markdown, words inserted in `<ins>` and removed in `<del>`, or
 * "Unchanged.". All text is escaped.
 */
export function policyChangesHtml(older: PolicyVersion, newer: PolicyVersion): string {
  return POLICY_DOCUMENTS.flatMap((id) => {
    const [was, is] = [markdownOf(older, id), markdownOf(newer, id)];
    if (was === undefined && is === undefined) return [];
    const heading = `<h2>${escapeHtml(titleOf(id, newer, older))}</h2>`;
    if (was === is) return [`<section>${heading}<p>Unchanged.</p></section>`];
    const note =
      was === undefined ? '<p>New in this version.</p>' : is === undefined ? '<p>Removed in this version.</p>' : '';
    return [
      `<section>${heading}${note}${blockChanges(was ?? '', is ?? '')
        .map(changeHtml)
        .join('\n')}</section>`,
    ];
  }).join('\n');
}

/** The same in one line of plain text, e.g. "Terms of Service: unchanged. Privacy Policy: 2 paragraphs changed, 1 added." */
export function policyChangesText(older: PolicyVersion, newer: PolicyVersion): string {
  const count = (n: number, what: string) => (n ? [`${n} paragraph${n === 1 ? '' : 's'} ${what}`] : []);
  return POLICY_DOCUMENTS.flatMap((id) => {
    const [was, is] = [markdownOf(older, id), markdownOf(newer, id)];
    if (was === undefined && is === undefined) return [];
    const title = titleOf(id, newer, older);
    if (was === is) return [`${title}: unchanged.`];
    if (was === undefined) return [`${title}: new.`];
    if (is === undefined) return [`${title}: removed.`];
    const changes = blockChanges(was, is);
    const n = (kind: BlockChange['kind']) => changes.filter((c) => c.kind === kind).length;
    const parts = [...count(n('changed'), 'changed'), ...count(n('added'), 'added'), ...count(n('removed'), 'removed')];
    // Only blank lines differ: the text reads the same.
    return [`${title}: ${parts.length ? parts.join(', ') : 'layout changed'}.`];
  }).join(' ');
}
