import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSlixmppScript, SLIXMPP_PASSWORD, skipWithoutSlixmpp, withLetheForSlixmpp } from './support/slixmpp.js';

/**
 * slixmpp (Debian's python3-slixmpp) as a second, independent client: users made with `lethe user add`,
 * server started with `lethe start`, SCRAM-SHA-256 over STARTTLS, subscription, presence and messages.
 */
const SCRIPT = 'slixmpp_pair.py';

test('slixmpp: two users log in with SCRAM-SHA-256 over STARTTLS, subscribe, see presence, exchange messages', async (t) => {
  if (skipWithoutSlixmpp(t)) return;
  const password = SLIXMPP_PASSWORD;
  await withLetheForSlixmpp(['alice', 'bob'], async (port) => {
    const r = await runSlixmppScript(
      SCRIPT,
      ['--port', String(port), '--domain', 'cli.test', '--password', password, '--timeout', '40'],
      60_000,
    );
    const { line } = r;
    const result = JSON.parse(line || '{}');
    assert.equal(r.status, 0, `slixmpp run failed: ${line}\n${r.stderr.slice(-3000)}`);
    assert.deepEqual(result.mechanisms, ['SCRAM-SHA-256', 'SCRAM-SHA-256']);
    assert.match(result.alice_saw, /^bob@cli\.test\/slix$/);
    assert.match(result.bob_saw, /^alice@cli\.test\/slix$/);
    assert.equal(result.bob_got, 'hello bob, from slixmpp alice');
    assert.equal(result.alice_got, 'hello alice, from slixmpp bob');
    assert.equal(result.alice_roster['bob@cli.test'], 'both');
    assert.equal(result.bob_roster['alice@cli.test'], 'both');
  });
});
