import { legalBasisText, type PrivacyRegistry } from './registry.js';

/**
 * The data inventory as a Markdown table, straight from the registry: what operators publish and what
 * docs/privacy.md embeds, so that neither can drift from what the server actually stores.
 */
export function renderCategoryTable(registry: PrivacyRegistry): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = registry
    .all()
    .map(
      (c) =>
        `| \`${c.id}\` | ${cell(c.description)} | ${cell(c.purpose)} | ${cell(legalBasisText[c.legalBasis])} | ${cell(
          c.retention.description,
        )} | ${cell(c.recipients.length ? c.recipients.join('; ') : 'nobody else')} |`,
    );
  return [
    '| category | what it holds | purpose | legal basis | kept | who else sees it |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
