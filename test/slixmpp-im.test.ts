import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSlixmppScript, SLIXMPP_PASSWORD, skipWithoutSlixmpp, withLetheForSlixmpp } from './support/slixmpp.js';

/**
 * slixmpp (Debian's python3-slixmpp) for everyday IM against `lethe start`: carbons between two
 * resources of one user, vCard set and get, and offline delivery with a delay stamp after reconnecting.
 */
const SCRIPT = 'slixmpp_im.py';

test('slixmpp: carbons between two resources, vCard set and get, offline delivery after reconnecting', async (t) => {
  if (skipWithoutSlixmpp(t)) return;
  const password = SLIXMPP_PASSWORD;
  await withLetheForSlixmpp(['alice', 'bob'], async (port) => {
    const before = Date.now();
    const r = await runSlixmppScript(
      SCRIPT,
      ['--port', String(port), '--domain', 'cli.test', '--password', password, '--timeout', '60'],
      90_000,
    );
    const { line } = r;
    const result = JSON.parse(line || '{}');
    assert.equal(r.status, 0, `slixmpp run failed: ${line}\n${r.stderr.slice(-3000)}`);

    assert.deepEqual(result.received_carbon, {
      kind: 'received',
      from: 'alice@cli.test',
      inner_from: 'bob@cli.test/desk',
      inner_to: 'alice@cli.test/one',
      body: "to alice's first resource",
      direct_from: 'bob@cli.test/desk',
    });
    assert.deepEqual(result.sent_carbon, {
      kind: 'sent',
      from: 'alice@cli.test',
      inner_from: 'alice@cli.test/one',
      inner_to: 'bob@cli.test',
      body: "from alice's first resource",
    });
    assert.deepEqual(result.vcard, { FN: 'Alice Liddell', NICKNAME: ['alice'] });
    assert.equal(result.offline.from, 'alice@cli.test/one');
    assert.equal(result.offline.body, 'while you were away');
    assert.equal(result.offline.delay_from, 'cli.test');
    const stamp = Date.parse(result.offline.delay_stamp);
    assert.ok(stamp >= before - 1000 && stamp <= Date.now(), `delay stamp ${result.offline.delay_stamp}`);
  });
});
