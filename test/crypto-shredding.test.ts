import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { buildConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { Server } from '../src/core/server.js';
import { offlineModule } from '../src/modules/offline.js';
import {
  type DataKey,
  KeyStore,
  loadServerKey,
  SERVER_KEY_ENV,
  seal,
  UnsealError,
  unsealWith,
} from '../src/privacy/keys.js';
import { migrate } from '../src/storage/migrate.js';
import { SqliteDb } from '../src/storage/sqlite.js';
import { Jid } from '../src/xml/jid.js';
import { DOMAIN, startTestServer, type TestServer } from './support/lethe.js';
import { connect, xml } from './support/xmpp.js';

/**
 * Encryption at rest and crypto-shredding (DESIGN.md §5): offline messages are sealed under a data key
 * per user, kept wrapped in a key store apart from the database; erasure destroys the key first, so a
 * copy of the database taken before the erasure no longer opens for the erased user, and still does
 * for everyone else.
 */

const WAIT = 20_000;
const alice = new Jid('alice', DOMAIN);
const bob = new Jid('bob', DOMAIN);

/** A data directory that is never created: loading a key from the environment or memory must not touch it. */
const UNUSED = join(tmpdir(), `lethe-unused-${randomUUID()}`);

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'lethe-shred-'));
}

function keyConfig(dataDir: string, serverKeyFile: string | null = null, databasePath = join(dataDir, 'lethe.sqlite')) {
  return { dataDir, databasePath, encryption: { serverKeyFile, keyStore: null } };
}

/** The database file as it is on disk, write-ahead log included. */
function rawFile(path: string): Buffer {
  return Buffer.concat([readFileSync(path), existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0)]);
}

async function waitStored(s: TestServer, user: Jid, n: number, category = 'offline'): Promise<void> {
  const store = s.running.server.privacy.get(category);
  for (const deadline = Date.now() + WAIT; (await store?.count(user)) !== n; ) {
    if (Date.now() > deadline) throw new Error(`${user} does not have ${n} items in ${category}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The stores of message bodies: table and sealing purpose. */
const SEALED_STORES = [
  { table: 'offline_messages', purpose: 'offline', order: 'id' },
  { table: 'mam_messages', purpose: 'archive', order: 'seq' },
] as const;

/** Opens every message of one store in a copy of the database with the given key store: the text, or why not. */
async function readCopy(
  path: string,
  store: KeyStore,
  { table, purpose, order }: (typeof SEALED_STORES)[number],
): Promise<Map<string, string[]>> {
  const copy = new Database(path, { readonly: true });
  try {
    const out = new Map<string, string[]>();
    for (const row of copy.prepare(`SELECT owner, sealed FROM ${table} ORDER BY ${order}`).all() as {
      owner: string;
      sealed: Buffer;
    }[]) {
      let text: string;
      try {
        text = (await unsealWith((id) => store.get(id), Jid.parse(row.owner), purpose, row.sealed)).toString();
      } catch (err) {
        if (!(err instanceof UnsealError)) throw err;
        text = `unreadable: ${err.reason}`;
      }
      out.set(row.owner, [...(out.get(row.owner) ?? []), text]);
    }
    return out;
  } finally {
    copy.close();
  }
}

describe('the envelope', () => {
  const dataKey: DataKey = { id: randomBytes(16), key: randomBytes(32) };
  const lookup = async (id: Buffer) => (id.equals(dataKey.id) ? dataKey : undefined);

  test('opens for its owner and purpose', async () => {
    const sealed = seal(dataKey, alice, 'offline', 'tea at five');
    assert.equal(sealed[0], 1, 'version byte');
    assert.ok(sealed.subarray(1, 17).equals(dataKey.id), 'key id');
    assert.ok(!sealed.includes('tea at five'));
    assert.equal((await unsealWith(lookup, alice, 'offline', sealed)).toString(), 'tea at five');
  });

  test('any changed byte, another owner or another purpose fails to open', async () => {
    const sealed = seal(dataKey, alice, 'offline', 'tea at five');
    for (const at of [20, 35, sealed.length - 1]) {
      const tampered = Buffer.from(sealed);
      tampered[at] = (tampered[at] as number) ^ 1;
      await assert.rejects(unsealWith(lookup, alice, 'offline', tampered), { name: 'UnsealError', reason: 'invalid' });
    }
    await assert.rejects(unsealWith(lookup, bob, 'offline', sealed), { reason: 'invalid' });
    await assert.rejects(unsealWith(lookup, alice, 'archive', sealed), { reason: 'invalid' });
    const otherKey = Buffer.from(sealed);
    otherKey[1] = (otherKey[1] as number) ^ 1;
    await assert.rejects(unsealWith(lookup, alice, 'offline', otherKey), { reason: 'destroyed' });
    const version = Buffer.from(sealed);
    version[0] = 2;
    await assert.rejects(unsealWith(lookup, alice, 'offline', version), { reason: 'version', message: /version 2/ });
    await assert.rejects(unsealWith(lookup, alice, 'offline', sealed.subarray(0, 20)), { reason: 'invalid' });
  });
});

describe('the server key', () => {
  const key = randomBytes(32);

  test('comes from LETHE_SERVER_KEY when it is set', () => {
    const loaded = loadServerKey(keyConfig(UNUSED), { [SERVER_KEY_ENV]: key.toString('base64') });
    assert.ok(loaded.key.equals(key));
    assert.equal(loaded.source, SERVER_KEY_ENV);
    assert.equal(loaded.createAt, undefined, 'no file is made');
  });

  test('bad input names the variable or file and the fix', () => {
    for (const bad of ['not base64!', randomBytes(16).toString('base64'), `${key.toString('base64')}AAAA`])
      assert.throws(() => loadServerKey(keyConfig(UNUSED), { [SERVER_KEY_ENV]: bad }), {
        name: 'KeyMaterialError',
        message: /^LETHE_SERVER_KEY: not a base64-encoded 32-byte key; generate one with `openssl rand -base64 32`$/,
      });
    const dir = tempDir();
    const file = join(dir, 'server.key');
    writeFileSync(file, 'hunter2\n', { mode: 0o600 });
    assert.throws(() => loadServerKey(keyConfig(dir), {}), { message: new RegExp(`^${file}: not a base64-encoded`) });
    assert.throws(() => loadServerKey(keyConfig(dir, join(dir, 'elsewhere.key')), {}), {
      message: /^encryption\.serverKeyFile: .*elsewhere\.key does not exist; restore it from your backup/,
    });
    rmSync(dir, { recursive: true });
  });

  test('is made in memory for an in-memory database', () => {
    const loaded = loadServerKey(keyConfig(UNUSED, null, ':memory:'), {});
    assert.equal(loaded.source, 'memory');
    assert.equal(loaded.key.length, 32);
  });

  test('is written to <dataDir>/server.key with mode 0600 on first start, kept after, and checked against the key store', async () => {
    const dir = tempDir();
    const file = join(dir, 'server.key');
    try {
      let s = await startTestServer({}, dir);
      const first = readFileSync(file, 'utf8');
      await s.running.server.keys.keyStore.create();
      await s.stop();
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(Buffer.from(first.trim(), 'base64').length, 32);
      s = await startTestServer({}, dir);
      await s.stop();
      assert.equal(readFileSync(file, 'utf8'), first, 'the same key at the next start');

      // The key store has keys: another key, or none, must stop the start rather than lose every message.
      process.env[SERVER_KEY_ENV] = randomBytes(32).toString('base64');
      try {
        await assert.rejects(startTestServer({}, dir), {
          name: 'KeyMaterialError',
          message: /the server key from LETHE_SERVER_KEY does not unwrap the data keys in .*keys\.sqlite/,
        });
      } finally {
        delete process.env[SERVER_KEY_ENV];
      }
      rmSync(file);
      await assert.rejects(startTestServer({}, dir), {
        message: new RegExp(`${file} is missing, but .*keys\\.sqlite holds data keys.*restore it from your backup`),
      });
      assert.ok(!existsSync(file), 'no new key is written over the loss');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('crypto-shredding', () => {
  test('a copy of the database taken before an erasure no longer opens for the erased user, still does for others', async () => {
    const dir = tempDir();
    try {
      // Everyone archives, so both stores of message bodies (offline messages, the archive) are in the copy.
      const s = await startTestServer({ mam: { defaultPolicy: 'always' } }, dir);
      const backup = join(dir, 'backup-before-erasure.sqlite');
      const forAlice = [`for alice ${randomUUID()}`, `for alice ${randomUUID()}`];
      const forBob = [`for bob ${randomUUID()}`];
      let aliceKeyId: Buffer;
      let bobKeyId: Buffer;
      try {
        for (const name of ['alice', 'bob', 'carol']) await s.addUser(name);
        const carol = await connect(s, 'carol');
        for (const [to, bodies] of [
          [alice, forAlice],
          [bob, forBob],
        ] as const)
          for (const text of bodies)
            await carol.send(xml('message', { to: to.toString(), type: 'chat' }, xml('body', {}, text)));
        await waitStored(s, alice, forAlice.length);
        await waitStored(s, bob, forBob.length);
        await waitStored(s, alice, forAlice.length, 'archive');
        await waitStored(s, bob, forBob.length, 'archive');
        await carol.stop();

        const { server } = s.running;
        (server.db as SqliteDb).exec('PRAGMA wal_checkpoint(TRUNCATE)');
        copyFileSync(s.config.databasePath, backup);
        const raw = rawFile(s.config.databasePath);
        for (const text of [...forAlice, ...forBob])
          assert.ok(!raw.includes(text), `"${text}" is not in the database file in clear`);

        // Before the erasure the copy opens with the server's keys: what follows is the shredding's doing.
        for (const sealedStore of SEALED_STORES) {
          const before = await readCopy(backup, server.keys.keyStore, sealedStore);
          for (const [user, bodies] of [
            [alice, forAlice],
            [bob, forBob],
          ] as const)
            assert.deepEqual(
              before.get(user.toString())?.map((stanza, i) => stanza.includes(`<body>${bodies[i]}</body>`)),
              bodies.map(() => true),
              `${sealedStore.table} of ${user}`,
            );
        }
        const copy = new Database(backup, { readonly: true });
        const keyId = (user: Jid) =>
          (copy.prepare('SELECT key_id FROM data_keys WHERE owner = ?').get(user.toString()) as { key_id: Buffer })
            .key_id;
        aliceKeyId = keyId(alice);
        bobKeyId = keyId(bob);
        copy.close();

        const receipt = await server.privacy.eraseAll(alice, server.db);
        assert.equal(receipt.find((l) => l.category === 'data-keys')?.removed, 1);
        assert.equal(receipt.find((l) => l.category === 'offline')?.removed, forAlice.length);
        assert.equal(receipt.find((l) => l.category === 'archive')?.removed, forAlice.length);
      } finally {
        await s.stop();
      }

      // All the key material the operator has now: the server key and the key store, next to the old copy.
      const serverKey = loadServerKey(s.config, {});
      const keyStorePath = join(dir, 'keys.sqlite');
      const store = await KeyStore.open(serverKey.key, keyStorePath);
      try {
        for (const sealedStore of SEALED_STORES) {
          const after = await readCopy(backup, store, sealedStore);
          assert.deepEqual(
            after.get(alice.toString()),
            ['unreadable: destroyed', 'unreadable: destroyed'],
            sealedStore.table,
          );
          const bobs = after.get(bob.toString()) ?? [];
          assert.equal(bobs.length, 1, sealedStore.table);
          assert.match(
            bobs[0] as string,
            new RegExp(`<body>${forBob[0]}</body>`),
            `bob’s ${sealedStore.table} still opens`,
          );
        }
      } finally {
        await store.close();
      }
      assert.ok(rawFile(keyStorePath).includes(bobKeyId), 'the file check below can see a key id');
      assert.ok(!rawFile(keyStorePath).includes(aliceKeyId), 'alice’s key is overwritten, not just unlinked');
      for (const text of [...forAlice, ...forBob]) assert.ok(!rawFile(backup).includes(text));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('offline messages an older Lethe stored in clear are encrypted at start, and still delivered', async () => {
    const dir = tempDir();
    const text = `kept in clear ${randomUUID()}`;
    try {
      // The schema of an older Lethe: accounts, and offline messages in version 1, with a message in clear.
      const config = buildConfig({ domain: DOMAIN, dataDir: dir, log: { level: 'silent' } }, dir);
      const db = new SqliteDb(config.databasePath);
      const older = new Server(config, db, createLogger(config));
      await migrate(db, [
        ...(older.accounts.module.migrations ?? []).filter((m) => m.version === 1),
        ...(offlineModule.migrations ?? []).filter((m) => m.version === 1),
      ]);
      await db.run('INSERT INTO accounts (jid, created_at, status) VALUES (?, ?, ?)', [
        bob.toString(),
        new Date().toISOString(),
        'active',
      ]);
      await db.run('INSERT INTO offline_messages (owner, stored_at, stanza) VALUES (?, ?, ?)', [
        bob.toString(),
        Date.now(),
        `<message xmlns="jabber:client" to="${bob}" from="carol@${DOMAIN}/x" type="chat"><body>${text}</body></message>`,
      ]);
      await db.close();
      assert.ok(rawFile(config.databasePath).includes(text), 'the older Lethe kept it in clear');

      const s = await startTestServer({}, dir);
      try {
        const { server } = s.running;
        (server.db as SqliteDb).exec('PRAGMA wal_checkpoint(TRUNCATE)');
        assert.ok(!rawFile(config.databasePath).includes(text), 'no longer in clear anywhere in the file');
        await server.accounts.setPassword(bob, 'correct horse battery staple');
        const client = await connect(s, 'bob');
        await client.waitFor((el) => el.is('message') && el.getChildText('body') === text, WAIT, 'the old message');
        await client.stop();
      } finally {
        await s.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
