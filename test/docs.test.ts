import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { openServer } from '../src/lethe.js';
import { renderCategoryTable } from '../src/privacy/categories-report.js';
import { replaceGeneratedSection } from '../src/privacy/docs-section.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('docs/privacy.md lists exactly the registered data categories (run `npm run docs` after changing one)', async () => {
  const config = buildConfig({ storage: { path: ':memory:' } }, root);
  const server = await openServer(config, createLogger({ log: { ...config.log, level: 'silent' } }));
  try {
    const doc = readFileSync(resolve(root, 'docs/privacy.md'), 'utf8');
    assert.equal(doc, replaceGeneratedSection(doc, 'categories', renderCategoryTable(server.privacy)));
  } finally {
    await server.close();
  }
});

test('every data category states its purpose, legal basis, retention and tables', async () => {
  const config = buildConfig({ storage: { path: ':memory:' } }, root);
  const server = await openServer(config, createLogger({ log: { ...config.log, level: 'silent' } }));
  try {
    for (const c of server.privacy.all()) {
      assert.ok(c.description.length > 20, `${c.id}: description`);
      assert.ok(c.purpose.length > 10, `${c.id}: purpose`);
      assert.ok(c.retention.description, `${c.id}: retention`);
      assert.ok(c.tables.length > 0 || c.elsewhere, `${c.id}: tables, or where else it keeps its data`);
    }
  } finally {
    await server.close();
  }
});
