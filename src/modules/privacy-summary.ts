import type { LetheModule } from '../core/module.js';
import { legalBasisText } from '../privacy/registry.js';
import { NS_DATA } from '../xml/dataform.js';
import { x } from '../xml/element.js';
import { adhocCommands } from './adhoc.js';

/**
 * "Show what this server keeps about me": an ad-hoc command (XEP-0050) that answers, for the user who
 * runs it, every registered data category with what it holds, why, on which legal basis, for how long,
 * who else sees it, and how many items the server holds about them now (GDPR art. 15, self-service).
 */

export const PRIVACY_SUMMARY_NODE = 'urn:lethe:privacy:summary';

const COLUMNS = [
  ['category', 'Data'],
  ['description', 'What it holds'],
  ['purpose', 'Why'],
  ['legal-basis', 'Legal basis'],
  ['retention', 'How long it is kept'],
  ['recipients', 'Who else sees it'],
  ['items', 'Items kept about you'],
] as const;

export const privacySummaryModule: LetheModule = {
  name: 'privacy-summary',
  load(server) {
    adhocCommands(server).register({
      node: PRIVACY_SUMMARY_NODE,
      name: 'Show what this server keeps about me',
      access: 'user',
      async execute({ requester }) {
        const counts = await server.privacy.countAll(requester.bare);
        const form = x('x', { xmlns: NS_DATA, type: 'result' });
        form.c('title').t(`What ${requester.domain} keeps about ${requester.bareString()}`);
        const reported = form.c('reported');
        for (const [name, label] of COLUMNS) reported.c('field', { var: name, label });
        for (const { category, count } of counts) {
          const values: Record<(typeof COLUMNS)[number][0], string> = {
            category: category.id,
            description: category.description,
            purpose: category.purpose,
            'legal-basis': legalBasisText[category.legalBasis],
            retention: category.retention.description,
            recipients: category.recipients.length ? category.recipients.join('; ') : 'nobody else',
            items: String(count),
          };
          const item = form.c('item');
          for (const [name] of COLUMNS) item.c('field', { var: name }).c('value').t(values[name]);
        }
        const total = counts.reduce((n, c) => n + c.count, 0);
        const contact = server.config.contactAddresses.privacy;
        const notes = [
          {
            type: 'info' as const,
            text: `${total} item(s) in ${counts.filter((c) => c.count > 0).length} of ${counts.length} categories.`,
          },
        ];
        if (contact.length) notes.push({ type: 'info', text: `Questions about your data: ${contact.join(', ')}` });
        return { notes, form };
      },
    });
  },
};
