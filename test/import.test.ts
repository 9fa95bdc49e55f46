import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { verifyPassword } from '../src/auth/scram.js';
import type { ExistingAccounts } from '../src/privacy/import.js';
import { importPie } from '../src/privacy/import.js';
import { Jid } from '../src/xml/jid.js';
import { runCli, writeConfig } from './support/cli.js';
import { type Lethe, openLethe } from './support/portability.js';

/** `lethe import`: real Prosody and ejabberd exports, existing accounts, and hostile or broken documents. */

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/xep0227');
const PASS = 'test-pass';
const alice = new Jid('alice', 'localhost');
const bob = new Jid('bob', 'localhost');

let lethe: Lethe;
let dir: string;

beforeEach(async () => {
  lethe = await openLethe(['localhost']);
  dir = mkdtempSync(join(tmpdir(), 'lethe-import-'));
});

afterEach(async () => {
  await lethe.close();
  rmSync(dir, { recursive: true, force: true });
});

function run(path: string, existing: ExistingAccounts = 'refuse', dryRun = false) {
  return importPie(lethe.server, path, { existing, actor: 'tester', dryRun });
}

/** A category's export records, as the JSON export gives them. */
async function records(category: string, user: Jid): Promise<Record<string, unknown>[]> {
  const out = [];
  for await (const r of lethe.server.privacy.get(category)?.export(user) ?? []) out.push(r);
  return out;
}

async function logsIn(user: Jid, password: string, hash: 'sha1' | 'sha256' = 'sha1'): Promise<boolean> {
  const creds = await lethe.server.accounts.credentials(user, hash);
  return !!creds && verifyPassword(password, creds);
}

async function accounts(): Promise<string[]> {
  const out = [];
  for await (const row of lethe.server.accounts.list()) out.push(row.jid);
  return out;
}

function doc(users: string, host = 'localhost'): string {
  return `<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='urn:xmpp:pie:0'><host jid='${host}'>${users}</host></server-data>`;
}

function file(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
}

describe('real exports', () => {
  test('Prosody (mod_vcard): SCRAM keys, roster, vCard, private storage and the archive; PEP is reported', async () => {
    const first = await run(join(FIXTURES, 'prosody/mod_vcard/alice@localhost.xml'));
    await run(join(FIXTURES, 'prosody/mod_vcard/bob@localhost.xml'));
    assert.deepEqual(await accounts(), ['alice@localhost', 'bob@localhost']);
    assert.ok(await logsIn(alice, PASS), 'Prosody’s SCRAM-SHA-1 keys accept the password');
    assert.ok(!(await logsIn(alice, 'wrong')));
    assert.deepEqual(await records('roster', alice), [
      {
        jid: 'bob@localhost',
        name: 'Bob Example',
        subscription: 'both',
        ask: null,
        approved: false,
        groups: ['Friends'],
      },
    ]);
    const [vcard] = await records('vcard', alice);
    assert.match(String(vcard?.vcard), /<FN>Alice Example<\/FN>/);
    const [priv] = await records('private', alice);
    assert.equal(priv?.namespace, 'urn:example:xep0227-test');
    assert.equal(priv?.xml, '<settings xmlns="urn:example:xep0227-test"><colour>green</colour></settings>');
    const warnings = first.warnings.join('\n');
    assert.match(warnings, /pubsub/);
    assert.doesNotMatch(warnings, /urn:xmpp:pie:0#mam/, 'the archive has a store now');
    // Prosody's <archive xmlns='urn:xmpp:pie:0#mam'/>: ids, times, direction and bodies kept.
    const archived = await records('archive', alice);
    assert.ok(archived.length > 0);
    const oldest = archived[0] as Record<string, unknown>;
    assert.equal(oldest.id, '8b2ygnyqcwwlsMorKFEFDbw8');
    assert.equal(oldest.time, '2026-11-23T18:46:42.000Z');
    assert.equal(oldest.direction, 'sent');
    assert.equal(oldest.with, 'bob@localhost');
    assert.match(String(oldest.stanza), /<body>online message 1 from alice<\/body>/);
    assert.match(warnings, /SCRAM-SHA-1 keys only/);
  });

  test('Prosody (default modules): the vCard exists only as PEP and is reported as skipped', async () => {
    const result = await run(join(FIXTURES, 'prosody/default/alice@localhost.xml'));
    assert.deepEqual(await records('vcard', alice), []);
    assert.match(result.warnings.join('\n'), /http:\/\/jabber\.org\/protocol\/pubsub/);
    assert.equal((await records('roster', alice)).length, 1);
  });

  test('ejabberd (scram): the XInclude index, doubly encoded keys, offline messages and the blocked list', async () => {
    const index = readdirSync(join(FIXTURES, 'ejabberd/scram')).find((f) => !f.includes('_')) as string;
    const result = await run(join(FIXTURES, 'ejabberd/scram', index));
    assert.deepEqual(
      result.users.map((u) => [u.jid.toString(), u.outcome]),
      [
        ['alice@localhost', 'created'],
        ['bob@localhost', 'created'],
      ],
    );
    assert.ok(await logsIn(alice, PASS));
    assert.ok(await logsIn(bob, PASS));
    const [message] = await records('offline', bob);
    assert.match(String(message?.stanza), /offline message for bob/);
    assert.equal(message?.storedAt, '2026-11-23T18:46:17.420Z', 'arrival time from ejabberd’s delay stamp');
    assert.deepEqual(await records('blocklist', alice), [{ jid: 'spammer@example.org' }]);
    assert.deepEqual((await records('roster', bob))[0]?.groups, ['Friends', 'Work']);
  });

  test('ejabberd (plain): a plaintext password becomes SCRAM keys for both hashes and is stored nowhere', async () => {
    const host = readdirSync(join(FIXTURES, 'ejabberd/plain')).find((f) => f.includes('_')) as string;
    const result = await run(join(FIXTURES, 'ejabberd/plain', host));
    assert.equal(result.users.length, 2);
    assert.ok(await logsIn(alice, PASS, 'sha1'));
    assert.ok(await logsIn(alice, PASS, 'sha256'));
    assert.doesNotMatch(result.warnings.join('\n'), /keys only|no credentials/);
    await lethe.server.db.run('PRAGMA wal_checkpoint(TRUNCATE)');
    for (const name of readdirSync(lethe.dir, { recursive: true }) as string[]) {
      if (!/\.(db|sqlite)(-wal)?$/.test(name) && !name.endsWith('.db-wal')) continue;
      assert.equal(readFileSync(join(lethe.dir, name)).includes(PASS), false, `${name} holds the password`);
    }
  });

  test('the import is in the audit log', async () => {
    await run(join(FIXTURES, 'prosody/mod_vcard/alice@localhost.xml'));
    const entry = (await lethe.server.audit.list({ account: alice })).find((e) => e.action === 'import');
    assert.equal(entry?.actor, 'tester');
    assert.equal(entry?.details?.outcome, 'created');
  });
});

describe('existing accounts', () => {
  const source = () => join(FIXTURES, 'prosody/mod_vcard/alice@localhost.xml');

  beforeEach(async () => {
    await lethe.server.accounts.create(alice, 'the new password');
    await lethe.server.db.run(
      "INSERT INTO roster_items (owner, contact, subscription, groups) VALUES (?, 'old@example.org', 'both', '[]')",
      [alice.bareString()],
    );
  });

  test('are refused by default, naming them, and nothing is imported', async () => {
    const both = file('both.xml', doc("<user name='carol' password='x'/><user name='alice' password='x'/>"));
    await assert.rejects(
      run(both),
      /1 of the document's accounts exist already: alice@localhost\. Use --merge .* or --replace/,
    );
    assert.deepEqual(await accounts(), ['alice@localhost']);
  });

  test('--merge adds the document’s data and keeps the account’s own password', async () => {
    const result = await run(source(), 'merge');
    assert.equal(result.users[0]?.outcome, 'merged');
    assert.ok(await logsIn(alice, 'the new password'));
    assert.ok(!(await logsIn(alice, PASS)));
    assert.deepEqual(
      (await records('roster', alice)).map((r) => r.jid),
      ['bob@localhost', 'old@example.org'],
    );
    assert.match(result.warnings.join('\n'), /kept the existing credentials/);
  });

  test('--replace erases the account first and takes everything from the document', async () => {
    const result = await run(source(), 'replace');
    assert.equal(result.users[0]?.outcome, 'replaced');
    assert.ok(await logsIn(alice, PASS));
    assert.ok(!(await logsIn(alice, 'the new password', 'sha256')), 'the old SHA-256 keys went too');
    assert.deepEqual(
      (await records('roster', alice)).map((r) => r.jid),
      ['bob@localhost'],
    );
  });
});

test('--dry-run checks everything and keeps nothing', async () => {
  const index = readdirSync(join(FIXTURES, 'ejabberd/scram')).find((f) => !f.includes('_')) as string;
  const result = await run(join(FIXTURES, 'ejabberd/scram', index), 'refuse', true);
  assert.equal(result.users.length, 2);
  assert.deepEqual(await accounts(), []);
});

describe('hostile and broken documents: a clear error, and nothing imported', () => {
  const good =
    "<user name='first' password='pw'><query xmlns='jabber:iq:roster'><item jid='x@example.org' subscription='both'/></query></user>";
  const cases: [string, string | Buffer, RegExp][] = [
    [
      'a DTD (entity expansion)',
      `<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='a'>&lol2;</user></host></server-data>`,
      /DTD/,
    ],
    ['a truncated document', doc(good).slice(0, -30), /unexpected end|unclosed|not well-formed|end/i],
    [
      'not XEP-0227',
      `<roster xmlns='jabber:iq:roster'/>`,
      /expected <server-data\/>.*found <roster xmlns='jabber:iq:roster'>/,
    ],
    [
      'a host this server does not serve',
      doc(good, 'elsewhere.example'),
      /elsewhere\.example, which this server does not serve \(it serves localhost\)/,
    ],
    ['an invalid user name', doc("<user name='a/b@c'/>"), /not a valid address/],
    ['a user without a name', doc('<user/>'), /without a name/],
    ['the same user twice', doc(`${good}${good}`), /first@localhost is in the document twice/],
    ['no user at all', doc(''), /no <user\/>/],
    [
      'an XInclude of an absolute path',
      `<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='/etc/passwd'/></server-data>`,
      /only relative file paths/,
    ],
    [
      'an XInclude leaving the directory',
      `<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='../../etc/passwd'/></server-data>`,
      /leaves the document's directory/,
    ],
    [
      'an XInclude of a URL',
      `<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='https://evil.example/x.xml'/></server-data>`,
      /only relative file paths/,
    ],
    [
      'SCRAM keys that are not base64, after a good user',
      doc(
        `${good}<user name='second'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>c2FsdA==</salt><server-key>***</server-key><stored-key>***</stored-key></scram-credentials></user>`,
      ),
      /SCRAM-SHA-1 stored-key is not base64/,
    ],
    [
      'an iteration count that would make every login a denial of service',
      doc(
        `${good}<user name='second'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>99999999</iter-count><salt>c2FsdA==</salt><server-key>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</server-key><stored-key>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</stored-key></scram-credentials></user>`,
      ),
      /iter-count "99999999" is not an integer from 1 to 10000000/,
    ],
    [
      'a roster item that is not a JID, after a good user',
      doc(
        `${good}<user name='second'><query xmlns='jabber:iq:roster'><item jid='a@@b' subscription='both'/></query></user>`,
      ),
      /second@localhost: roster item "a@@b" is not a valid JID/,
    ],
    [
      'a roster item with an unknown subscription',
      doc(
        `${good}<user name='second'><query xmlns='jabber:iq:roster'><item jid='a@b.example' subscription='remove'/></query></user>`,
      ),
      /subscription "remove"/,
    ],
    [
      'bytes that are not UTF-8',
      Buffer.concat([Buffer.from(doc(good).slice(0, 80)), Buffer.from([0xff, 0xfe])]),
      /not valid UTF-8/,
    ],
  ];
  for (const [what, text, error] of cases)
    test(what, async () => {
      await assert.rejects(run(file('doc.xml', text)), error);
      assert.deepEqual(await accounts(), []);
    });

  test('unknown elements are reported and skipped, not fatal', async () => {
    const result = await run(
      file(
        'doc.xml',
        doc(
          "<user name='a' password='pw'><pubsub xmlns='http://jabber.org/protocol/pubsub'/><weird xmlns='urn:example:x'/></user>",
        ),
      ),
    );
    assert.deepEqual(await accounts(), ['a@localhost']);
    assert.deepEqual(result.warnings, [
      "skipped 1 × <pubsub xmlns='http://jabber.org/protocol/pubsub'>: Lethe has no store for it",
      "skipped 1 × <weird xmlns='urn:example:x'>: Lethe has no store for it",
    ]);
  });

  test('an XInclude inside the directory is followed, with the user file layout of XEP-0227 §7', async () => {
    file('users/localhost/a.xml', "<user xmlns='urn:xmpp:pie:0' name='a' password='pw'/>");
    file(
      'users/localhost.xml',
      "<host xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude' jid='localhost'><xi:include href='localhost/a.xml'/></host>",
    );
    const main = file(
      'users/main.xml',
      "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='localhost.xml'/></server-data>",
    );
    await run(main);
    assert.deepEqual(await accounts(), ['a@localhost']);
  });
});

describe('the command line', () => {
  const { path } = writeConfig({ domain: 'localhost' });
  after(() => rmSync(dirname(path), { recursive: true, force: true }));

  test('imports a file, prints the accounts and the warnings, and refuses them the second time', () => {
    const source = join(FIXTURES, 'prosody/mod_vcard/alice@localhost.xml');
    const first = runCli(['--config', path, 'import', source]);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /imported 1 account\(s\):\n {2}alice@localhost: created/);
    assert.doesNotMatch(first.stderr, /urn:xmpp:pie:0#mam/, 'the archive is imported, not skipped');
    assert.doesNotMatch(first.stderr, /%|\[=/, 'no progress bar when standard error is not a terminal');
    const again = runCli(['--config', path, 'import', source]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /alice@localhost\. Use --merge/);
    const both = runCli(['--config', path, 'import', source, '--merge', '--replace']);
    assert.notEqual(both.status, 0);
  });
});
