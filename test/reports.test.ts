import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { openServer } from '../src/lethe.js';
import type { Dpia, Ropa } from '../src/privacy/reports.js';
import { runCli, writeConfig } from './support/cli.js';

/** `lethe report ropa|dpia`: the record of processing and the DPIA starting point, from registry and configuration. */

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function report(extra: Record<string, unknown>, args: string[]): { stdout: string } {
  const { path, dir } = writeConfig(extra);
  dirs.push(dir);
  const r = runCli(['--config', path, 'report', ...args]);
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout };
}

async function registeredCategories(): Promise<string[]> {
  const config = buildConfig({ storage: { path: ':memory:' } }, '/tmp');
  const server = await openServer(config, createLogger({ log: { ...config.log, level: 'silent' } }));
  try {
    return server.privacy.all().map((c) => c.id);
  } finally {
    await server.close();
  }
}

test('ropa as JSON: every registered category with the configured retention, and the measures in place', async () => {
  const ropa = JSON.parse(report({}, ['ropa', '--format', 'json']).stdout) as Ropa;
  assert.equal(ropa.report, 'record-of-processing');
  assert.deepEqual(
    ropa.categories.map((c) => c.id),
    await registeredCategories(),
  );
  for (const c of ropa.categories) {
    assert.ok(c.purpose && c.legalBasis.text && c.retention.description && c.dataSubjects.length, c.id);
  }
  const offline = ropa.categories.find((c) => c.id === 'offline');
  assert.equal(offline?.retention.maxAgeSeconds, 30 * 86_400);
  assert.match(offline?.retention.description ?? '', /at most 30 days/);
  assert.ok(
    offline?.dataSubjects.some((s) => /without an account here/.test(s)),
    'senders are data subjects too',
  );
  assert.deepEqual(ropa.service.domains, ['cli.test']);
  assert.equal(ropa.transfers.federation, false);
  const measure = (name: RegExp) => ropa.securityMeasures.find((m) => name.test(m.measure));
  assert.equal(measure(/STARTTLS/)?.inPlace, true);
  assert.equal(measure(/overwritten/)?.inPlace, true, 'SQLite secure_delete, read from the database');
  assert.equal(measure(/IP addresses/)?.inPlace, true);
  assert.match(measure(/Passwords never stored/)?.details ?? '', /4096 PBKDF2 iterations/);
  assert.equal(measure(/Encryption at rest/)?.inPlace, true, 'offline messages and the archive are sealed');
  assert.ok(ropa.dataSubjectRights.some((r) => r.includes('lethe user erase')));
  assert.ok(ropa.dataSubjectRights.some((r) => r.includes('urn:lethe:privacy:summary')));
  assert.ok(ropa.toComplete.some((t) => /controller/.test(t)));
  assert.ok(ropa.toComplete.some((t) => /contactAddresses\.privacy/.test(t)));
});

test('ropa follows the configuration', () => {
  const ropa = JSON.parse(
    report(
      {
        offline: { retentionDays: 7 },
        c2s: { host: '127.0.0.1', port: 0, directTlsPort: null, requireEncryption: false },
        log: { level: 'warn', ip: 'full' },
        auth: { scramIterations: 20_000, mechanisms: ['SCRAM-SHA-256'] },
        contactAddresses: { privacy: ['mailto:dpo@cli.test'] },
        register: { allowRemove: false },
      },
      ['ropa', '--format', 'json'],
    ).stdout,
  ) as Ropa;
  const offline = ropa.categories.find((c) => c.id === 'offline');
  assert.equal(offline?.retention.maxAgeSeconds, 7 * 86_400);
  assert.match(offline?.retention.description ?? '', /at most 7 days/);
  const measure = (name: RegExp) => ropa.securityMeasures.find((m) => name.test(m.measure));
  assert.equal(measure(/STARTTLS/)?.inPlace, false);
  assert.equal(measure(/Direct TLS/)?.inPlace, false);
  assert.equal(measure(/IP addresses/)?.inPlace, false);
  assert.equal(measure(/SCRAM only/)?.inPlace, true);
  assert.match(measure(/Passwords never stored/)?.details ?? '', /20000 PBKDF2 iterations/);
  assert.deepEqual(ropa.controller.privacyContacts, ['mailto:dpo@cli.test']);
  assert.ok(!ropa.toComplete.some((t) => /contactAddresses\.privacy/.test(t)));
  assert.ok(ropa.dataSubjectRights.some((r) => /in-band account removal is off/.test(r)));
});

test('ropa as Markdown, to a file', async () => {
  const { path, dir } = writeConfig();
  dirs.push(dir);
  const out = join(dir, 'ropa.md');
  const r = runCli(['--config', path, 'report', 'ropa', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `wrote ${out}\n`);
  const md = readFileSync(out, 'utf8');
  assert.match(md, /^# Record of processing activities \(GDPR art\. 30\(1\)\)/);
  assert.match(md, /## TO BE COMPLETED BY THE OPERATOR/);
  for (const id of await registeredCategories()) assert.match(md, new RegExp(`\\| \`${id}\` \\|`), id);
  assert.match(md, /at most 30 days/);
});

test('dpia: operations, risks and measures per category, and what the operator must complete', async () => {
  const dpia = JSON.parse(report({ offline: { retentionDays: 3 } }, ['dpia', '--format', 'json']).stdout) as Dpia;
  assert.equal(dpia.report, 'dpia-starting-point');
  const ids = await registeredCategories();
  assert.deepEqual(
    dpia.processingOperations.map((p) => p.category),
    ids,
  );
  for (const id of ids)
    assert.ok(
      dpia.risks.some((r) => r.category === id && r.measuresInPlace.length > 0),
      id,
    );
  const offline = dpia.processingOperations.find((p) => p.category === 'offline');
  assert.ok(offline?.operations.includes('deleted automatically after 3 day(s)'));
  assert.ok(dpia.risks.some((r) => r.category === 'offline' && /special categories/.test(r.risk)));
  assert.ok(dpia.toComplete.length >= 4);
  const md = report({}, ['dpia']).stdout;
  assert.match(md, /## 3\. Risks to the rights and freedoms/);
  assert.match(md, /\*to assess\*/);
  assert.match(md, /## TO BE COMPLETED BY THE OPERATOR/);
});

test('an unknown format is refused', () => {
  const { path, dir } = writeConfig();
  dirs.push(dir);
  const r = runCli(['--config', path, 'report', 'ropa', '--format', 'pdf']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /md, json/);
});
