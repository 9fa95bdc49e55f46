import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SaxesParser } from 'saxes';
import yauzl from 'yauzl';
import { verifyPassword } from '../src/auth/scram.js';
import { exportUser } from '../src/privacy/export.js';
import { importPie } from '../src/privacy/import.js';
import { Jid } from '../src/xml/jid.js';
import { runCli, writeConfig } from './support/cli.js';
import { fillAccount, type Lethe, openLethe, readZip } from './support/portability.js';

/** `lethe user export`: the archive's contents, the round trip through `lethe import`, and memory on a large store. */

const NS_PIE = 'urn:xmpp:pie:0';
const PASSWORD = 'secret pass';

interface Node {
  key: string;
  attrs: Record<string, string>;
  children: Node[];
  text: string;
}

/** The document as a plain tree with resolved namespaces (`{ns}local`), for structural checks. */
function parseXml(text: string): Node {
  const sax = new SaxesParser({ xmlns: true });
  const stack: Node[] = [];
  let root: Node | undefined;
  sax.on('opentag', (tag) => {
    const node: Node = {
      key: `{${tag.uri}}${tag.local}`,
      attrs: Object.fromEntries(Object.values(tag.attributes).map((a) => [a.name, a.value])),
      children: [],
      text: '',
    };
    stack.at(-1)?.children.push(node);
    root ??= node;
    stack.push(node);
  });
  sax.on('text', (t) => {
    const top = stack.at(-1);
    if (top) top.text += t;
  });
  sax.on('closetag', () => stack.pop());
  sax.on('doctype', () => assert.fail('an export must not have a DTD'));
  sax.write(text).close();
  return root as Node;
}

const only = (node: Node, key: string): Node => {
  const found = node.children.filter((c) => c.key === key);
  assert.equal(found.length, 1, `exactly one ${key} in ${node.key}`);
  return found[0] as Node;
};

let a: Lethe;
let dir: string;
const alice = new Jid('alice', 'export.test');

before(async () => {
  a = await openLethe(['export.test']);
  dir = mkdtempSync(join(tmpdir(), 'lethe-export-out-'));
  await fillAccount(a.server, alice, PASSWORD);
  // Someone else's data must stay out of alice's archive.
  await fillAccount(a.server, new Jid('bob', 'export.test'));
});

after(async () => {
  await a.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What each category holds for the user now: an export tells the user (a notice kept offline), so counts move after it. */
async function countsOf(lethe: Lethe, user: Jid): Promise<Map<string, number>> {
  return new Map(
    (await lethe.server.privacy.countAll(user)).map(({ category, count }) => [category.id, count] as [string, number]),
  );
}

describe('the archive', () => {
  let files: Map<string, Buffer>;
  let counts: Map<string, number>;

  before(async () => {
    counts = await countsOf(a, alice);
    const out = join(dir, 'alice.zip');
    await exportUser(a.server, alice, { out, reason: 'access request 42', actor: 'tester' });
    files = await readZip(out);
  });

  test('holds the XEP-0227 document, one JSON file per data category, the messages as CSV and a summary', () => {
    const expected = [
      'xep0227.xml',
      ...a.server.privacy.all().map((c) => `json/${c.id}.json`),
      'messages.csv',
      'summary.md',
    ];
    assert.deepEqual([...files.keys()].sort(), expected.sort());
  });

  test('the XEP-0227 document is structurally valid and holds every store it has a place for', () => {
    const xml = (files.get('xep0227.xml') as Buffer).toString();
    assert.ok(xml.startsWith("<?xml version='1.0' encoding='UTF-8'?>"));
    assert.doesNotMatch(xml, /bob@export\.test/);
    const root = parseXml(xml);
    assert.equal(root.key, `{${NS_PIE}}server-data`);
    const host = only(root, `{${NS_PIE}}host`);
    assert.equal(host.attrs.jid, 'export.test');
    const user = only(host, `{${NS_PIE}}user`);
    assert.equal(user.attrs.name, 'alice');
    assert.equal(user.attrs.password, undefined, 'never a plaintext password');

    const scram = user.children.filter((c) => c.key === '{urn:xmpp:pie:0#scram}scram-credentials');
    assert.deepEqual(scram.map((c) => c.attrs.mechanism).sort(), ['SCRAM-SHA-1', 'SCRAM-SHA-256']);
    for (const c of scram) {
      assert.match(only(c, '{urn:xmpp:pie:0#scram}iter-count').text, /^[1-9][0-9]*$/);
      for (const name of ['salt', 'server-key', 'stored-key'])
        assert.match(only(c, `{urn:xmpp:pie:0#scram}${name}`).text, /^[A-Za-z0-9+/]+=*$/);
    }

    const roster = only(user, '{jabber:iq:roster}query');
    assert.deepEqual(
      roster.children.map((i) => [i.attrs.jid, i.attrs.subscription, i.attrs.ask, i.attrs.approved]),
      [
        ['bob@elsewhere.example', 'both', undefined, undefined],
        ['dave@elsewhere.example', 'none', 'subscribe', 'true'],
      ],
    );
    assert.deepEqual(
      (roster.children[0] as Node).children.map((g) => g.text),
      ['Friends', 'Work'],
    );
    const request = only(user, '{jabber:client}presence');
    assert.equal(request.attrs.type, 'subscribe');
    assert.equal(request.attrs.from, 'erin@elsewhere.example');
    assert.equal(only(request, '{http://jabber.org/protocol/nick}nick').text, 'Erin');

    const offline = only(user, `{${NS_PIE}}offline-messages`);
    assert.equal(offline.children.length, counts.get('offline'));
    for (const m of offline.children) {
      assert.equal(m.key, '{jabber:client}message');
      assert.equal(only(m, '{urn:xmpp:delay}delay').attrs.from, 'export.test', 'XEP-0203 delay of offline storage');
    }

    const blocked = only(user, '{jabber:iq:privacy}query');
    const list = only(blocked, '{jabber:iq:privacy}list');
    assert.equal(only(blocked, '{jabber:iq:privacy}default').attrs.name, list.attrs.name);
    assert.deepEqual(list.children.map((i) => [i.attrs.type, i.attrs.value, i.attrs.action]).sort(), [
      ['jid', 'spam.example', 'deny'],
      ['jid', 'troll@elsewhere.example', 'deny'],
    ]);
    assert.equal(only(only(user, '{vcard-temp}vCard'), '{vcard-temp}FN').text, 'Alice Ünïcode');
    const priv = only(user, '{jabber:iq:private}query');
    assert.deepEqual(
      priv.children.map((c) => c.key),
      ['{storage:bookmarks}storage', '{urn:example:prefs}prefs', '{urn:example:prefs}prefs'],
    );
  });

  test('each JSON file holds its category’s export, with as many items as the category counts', () => {
    for (const category of a.server.privacy.all()) {
      const json = JSON.parse((files.get(`json/${category.id}.json`) as Buffer).toString()) as {
        category: string;
        user: string;
        items: unknown[];
      };
      assert.equal(json.category, category.id);
      assert.equal(json.user, 'alice@export.test');
      // The audit log gained this export's own entry after its file was written.
      assert.equal(json.items.length, counts.get(category.id), category.id);
    }
    const roster = JSON.parse((files.get('json/roster.json') as Buffer).toString());
    assert.equal(roster.items[0].name, 'Bob & "friends"');
  });

  test('messages.csv has one row per stored message, quoted, and defused for spreadsheets', () => {
    const csv = (files.get('messages.csv') as Buffer).toString();
    assert.ok(csv.startsWith('store,time,from,to,type,id,subject,body\r\n'));
    assert.match(csv, /offline,[^,]+,carol@elsewhere\.example\/phone,alice@export\.test,chat,m0,,"hello, world"\r\n/);
    assert.match(csv, /,'=cmd\|"" \/c calc""!A1"?\r\n|,"'=cmd\|"" \/c calc""!A1"\r\n/);
    assert.match(csv, /"line one\nline ""two"""\r\n/);
    assert.equal(csv.split('\r\n').filter((l) => l.startsWith('offline,')).length, counts.get('offline'));
  });

  test('summary.md states purpose, legal basis, retention, recipients and the number of items of every category', () => {
    const summary = (files.get('summary.md') as Buffer).toString();
    assert.match(summary, /alice@export\.test/);
    assert.match(summary, /Reason given: access request 42/);
    for (const category of a.server.privacy.all()) {
      const row = summary.split('\n').find((l) => l.startsWith(`| \`${category.id}\` |`));
      assert.ok(row, `a row for ${category.id}`);
      assert.ok(row.includes(category.purpose), `${category.id}: purpose`);
      assert.ok(row.includes(category.retention.description), `${category.id}: retention`);
      assert.match(row, /GDPR art\. 6\(1\)/);
      assert.ok(row.includes(`| ${counts.get(category.id)} |`), `${category.id}: count`);
    }
    assert.match(summary, /art\. 77/);
  });

  test('the export is in the audit log, with the reason', async () => {
    const entries = await a.server.audit.list({ account: alice });
    const entry = entries.find((e) => e.action === 'export');
    assert.equal(entry?.actor, 'tester');
    assert.equal(entry?.reason, 'access request 42');
  });
});

test('round trip: export, import into a fresh server, export again gives the same XML and JSON, and the same password works', async () => {
  const first = join(dir, 'first.zip');
  await exportUser(a.server, alice, { out: first, reason: 'moving', actor: 'tester' });
  const filesA = await readZip(first);
  const xmlPath = join(dir, 'first.xml');
  writeFileSync(xmlPath, filesA.get('xep0227.xml') as Buffer);

  const b = await openLethe(['export.test']);
  try {
    const result = await importPie(b.server, xmlPath, { existing: 'refuse', actor: 'tester' });
    assert.deepEqual(
      result.users.map((u) => [u.jid.toString(), u.outcome]),
      [['alice@export.test', 'created']],
    );
    assert.deepEqual(result.warnings, []);
    const second = join(dir, 'second.zip');
    await exportUser(b.server, alice, { out: second, reason: 'moving', actor: 'tester' });
    const filesB = await readZip(second);

    assert.equal((filesB.get('xep0227.xml') as Buffer).toString(), (filesA.get('xep0227.xml') as Buffer).toString());
    // Not expected to match: the audit log records these very exports and the import, and the data key is
    // the new server's own (its export names the key's creation, never the key).
    const differ = new Set(['json/audit-log.json', 'json/data-keys.json']);
    for (const [name, content] of filesA) {
      if (!name.startsWith('json/') || differ.has(name)) continue;
      assert.equal(filesB.get(name)?.toString(), content.toString(), name);
    }
    assert.equal(filesB.get('messages.csv')?.toString(), filesA.get('messages.csv')?.toString());

    for (const hash of ['sha1', 'sha256'] as const) {
      const creds = await b.server.accounts.credentials(alice, hash);
      assert.ok(creds && verifyPassword(PASSWORD, creds), `${hash} keys accept the old password`);
    }
  } finally {
    await b.close();
  }
});

test('an export archive imports as it is (lethe import FILE.zip)', async () => {
  const zip = join(dir, 'whole.zip');
  const counts = await countsOf(a, alice);
  await exportUser(a.server, alice, { out: zip, reason: 'moving', actor: 'tester' });
  const c = await openLethe(['export.test']);
  try {
    await importPie(c.server, zip, { existing: 'refuse', actor: 'tester' });
    assert.equal(await c.server.privacy.get('offline')?.count(alice), counts.get('offline'));
    assert.equal(await c.server.privacy.get('private')?.count(alice), 2);
  } finally {
    await c.close();
  }
});

describe('the command line', () => {
  const { path } = writeConfig();
  const cfg = ['--config', path];

  before(() => {
    const r = runCli([...cfg, 'user', 'add', 'alice@cli.test', '--password-stdin'], { input: 'pw\n' });
    assert.equal(r.status, 0, r.stderr);
  });

  test('an operator export needs a reason', () => {
    const r = runCli([...cfg, 'user', 'export', 'alice@cli.test', '--out', join(dir, 'cli.zip')]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--reason/);
  });

  test('an unknown user is an error, and no file is left', () => {
    const out = join(dir, 'nobody.zip');
    const r = runCli([...cfg, 'user', 'export', 'nobody@cli.test', '--out', out, '--reason', 'x']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /nobody@cli\.test does not exist/);
    assert.equal(existsSync(out) || existsSync(`${out}.partial`), false);
  });

  test('exports to a new zip file, with no progress bar when standard error is not a terminal', async () => {
    const out = join(dir, 'cli.zip');
    const r = runCli([...cfg, 'user', 'export', 'alice@cli.test', '--out', out, '--reason', 'request']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /exported alice@cli\.test to .*cli\.zip/);
    assert.doesNotMatch(r.stderr, /\[|%/);
    assert.ok((await readZip(out)).has('xep0227.xml'));
    const again = runCli([...cfg, 'user', 'export', 'alice@cli.test', '--out', out, '--reason', 'request']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /exists already/);
  });
});

test('memory stays flat exporting 100 000 offline messages', { timeout: 60_000 }, async () => {
  const big = await openLethe(['export.test']);
  try {
    const user = new Jid('heavy', 'export.test');
    await big.server.accounts.create(user, PASSWORD);
    const body = 'x'.repeat(200);
    const stanza = `<message xmlns="jabber:client" from="carol@elsewhere.example/phone" to="heavy@export.test" type="chat"><body>${body}</body><delay xmlns="urn:xmpp:delay" from="export.test" stamp="2026-01-01T00:00:00.000Z">Offline Storage</delay></message>`;
    // One sealed copy serves every row: it is bound to the owner and purpose, not to the row.
    const sealed = await big.server.keys.sealFor(user, stanza, 'offline');
    const N = 100_000;
    await big.server.db.run(
      `INSERT INTO offline_messages (owner, stored_at, sealed)
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) SELECT ?, ? + i, ? FROM n`,
      [N, user.bareString(), Date.parse('2026-01-01T00:00:00Z'), sealed],
    );
    assert.equal(await big.server.privacy.get('offline')?.count(user), N);

    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const base = process.memoryUsage();
    let peakHeap = base.heapUsed;
    let peakRss = base.rss;
    // Live memory, not garbage not yet collected: collected before each sample.
    const sample = setInterval(() => {
      gc();
      const m = process.memoryUsage();
      peakHeap = Math.max(peakHeap, m.heapUsed);
      peakRss = Math.max(peakRss, m.rss);
    }, 500);
    const out = join(dir, 'heavy.zip');
    let items = 0;
    const started = Date.now();
    const result = await exportUser(big.server, user, { out, reason: 'load', actor: 'tester', onItem: () => items++ });
    clearInterval(sample);
    const seconds = (Date.now() - started) / 1000;

    assert.equal(result.counts.find((c) => c.category.id === 'offline')?.count, N);
    const sizes = await entrySizes(out);
    const written = [...sizes.values()].reduce((s, n) => s + n, 0);
    const MB = 1024 * 1024;
    console.log(
      `export of ${N} messages: ${seconds.toFixed(1)} s, ${(written / MB).toFixed(0)} MB uncompressed, heap +${(
        (peakHeap - base.heapUsed) / MB
      ).toFixed(0)} MB, rss +${((peakRss - base.rss) / MB).toFixed(0)} MB`,
    );
    assert.ok(written > 96 * MB, 'the archive is far larger than the memory allowed below');
    assert.ok(peakHeap - base.heapUsed < 32 * MB, `heap grew by ${(peakHeap - base.heapUsed) / MB} MB`);
    assert.ok(peakRss - base.rss < 160 * MB, `rss grew by ${(peakRss - base.rss) / MB} MB`);
  } finally {
    await big.close();
  }
});

/** Uncompressed size of every entry, from the zip's directory (nothing is decompressed). */
function entrySizes(path: string): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const sizes = new Map<string, number>();
    yauzl.open(path, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      zip.on('entry', (e: yauzl.Entry) => {
        sizes.set(e.fileName, e.uncompressedSize);
        zip.readEntry();
      });
      zip.on('end', () => resolve(sizes));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}
