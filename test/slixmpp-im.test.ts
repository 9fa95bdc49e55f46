import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli, startCli, writeConfig } from './support/cli.js';

/**
 * slixmpp (Debian's python3-slixmpp) for everyday IM against `lethe start`: carbons between two
 * resources of one user, vCard set and get, and offline delivery with a delay stamp after reconnecting.
 */
const PYTHON = '/usr/bin/python3';
const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/e2e/slixmpp_im.py');

function slixmppMissing(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import slixmpp'], { encoding: 'utf8' });
  return r.status === 0
    ? undefined
    : `python3-slixmpp is not installed (apt-get install -y python3-slixmpp): ${r.stderr || r.error}`;
}

/** Runs the script without blocking the event loop, with a hard limit. */
function run(args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

test('slixmpp: carbons between two resources, vCard set and get, offline delivery after reconnecting', async (t) => {
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
    const before = Date.now();
    const r = await run(
      [SCRIPT, '--port', String(server.port), '--domain', 'cli.test', '--password', password, '--timeout', '60'],
      90_000,
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
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
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
