import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, startCli, writeConfig } from './cli.js';

/**
 * The harness of the slixmpp end-to-end tests (Debian's python3-slixmpp, run with the system Python):
 * skip loudly when it is missing, a `lethe start` server with users made by `lethe user add`, and a
 * script in test/e2e/ run with a hard time limit, whose last output line is its JSON result.
 */

const PYTHON = '/usr/bin/python3';
export const SLIXMPP_PASSWORD = 'slix secret pass';
export const SLIXMPP_DOMAIN = 'cli.test';

export function e2eScript(name: string): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../../test/e2e', name);
}

/** Skips the test, saying so on the console, when slixmpp cannot be imported; true when skipped. */
export function skipWithoutSlixmpp(t: { skip(message: string): void }): boolean {
  const r = spawnSync(PYTHON, ['-c', 'import slixmpp'], { encoding: 'utf8' });
  if (r.status === 0) return false;
  const missing = `python3-slixmpp is not installed (apt-get install -y python3-slixmpp): ${r.stderr || r.error}`;
  console.warn(`SKIPPED slixmpp end-to-end test: ${missing}`);
  t.skip(missing);
  return true;
}

/** Runs `fn` against a fresh `lethe start` whose accounts `users` have SLIXMPP_PASSWORD; cleans up after. */
export async function withLetheForSlixmpp(users: string[], fn: (port: number) => Promise<void>): Promise<void> {
  const { path, dir } = writeConfig();
  try {
    for (const user of users) {
      const r = runCli(['--config', path, 'user', 'add', `${user}@${SLIXMPP_DOMAIN}`, '--password-stdin'], {
        input: `${SLIXMPP_PASSWORD}\n`,
      });
      assert.equal(r.status, 0, r.stderr);
    }
    const server = await startCli(path);
    try {
      await fn(server.port);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ScriptRun {
  status: number | null;
  stderr: string;
  /** The last line of standard output, the script's JSON result. */
  line: string;
}

/** Runs a test/e2e script without blocking the event loop (the server may be a child too), killed after `timeoutMs`. */
export function runSlixmppScript(name: string, args: string[], timeoutMs: number): Promise<ScriptRun> {
  return new Promise((done) => {
    const child = spawn(PYTHON, [e2eScript(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      done({ status, stderr, line: stdout.trim().split('\n').pop() ?? '' });
    });
  });
}
