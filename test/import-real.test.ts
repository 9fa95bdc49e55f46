import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { client, xml } from '@xmpp/client';
import type { Element } from '@xmpp/xml';
import { commandExists, freePort, run, selfSignedCert } from '../bench/servers/common.js';
import { EjabberdServer } from '../bench/servers/ejabberd.js';
import { ProsodyServer } from '../bench/servers/prosody.js';
import { importPie } from '../src/privacy/import.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect } from './support/xmpp.js';

/**
 * Moving a real account from Prosody and from ejabberd (Debian packages) to Lethe: the user gets a
 * roster item, a vCard and private storage on the real server, which exports them with its own tool
 * (`prosody-migrator` to `xep0227`, `ejabberdctl export_piefxis`); Lethe imports the file, and the user
 * logs in to Lethe with the same password and finds the same data. The servers run from bench/servers.
 */

const DOMAIN = 'localhost';
/** The benchmark servers create `<prefix>1`. */
const USER = 'mover';
const PASS = 'real-pass-2027';
const INSTALL = 'apt-get install -y prosody ejabberd';

let base: string;
let cert: { certFile: string; keyFile: string };

before(async () => {
  base = mkdtempSync(join(tmpdir(), 'lethe-import-real-'));
  // ejabberd runs as its own user and must reach its directory.
  chmodSync(base, 0o755);
  cert = { certFile: join(base, 'cert.pem'), keyFile: join(base, 'key.pem') };
  await selfSignedCert(DOMAIN, cert.certFile, cert.keyFile, 1);
});

after(() => rmSync(base, { recursive: true, force: true }));

async function missing(commands: string[]): Promise<string | undefined> {
  for (const c of commands) if (!(await commandExists(c))) return c;
  return undefined;
}

/** Logs in to a real server as the user and stores a roster item, a vCard and private XML. */
async function populateAs(username: string, port: number): Promise<void> {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${port}`,
    domain: DOMAIN,
    username,
    password: PASS,
    timeout: 15_000,
  } as Parameters<typeof client>[0]);
  xmpp.reconnect.stop();
  xmpp.on('error', () => {});
  await xmpp.start();
  try {
    const set = (payload: Element) => xmpp.iqCaller.request(xml('iq', { type: 'set' }, payload), 15_000);
    await set(
      xml(
        'query',
        { xmlns: 'jabber:iq:roster' },
        xml('item', { jid: 'friend@example.org', name: 'A Friend' }, xml('group', {}, 'Pals')),
      ),
    );
    await set(xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Mover Example'), xml('NICKNAME', {}, 'mov')));
    await set(
      xml('query', { xmlns: 'jabber:iq:private' }, xml('notes', { xmlns: 'urn:example:real' }, xml('n', {}, 'kept'))),
    );
  } finally {
    await xmpp.stop();
  }
}

/** Imports the file into a fresh Lethe for the same domain, logs in as the user and checks what it finds. */
async function checkInLethe(file: string, username: string): Promise<void> {
  let lethe: TestServer | undefined;
  try {
    lethe = await startTestServer({ domain: DOMAIN });
    const result = await importPie(lethe.running.server, file, { existing: 'refuse', actor: 'test' });
    assert.ok(result.users.some((u) => u.jid.toString() === `${username}@${DOMAIN}`));
    // Both servers keep SCRAM-SHA-1 keys only (see the import's warning), so that is the mechanism to use.
    const c = await connect(lethe, username, { password: PASS, mechanism: 'SCRAM-SHA-1' });
    try {
      const roster = await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
      const item = roster.getChild('query')?.getChild('item');
      assert.equal(item?.attrs.jid, 'friend@example.org');
      assert.equal(item?.attrs.name, 'A Friend');
      assert.equal(item?.getChildText('group'), 'Pals');
      const vcard = await c.iq(xml('iq', { type: 'get' }, xml('vCard', { xmlns: 'vcard-temp' })));
      assert.equal(vcard.getChild('vCard')?.getChildText('FN'), 'Mover Example');
      const priv = await c.iq(
        xml(
          'iq',
          { type: 'get' },
          xml('query', { xmlns: 'jabber:iq:private' }, xml('notes', { xmlns: 'urn:example:real' })),
        ),
      );
      assert.equal(priv.getChild('query')?.getChild('notes')?.getChildText('n'), 'kept');
    } finally {
      await c.stop();
    }
  } finally {
    await lethe?.stop();
  }
}

test('a Prosody account exported with prosody-migrator logs in to Lethe with its roster, vCard and private data', {
  timeout: 60_000,
}, async (t) => {
  const absent = await missing(['prosody', 'prosodyctl', 'prosody-migrator', 'lua5.4']);
  if (absent) {
    console.warn(`import-real: ${absent} is not installed, so the Prosody import is not tested: ${INSTALL}`);
    return t.skip(`${absent} missing: ${INSTALL}`);
  }
  const dir = join(base, 'prosody');
  mkdirSync(dir);
  const prosody = new ProsodyServer(dir, await freePort(), await freePort());
  await prosody.prepare({ domain: DOMAIN, userPrefix: USER, password: PASS, accounts: 1, ...cert });
  // The benchmark's server keeps only rosters; this one also vCards (classic mod_vcard) and private XML.
  const cfg = join(dir, 'prosody.cfg.lua');
  writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('"roster";', '"roster"; "vcard"; "private";'));
  // The benchmark's account is `<prefix>1`.
  const user = `${USER}1`;
  await prosody.start();
  try {
    await populateAs(user, prosody.port);
  } finally {
    await prosody.stop();
  }
  // prosody-migrator writes where its hard-coded data path says, so it runs from a copy that points elsewhere.
  const out = join(dir, 'export');
  mkdirSync(out);
  const migrator = join(dir, 'prosody-migrator');
  writeFileSync(
    migrator,
    readFileSync('/usr/bin/prosody-migrator', 'utf8').replace(
      /^CFG_DATADIR=.*$/m,
      `CFG_DATADIR=${JSON.stringify(out)};`,
    ),
  );
  const migratorCfg = join(dir, 'migrator.cfg.lua');
  writeFileSync(
    migratorCfg,
    `input { type = "internal"; path = ${JSON.stringify(join(dir, 'data'))}; hosts = { [${JSON.stringify(DOMAIN)}] = { "accounts", "roster", "vcard", "private" } } }\n` +
      `output { type = "xep0227"; path = ${JSON.stringify(out)} }\n`,
  );
  const r = await run('lua5.4', [migrator, '--root', `--config=${migratorCfg}`, 'input', 'output'], {
    timeoutMs: 30_000,
  });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  await checkInLethe(join(out, `${user}@${DOMAIN}.xml`), user);
});

test('an ejabberd account exported with export_piefxis logs in to Lethe with its roster, vCard and private data', {
  timeout: 90_000,
}, async (t) => {
  const absent = await missing(['ejabberdctl']);
  if (absent) {
    console.warn(`import-real: ${absent} is not installed, so the ejabberd import is not tested: ${INSTALL}`);
    return t.skip(`${absent} missing: ${INSTALL}`);
  }
  const dir = join(base, 'ejabberd');
  mkdirSync(dir);
  const ejabberd = new EjabberdServer(dir, await freePort(), await freePort());
  await ejabberd.prepare({ domain: DOMAIN, userPrefix: USER, password: PASS, accounts: 1, ...cert });
  const yml = join(dir, 'ejabberd.yml');
  writeFileSync(
    yml,
    readFileSync(yml, 'utf8').replace('  mod_roster: {}', '  mod_roster: {}\n  mod_vcard: {}\n  mod_private: {}'),
  );
  const user = `${USER}1`;
  const out = join(dir, 'export');
  mkdirSync(out);
  await run('chown', ['-R', 'ejabberd:ejabberd', dir]);
  await ejabberd.start();
  try {
    await populateAs(user, ejabberd.port);
    const r = await ejabberd.ctl(['export_piefxis', out]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  } finally {
    await ejabberd.stop();
  }
  const index = readdirSync(out).find((f) => f.endsWith('.xml') && !f.includes('_'));
  assert.ok(index, `an index file in ${readdirSync(out).join(', ')}`);
  await checkInLethe(join(out, index), user);
});
