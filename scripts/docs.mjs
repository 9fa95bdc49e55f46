// Regenerates the generated parts of docs/ from the code (run through `npm run docs`, after a build).
import { readFileSync, writeFileSync } from 'node:fs';
import { buildConfig } from '../dist/src/core/config.js';
import { renderConfigReference } from '../dist/src/core/config-docs.js';
import { createLogger } from '../dist/src/core/log.js';
import { openServer } from '../dist/src/lethe.js';
import { renderCategoryTable } from '../dist/src/privacy/categories-report.js';
import { replaceGeneratedSection } from '../dist/src/privacy/docs-section.js';

writeFileSync('docs/configuration.md', renderConfigReference());

const config = buildConfig({ storage: { path: ':memory:' } }, process.cwd());
const server = await openServer(config, createLogger({ log: { ...config.log, level: 'warn' } }));
const path = 'docs/privacy.md';
writeFileSync(
  path,
  replaceGeneratedSection(readFileSync(path, 'utf8'), 'categories', renderCategoryTable(server.privacy)),
);
await server.close();
