import type { Server } from '../core/server.js';
import type { Jid } from '../xml/jid.js';
import { type DataCategory, legalBasisText } from './registry.js';

/** The files of an export archive besides the JSON ones. */
export const ARCHIVE_FILES = { xml: 'xep0227.xml', csv: 'messages.csv', summary: 'summary.md' } as const;

/**
 * The human-readable part of an export: what GDPR art. 15(1) says the data subject is to be told
 * (purposes, categories, recipients, retention, rights, source), with how many items of each
 * category this copy holds.
 */
export function renderSummary(input: {
  server: Server;
  user: Jid;
  exportedAt: Date;
  reason: string | undefined;
  counts: { category: DataCategory; count: number }[];
}): string {
  const { server, user, exportedAt, reason, counts } = input;
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const contacts = [...server.config.contactAddresses.privacy, ...server.config.contactAddresses.admin];
  const lines = [
    `# Your data on ${user.domain}`,
    '',
    `A copy of everything this server keeps about the account **${user.bareString()}**, as of ${exportedAt.toISOString()}.`,
    reason === undefined
      ? 'You asked for this copy yourself.'
      : `The server’s operator made this copy. Reason given: ${reason}`,
    '',
    '## What is kept, why, and for how long',
    '',
    '| data | what it holds | items in this copy | purpose | legal basis (GDPR art. 6) | kept | who else sees it |',
    '|---|---|---|---|---|---|---|',
    ...counts.map(
      ({ category: c, count }) =>
        `| \`${c.id}\` | ${cell(c.description)} | ${count} | ${cell(c.purpose)} | ${cell(legalBasisText[c.legalBasis])} | ${cell(
          c.retention.description,
        )} | ${cell(c.recipients.length ? c.recipients.join('; ') : 'nobody else')} |`,
    ),
    '',
    'Where it comes from: from you and your apps, and, for messages and subscription requests, from the people who contact you. No decision about you is made automatically from it (GDPR art. 22).',
    '',
    '## The files in this archive',
    '',
    `- \`${ARCHIVE_FILES.xml}\`: your account in XEP-0227, the format XMPP servers (Lethe, Prosody, ejabberd) import, to take it to another server. It includes your password’s SCRAM keys (not the password): keep the file safe.`,
    '- `json/<data>.json`: each kind of data in the table above, as JSON.',
    `- \`${ARCHIVE_FILES.csv}\`: the stored messages, one per row, for a spreadsheet.`,
    '',
    '## Your rights',
    '',
    'You may ask for a copy of your data (GDPR art. 15) and take it elsewhere (art. 20), have it corrected (art. 16) or erased (art. 17), restrict (art. 18) or object to (art. 21) its processing, withdraw any consent you gave (art. 7(3)), and complain to a data-protection supervisory authority (art. 77).',
    contacts.length ? `Contact: ${contacts.join(', ')}` : `Contact: the operator of ${user.domain}.`,
    '',
  ];
  return lines.join('\n');
}
