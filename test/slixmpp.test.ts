import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli, startCli, writeConfig } from './support/cli.js';

/**
 * slixmpp (Debian's python3-slixmpp) as a second, independent client: users made with `lethe user add`,
 * server started with `lethe start`, SCRAM-SHA-256 over STARTTLS, subscription, presence and messages.
 */
const PYTHON = '/usr/bin/python3';
const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/e2e/slixmpp_pair.py');

function slixmppMissing(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import slixmpp'], { encoding: 'utf8' });
  return r.status === 0
    ? undefined
    : `python3-slixmpp is not installed (apt-get install -y python3-slixmpp): ${r.stderr || r.error}`;
}

test('slixmpp: two users log in with SCRAM-SHA-256 over STARTTLS, subscribe, see presence, exchange messages', async (t) => {
  const missing = slixmppMissing();
  if (missing) {
    console.warn(`SKIPPED slixmpp end-to-end test: ${missing}`);
    t.skip(missing);
    return;
  }
  const { path, dir } = writeConfig();
  const password = 'slix secret pass';
  for (const user of ['alice', 'bob']) {
    const r = runCli(['--config', path, 'user', 'add', `${user}@cli.test`, '--password-stdin'], {
      input: `${password}\n`,
    });
    assert.equal(r.status, 0, r.stderr);
  }
  const server = await startCli(path);
  try {
    const r = spawnSync(
      PYTHON,
      [SCRIPT, '--port', String(server.port), '--domain', 'cli.test', '--password', password, '--timeout', '40'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
    const result = JSON.parse(line || '{}');
    assert.equal(r.status, 0, `slixmpp run failed: ${line}\n${r.stderr.slice(-3000)}`);
    assert.deepEqual(result.mechanisms, ['SCRAM-SHA-256', 'SCRAM-SHA-256']);
    assert.match(result.alice_saw, /^bob@cli\.test\/slix$/);
    assert.match(result.bob_saw, /^alice@cli\.test\/slix$/);
    assert.equal(result.bob_got, 'hello bob, from slixmpp alice');
    assert.equal(result.alice_got, 'hello alice, from slixmpp bob');
    assert.equal(result.alice_roster['bob@cli.test'], 'both');
    assert.equal(result.bob_roster['alice@cli.test'], 'both');
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
