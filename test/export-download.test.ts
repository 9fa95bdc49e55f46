import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dataPolicyFields } from '../src/modules/data-policy.js';
import { privacyCapabilities } from '../src/privacy/capabilities.js';
import { downloads } from '../src/privacy/downloads.js';
import { x } from '../src/xml/element.js';
import type { Jid } from '../src/xml/jid.js';
import { basic, fetchHttps, type Reply } from './support/https.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { readZip } from './support/portability.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/**
 * Self-service export: the ad-hoc command builds the archive and answers with a link that serves it
 * over HTTPS to its owner only (HTTP Basic with the account's password), in one browser session only,
 * until it expires; the file goes at expiry, on erasure and at stop.
 */

const NS_COMMANDS = 'http://jabber.org/protocol/commands';
const NODE = 'urn:lethe:privacy:export';

let server: TestServer;
let alice: Jid;
let bob: Jid;
let client: TestClient;

const port = () => server.running.ports.http as number;
const service = () => downloads(server.running.server);
const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
  fetchHttps(port(), path, { headers, method });
const cookieOf = (reply: Reply) => String(reply.headers['set-cookie']?.[0]).split(';')[0] as string;

/** Runs the command as `c` and returns the link's path and the completed command. */
async function runExport(c: TestClient): Promise<{ path: string; command: Element }> {
  const reply = await c.iq(
    xml(
      'iq',
      { type: 'set', to: server.domain },
      xml('command', { xmlns: NS_COMMANDS, node: NODE, action: 'execute' }),
    ),
    30_000,
  );
  const command = reply.getChild('command', NS_COMMANDS) as Element;
  assert.equal(command.attrs.status, 'completed');
  const field = command
    .getChild('x', 'jabber:x:data')
    ?.getChildren('field')
    .find((f) => f.attrs.var === 'url');
  const url = new URL(field?.getChildText('value') ?? '');
  assert.equal(url.protocol, 'https:');
  assert.equal(url.host, `${server.domain}:${port()}`);
  assert.match(command.getChildText('note') ?? '', new RegExp(`${url.href.replace(/[.?]/g, '\\$&')} \\(valid until `));
  return { path: url.pathname, command };
}

before(async () => {
  server = await startTestServer();
  alice = await server.addUser('alice');
  bob = await server.addUser('bob');
  await server.running.server.router.route(
    x('message', { from: `${bob}/x`, to: alice.toString(), type: 'chat', id: 'offline-1' }, x('body', {}, 'hi!')),
  );
  client = await connect(server, 'alice', { presence: false });
});

after(async () => {
  await client.stop();
  await server.stop();
});

describe('the export command and its link', () => {
  let path: string;
  let cookie: string;

  before(async () => {
    ({ path } = await runExport(client));
  });

  test('the command is listed and announced in the data policy', async () => {
    const items = await client.iq(
      xml(
        'iq',
        { type: 'get', to: server.domain },
        xml('query', { xmlns: 'http://jabber.org/protocol/disco#items', node: NS_COMMANDS }),
      ),
    );
    const nodes = items
      .getChild('query')
      ?.getChildren('item')
      .map((i) => i.attrs.node);
    assert.ok(nodes?.includes(NODE));
    assert.equal(privacyCapabilities(server.running.server).selfServiceExport, true);
    const field = dataPolicyFields(server.running.server).find((f) => f.var === 'data_export');
    assert.deepEqual(field?.values, ['true']);
  });

  test('the token is 256 random bits and the file waits in a private directory', () => {
    const token = path.split('/').at(-1) as string;
    assert.equal(Buffer.from(token, 'base64url').length, 32);
    assert.equal(statSync(service().dir).mode & 0o777, 0o700);
    assert.equal(readdirSync(service().dir).length, 1);
    assert.equal(service().pending(alice).length, 1);
  });

  test('refused without credentials (401), with a wrong password (401), for another user (403)', async () => {
    const none = await get(path);
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /^Basic realm=/);
    assert.equal((await get(path, { authorization: basic(alice.toString(), 'wrong password') })).status, 401);
    assert.equal((await get(path, { authorization: basic('alice', 'wrong password') })).status, 401);
    const other = await get(path, { authorization: basic(bob.toString(), PASSWORD) });
    assert.equal(other.status, 403);
    assert.equal(other.headers['set-cookie'], undefined);
    assert.equal((await get(`${path}x`, { authorization: basic(alice.toString(), PASSWORD) })).status, 404);
  });

  test('HEAD looks without using the link up', async () => {
    const head = await get(path, { authorization: basic('alice', PASSWORD) }, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['set-cookie'], undefined);
  });

  test('the owner downloads a valid archive of their data', async () => {
    const reply = await get(path, { authorization: basic(alice.toString(), PASSWORD) });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'application/zip');
    assert.match(
      String(reply.headers['content-disposition']),
      /^attachment; filename="lethe\.test-export-\d{4}-\d\d-\d\d\.zip"/,
    );
    assert.equal(reply.headers['cache-control'], 'no-store');
    assert.equal(Number(reply.headers['content-length']), reply.body.length);
    const setCookie = String(reply.headers['set-cookie']?.[0]);
    assert.match(setCookie, /; Secure; HttpOnly; SameSite=Strict/);
    assert.match(setCookie, new RegExp(`; Path=${path};`));
    cookie = cookieOf(reply);

    const file = join(server.dataDir, 'downloaded.zip');
    writeFileSync(file, reply.body);
    const files = await readZip(file);
    assert.ok(files.has('xep0227.xml'));
    assert.match(files.get('xep0227.xml')?.toString() ?? '', /<user name=['"]alice['"]>/);
    assert.match(files.get('json/account.json')?.toString() ?? '', /"alice@lethe\.test"/);
    assert.match(files.get('json/offline.json')?.toString() ?? '', /offline-1/);
    const summary = files.get('summary.md')?.toString() ?? '';
    assert.match(summary, /alice@lethe\.test/);
    assert.match(summary, /You asked for this copy yourself/);
  });

  test('the same session may download again (to resume), a different one may not', async () => {
    const again = await get(path, { authorization: basic(alice.toString(), PASSWORD), cookie });
    assert.equal(again.status, 200);
    assert.equal(again.headers['set-cookie'], undefined);
    const other = await get(path, { authorization: basic(alice.toString(), PASSWORD) });
    assert.equal(other.status, 403);
    const forged = await get(path, { authorization: basic(alice.toString(), PASSWORD), cookie: 'lethe-download=abc' });
    assert.equal(forged.status, 403);
  });

  test('the export is in the audit log, as the user’s own action', async () => {
    const entries = await server.running.server.audit.list({ account: alice });
    const exported = entries.filter((e) => e.action === 'export');
    assert.equal(exported.length, 1);
    assert.equal(exported[0]?.actor, alice.toString());
  });

  test('a new export replaces the old link', async () => {
    const { path: second } = await runExport(client);
    assert.notEqual(second, path);
    assert.equal((await get(path, { authorization: basic('alice', PASSWORD), cookie })).status, 410);
    assert.equal(service().pending(alice).length, 1);
    assert.equal(readdirSync(service().dir).length, 1);
    path = second;
  });

  test('after expiry the link is gone (410) and so is the file', async () => {
    const [offer] = service().pending(alice);
    assert.ok(offer && 'path' in offer.source);
    const file = offer.source.path;
    assert.ok(existsSync(file));
    service().now = () => Date.now() + 86_400_000;
    try {
      const reply = await get(path, { authorization: basic('alice', PASSWORD) });
      assert.equal(reply.status, 410);
      assert.equal(existsSync(file), false);
      assert.equal(service().pending(alice).length, 0);
    } finally {
      service().now = Date.now;
    }
  });
});

test('the sweeper deletes expired files', async () => {
  const file = await service().newFile();
  writeFileSync(file, 'data');
  const link = service().offer(alice, file, { filename: 'f.txt', contentType: 'text/plain', ttlSeconds: 60 });
  assert.equal(await service().sweep(Date.now() + 59_000), 0);
  assert.ok(existsSync(file));
  assert.equal(await service().sweep(Date.now() + 60_000), 1);
  assert.equal(existsSync(file), false);
  const reply = await get(new URL(link.url).pathname, { authorization: basic('alice', PASSWORD) });
  assert.equal(reply.status, 410);
});

test('erasing the user deletes their pending downloads; others keep theirs', async () => {
  const { privacy, db } = server.running.server;
  const mine = await service().newFile();
  const theirs = await service().newFile();
  writeFileSync(mine, 'a');
  writeFileSync(theirs, 'b');
  service().offer(alice, mine, { filename: 'a', contentType: 'text/plain' });
  service().offer(bob, theirs, { filename: 'b', contentType: 'text/plain' });
  const category = privacy.get('downloads');
  assert.equal(category?.legalBasis, 'contract');
  assert.equal(category?.retention.maxAgeSeconds, 86_400);
  assert.equal(await category?.count(alice), 1);
  const exported = [];
  for await (const record of category?.export(alice) ?? []) exported.push(record);
  assert.deepEqual(Object.keys(exported[0] ?? {}).sort(), ['downloaded', 'expiresAt', 'filename', 'offeredAt']);
  assert.equal(await db.transaction((tx) => category?.erase(alice, tx) ?? Promise.resolve(0)), 1);
  assert.equal(existsSync(mine), false);
  assert.ok(existsSync(theirs));
  assert.equal(await category?.count(alice), 0);
  assert.equal(await category?.count(bob), 1);
});

test('a locked account cannot download', async () => {
  const carol = await server.addUser('carol');
  const file = await service().newFile();
  writeFileSync(file, 'c');
  const link = service().offer(carol, file, { filename: 'c', contentType: 'text/plain' });
  await server.running.server.accounts.setStatus(carol, 'locked');
  const reply = await get(new URL(link.url).pathname, { authorization: basic('carol', PASSWORD) });
  assert.equal(reply.status, 401);
});

test('stopping the server deletes every pending file', async () => {
  const file = await service().newFile();
  writeFileSync(file, 'd');
  service().offer(bob, file, { filename: 'd', contentType: 'text/plain' });
  const dir = service().dir;
  await client.stop();
  await server.running.stop();
  assert.deepEqual(readdirSync(dir), []);
});
