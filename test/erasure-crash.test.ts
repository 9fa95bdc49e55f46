import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { openServer } from '../src/lethe.js';
import { addressHash } from '../src/privacy/address-hash.js';
import { erasureReceipt, KILL_DURING_ERASURE_ENV } from '../src/privacy/erasure.js';
import { Jid } from '../src/xml/jid.js';
import { CLI, runCli, startCli, writeConfig } from './support/cli.js';
import type { TestServer } from './support/lethe.js';
import { scanForResidue } from './support/residue.js';
import { connect, xml } from './support/xmpp.js';

/**
 * Erasure survives kill -9 (src/privacy/erasure.ts): a process killed in the middle of erasing, after the
 * first data category, leaves a locked account that cannot log in, and the next `lethe start` finishes
 * the erasure. Real child processes; the kill comes from the test-only LETHE_TEST_KILL_DURING_ERASURE hook.
 */

const { path, dir } = writeConfig();
after(() => rmSync(dir, { recursive: true, force: true }));
const lethe = (args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  runCli(['--config', path, ...args], options);
const PASSWORD = 'a long enough password';
const alice = Jid.parse('alice@cli.test');
const bob = Jid.parse('bob@cli.test');

/** `lethe start` with the kill hook set: the start-up sweep resumes the erasure and dies in it. */
function startAndDieErasing(): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, [CLI, '--config', path, 'start'], {
    stdio: 'ignore',
    env: { ...process.env, [KILL_DURING_ERASURE_ENV]: '1' },
  });
  return new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
}

test('an erasure killed midway (kill -9) is finished by the next start, leaving no residue', async () => {
  for (const user of [alice, bob])
    assert.equal(lethe(['user', 'add', user.toString(), '--password-stdin'], { input: `${PASSWORD}\n` }).status, 0);
  const first = await startCli(path);
  const target = { port: first.port, directTlsPort: first.directTlsPort, domain: 'cli.test' } as TestServer;
  try {
    // alice gets data in several stores: a roster with bob, a vCard.
    const [a, b] = await Promise.all([
      connect(target, 'alice', { password: PASSWORD }),
      connect(target, 'bob', { password: PASSWORD }),
    ]);
    await a.iq(
      xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: bob.toString() }))),
    );
    await a.iq(xml('iq', { type: 'set' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice'))));
    await Promise.all([a.stop(), b.stop()]);

    // The operator's `erase --now` dies after the first category: nothing of the transaction is kept.
    const killed = lethe(['user', 'erase', alice.toString(), '--now', '--reason', 'asked by mail'], {
      env: { [KILL_DURING_ERASURE_ENV]: '1' },
    });
    assert.equal(killed.status, null, `the CLI was killed: ${killed.stdout}${killed.stderr}`);
    // The account is locked, never half-erased and usable.
    await assert.rejects(
      connect(target, 'alice', { password: PASSWORD }),
      /account-disabled - this account is being erased/,
    );
    assert.match(lethe(['user', 'pending']).stdout, /^alice@cli\.test\terasure\t/m);
  } finally {
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
  }

  // A server start dies the same way while resuming it (the start-up sweep): still locked, still pending.
  assert.equal(await startAndDieErasing(), 'SIGKILL');
  assert.match(lethe(['user', 'list']).stdout, /^alice@cli\.test\tlocked\t/m);

  // The next start finishes it.
  const second = await startCli(path);
  try {
    for (let i = 0; i < 200 && /alice/.test(lethe(['user', 'list']).stdout); i++)
      await new Promise((r) => setTimeout(r, 50));
  } finally {
    await second.stop();
  }
  const list = lethe(['user', 'list']).stdout;
  assert.doesNotMatch(list, /alice/);
  assert.match(list, /bob@cli\.test\tactive/);

  const config = loadConfig(path);
  const server = await openServer(config, createLogger({ log: { ...config.log, level: 'silent' } }));
  try {
    const receipt = await erasureReceipt(server, alice);
    assert.ok(receipt, 'one receipt');
    assert.equal(receipt.erased.find((l) => l.category === 'account')?.removed, 1);
    assert.equal(receipt.erased.find((l) => l.category === 'roster')?.removed, 1);
    assert.equal(receipt.erased.find((l) => l.category === 'vcard')?.removed, 1);
    const count = await server.db.get<{ n: number }>('SELECT count(*) AS n FROM erasure_receipts');
    assert.equal(count?.n, 1, 'resumed, not repeated');
    const residue = (await scanForResidue(server.db, server.privacy, alice, addressHash(config, alice))).filter(
      (h) => !h.allowedBecause,
    );
    assert.deepEqual(residue, []);
  } finally {
    await server.close();
  }
  assert.match(
    lethe(['user', 'add', alice.toString(), '--password-stdin'], { input: `${PASSWORD}\n` }).stderr,
    /cannot be registered again/,
  );
});
