import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { Server } from '../src/core/server.js';
import { defaultModules } from '../src/modules/index.js';
import { migrate } from '../src/storage/migrate.js';

/**
 * Archive consent recorded before the consent ledger existed (table mam_consent, mam:1) moves into the
 * ledger when the database is upgraded (mam:3): nothing of the proof is lost, in order, given then withdrawn.
 */
test('an older database’s archive consent moves into the consent ledger', async () => {
  const config = buildConfig({ storage: { path: ':memory:' } }, process.cwd());
  const server = Server.create(config, createLogger({ log: { ...config.log, level: 'silent' } }));
  try {
    const all = [server.accounts.module, server.keys.module, server.audit.module, ...defaultModules()].flatMap(
      (m) => m.migrations ?? [],
    );
    const isMam3 = (m: { component: string; version: number }) => m.component === 'mam' && m.version === 3;
    await migrate(
      server.db,
      all.filter((m) => !isMam3(m)),
    );
    const { db } = server;
    await db.run(
      "INSERT INTO accounts (jid, created_at, status) VALUES ('old@localhost', '2025-01-01T00:00:00Z', 'active')",
    );
    await db.run(
      "INSERT INTO mam_consent (owner, given_at, via, withdrawn_at) VALUES ('old@localhost', 1000, 'xep-0441', 5000)",
    );
    await db.run("INSERT INTO mam_consent (owner, given_at, via) VALUES ('old@localhost', 9000, 'ad-hoc')");

    assert.deepEqual(await migrate(db, all), ['mam:3']);
    const rows = await db.all('SELECT account, purpose, action, version, method, at FROM consent_ledger ORDER BY seq');
    assert.deepEqual(rows, [
      { account: 'old@localhost', purpose: 'archive', action: 'given', version: null, method: 'xep-0441', at: 1000 },
      {
        account: 'old@localhost',
        purpose: 'archive',
        action: 'withdrawn',
        version: null,
        method: 'xep-0441',
        at: 5000,
      },
      { account: 'old@localhost', purpose: 'archive', action: 'given', version: null, method: 'ad-hoc', at: 9000 },
    ]);
    assert.equal(await db.get("SELECT name FROM sqlite_master WHERE name = 'mam_consent'"), undefined);
  } finally {
    await server.db.close();
  }
});
