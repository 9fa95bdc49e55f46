import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yauzl from 'yauzl';
import { buildConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/log.js';
import type { Server } from '../../src/core/server.js';
import { openServer } from '../../src/lethe.js';
import { type XmlElement, x } from '../../src/xml/element.js';
import { Jid } from '../../src/xml/jid.js';

/** Helpers for the export and import tests: an in-process server without listeners, zip reading, a filled account. */

export interface Lethe {
  server: Server;
  dir: string;
  close(): Promise<void>;
}

export async function openLethe(domains: string[] = ['export.test']): Promise<Lethe> {
  const dir = mkdtempSync(join(tmpdir(), 'lethe-portability-'));
  const config = buildConfig(
    { domain: domains, dataDir: dir, log: { level: 'silent' }, auth: { scramIterations: 4096 } },
    dir,
  );
  const server = await openServer(config, createLogger(config));
  return {
    server,
    dir,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every entry of a zip archive, in archive order. */
export function readZip(path: string): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    const out = new Map<string, Buffer>();
    yauzl.open(path, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      zip.on('error', reject);
      zip.on('end', () => resolve(out));
      zip.on('entry', (entry: yauzl.Entry) =>
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', reject);
          stream.on('end', () => {
            out.set(entry.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
        }),
      );
      zip.readEntry();
    });
  });
}

/** A message from another server to `to`, as the router hands it to offline storage when nobody is online. */
export function offlineMessage(to: Jid, body: string, n: number): XmlElement {
  return x(
    'message',
    { xmlns: 'jabber:client', from: `carol@elsewhere.example/phone`, to: to.toString(), type: 'chat', id: `m${n}` },
    x('body', {}, body),
  );
}

/**
 * Puts something in every store of `user` that has one: roster items (with a pending request and a
 * pre-approval), a subscription request, a vCard, private storage in two namespaces, blocked addresses,
 * last activity and offline messages, through the stores' own tables or the router.
 */
export async function fillAccount(server: Server, user: Jid, password = 'secret pass'): Promise<void> {
  if (!(await server.accounts.get(user))) await server.accounts.create(user, password);
  const owner = user.bareString();
  const { db } = server;
  const run = (sql: string, params: (string | number)[]) => db.run(sql, params);
  await run(
    'INSERT INTO roster_items (owner, contact, name, subscription, ask, approved, groups) VALUES (?, ?, ?, ?, ?, ?, ?)',
    [owner, 'bob@elsewhere.example', 'Bob & "friends"', 'both', 0, 0, JSON.stringify(['Friends', 'Work'])],
  );
  await run(
    'INSERT INTO roster_items (owner, contact, name, subscription, ask, approved, groups) VALUES (?, ?, ?, ?, ?, ?, ?)',
    [owner, 'dave@elsewhere.example', 'Dave', 'none', 1, 1, '[]'],
  );
  await run('INSERT INTO roster_versions (owner, version) VALUES (?, ?)', [owner, 7]);
  await run('INSERT INTO roster_requests (owner, contact, status, nick) VALUES (?, ?, ?, ?)', [
    owner,
    'erin@elsewhere.example',
    'please add me <3',
    'Erin',
  ]);
  await run('INSERT INTO vcards (owner, xml, updated_at) VALUES (?, ?, ?)', [
    owner,
    '<vCard xmlns="vcard-temp"><FN>Alice Ünïcode</FN><NICKNAME>al</NICKNAME><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard>',
    '2026-01-02T03:04:05.678Z',
  ]);
  for (const [ns, xml] of [
    [
      'storage:bookmarks',
      '<storage xmlns="storage:bookmarks"><conference jid="room@muc.example" name="Room"/></storage>',
    ],
    [
      'urn:example:prefs',
      '<prefs xmlns="urn:example:prefs" xmlns:p="urn:example:p"><p:a>1</p:a></prefs><prefs xmlns="urn:example:prefs"/>',
    ],
  ])
    await run('INSERT INTO private_storage (owner, namespace, xml, bytes, updated_at) VALUES (?, ?, ?, ?, ?)', [
      owner,
      ns as string,
      xml as string,
      Buffer.byteLength(xml as string),
      '2026-02-03T04:05:06.789Z',
    ]);
  for (const jid of ['spam.example', 'troll@elsewhere.example'])
    await run('INSERT INTO blocklist (owner, jid) VALUES (?, ?)', [owner, jid]);
  await run('INSERT INTO last_activity (owner, logout_at, status) VALUES (?, ?, ?)', [
    owner,
    '2026-03-04T05:06:07.890Z',
    'gone fishing',
  ]);
  const offline = server.privacy.get('offline');
  const before = (await offline?.count(user)) ?? 0;
  const bodies = ['hello, world', '=cmd|" /c calc"!A1', 'line one\nline "two"'];
  for (const [i, body] of bodies.entries()) await server.router.route(offlineMessage(user, body, i));
  for (const deadline = Date.now() + 10_000; (await offline?.count(user)) !== before + bodies.length; ) {
    if (Date.now() > deadline) throw new Error('offline messages were not stored');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const ALICE = (domain = 'export.test') => new Jid('alice', domain);
