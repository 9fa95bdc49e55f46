import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildConfig, ConfigError } from '../src/core/config.js';
import { renderConfigReference } from '../src/core/config-docs.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function problems(raw: unknown): string[] {
  try {
    buildConfig(raw, '/srv');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('defaults: localhost, 5222 with STARTTLS required, 5223 direct TLS, 256 KiB stanzas, no IPs in logs', () => {
  const c = buildConfig({}, '/srv');
  assert.deepEqual(c.domains, ['localhost']);
  assert.equal(c.c2s.port, 5222);
  assert.equal(c.c2s.directTlsPort, 5223);
  assert.equal(c.c2s.requireEncryption, true);
  assert.equal(c.limits.maxStanzaBytes, 262_144);
  assert.equal(c.log.ip, 'none');
  assert.equal(c.dataDir, '/srv/data');
  assert.equal(c.databasePath, '/srv/data/lethe.sqlite');
});

test('domains are normalised and may be a list', () => {
  assert.deepEqual(buildConfig({ domain: ['Example.ORG', 'chat.example.org'] }, '/').domains, [
    'example.org',
    'chat.example.org',
  ]);
  assert.match(problems({ domain: ['a.test', 'A.test'] }).join(), /same domain twice/);
  assert.match(problems({ domain: 'user@host' }).join(), /domain: must be a bare domain/);
});

test('every problem names its key and a fix', () => {
  const p = problems({ c2s: { port: 70000, bogus: 1 }, tls: { cert: '/x.pem' }, auth: { mechanisms: ['MD5'] } });
  assert.ok(
    p.some((m) => /^c2s\.port: .*change the value/.test(m)),
    p.join('\n'),
  );
  assert.ok(
    p.some((m) => /^c2s\.bogus: unknown key/.test(m)),
    p.join('\n'),
  );
  assert.ok(
    p.some((m) => /^auth\.mechanisms\.0: .*use one of/.test(m)),
    p.join('\n'),
  );
  assert.match(problems({ tls: { cert: '/x.pem' } }).join(), /tls\.cert and tls\.key: set both/);
  assert.match(problems({ c2s: { port: 5222, directTlsPort: 5222 } }).join(), /c2s\.directTlsPort: must differ/);
  assert.match(problems({ limits: { maxStanzaBytes: 10 } }).join(), /limits\.maxStanzaBytes/);
  assert.match(problems('just a string').join(), /expected object/);
});

test('docs/configuration.md is what the schema generates (run `npm run docs` after changing it)', () => {
  assert.equal(readFileSync(resolve(root, 'docs/configuration.md'), 'utf8'), renderConfigReference());
});
