import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { DataCategory } from '../src/privacy/registry.js';
import { parseFragments } from '../src/xml/fragment.js';
import type { Jid } from '../src/xml/jid.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect, xml } from './support/xmpp.js';

/** The archive in XEP-0227 (`urn:xmpp:pie:0#mam`, as Prosody writes it): export, then import, gives it back as it was. */

let server: TestServer;
let alice: Jid;
let archive: DataCategory;

before(async () => {
  server = await startTestServer({ mam: { defaultPolicy: 'always' } });
  alice = await server.addUser('alice');
  await server.addUser('bob');
  archive = server.running.server.privacy.get('archive') as DataCategory;
  const [a, b] = await Promise.all([connect(server, 'alice'), connect(server, 'bob')]);
  for (let i = 0; i < 3; i++)
    await b.send(xml('message', { to: alice.toString(), type: 'chat' }, xml('body', {}, `to alice ${i} <&>`)));
  await a.send(xml('message', { to: `bob@${server.domain}`, type: 'chat' }, xml('body', {}, 'to bob')));
  for (const deadline = Date.now() + 10_000; (await archive.count(alice)) < 4; ) {
    if (Date.now() > deadline) throw new Error('the archive did not fill');
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all([a.stop(), b.stop()]);
});

after(async () => {
  await server.stop();
});

async function exported(): Promise<string[]> {
  const out: string[] = [];
  for await (const el of archive.xep0227?.export(alice) ?? []) out.push(el.toString());
  return out;
}

test('each archived message is a MAM result with its id, time and message, both directions', async () => {
  const items = await exported();
  assert.equal(items.length, 4);
  assert.deepEqual(archive.xep0227?.container, '{urn:xmpp:pie:0#mam}archive');
  for (const item of items) {
    const [result] = parseFragments(item);
    assert.equal(result?.attrs.xmlns, 'urn:xmpp:mam:2');
    assert.ok(result?.attrs.id);
    assert.match(result?.getChild('forwarded')?.getChild('delay')?.attrs.stamp ?? '', /^\d{4}-\d\d-\d\dT/);
  }
  assert.match(items.join(''), /to alice 2 &lt;&amp;&gt;/);
  assert.match(items.join(''), /to bob/);
});

test('erase, import what was exported: the same archive, ids, times, directions and all', async () => {
  const { db } = server.running.server;
  const before = await exported();
  const importer = archive.xep0227;
  assert.ok(importer);
  await db.transaction((tx) => archive.erase(alice, tx));
  assert.equal(await archive.count(alice), 0);
  const warnings: string[] = [];
  await db.transaction(async (tx) => {
    for (const item of [
      ...before,
      '<result xmlns="urn:xmpp:mam:2" id="broken"><forwarded xmlns="urn:xmpp:forward:0"/></result>',
    ])
      await importer.import(alice, parseFragments(item)[0] as never, {
        tx,
        merging: false,
        warn: (w) => warnings.push(w),
      });
  });
  assert.equal(warnings.length, 1, 'the broken item is reported and left out');
  assert.equal(await archive.count(alice), 4);
  assert.deepEqual(await exported(), before);
  // Importing into an archive that has them already (a merge) adds nothing twice.
  await db.transaction(async (tx) => {
    for (const item of before)
      await importer.import(alice, parseFragments(item)[0] as never, { tx, merging: true, warn: () => {} });
  });
  assert.equal(await archive.count(alice), 4);
});
