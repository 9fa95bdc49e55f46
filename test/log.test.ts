import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { buildConfig } from '../src/core/config.js';
import { createLogger, formatIp } from '../src/core/log.js';
import { startLethe } from '../src/lethe.js';
import { DOMAIN } from './support/lethe.js';
import { connect, xml } from './support/xmpp.js';

test('formatIp: none by default, truncated to /24 and /48, or full', () => {
  assert.equal(formatIp('203.0.113.77', 'none'), undefined);
  assert.equal(formatIp('203.0.113.77', 'truncated'), '203.0.113.0/24');
  assert.equal(formatIp('::ffff:203.0.113.77', 'truncated'), '203.0.113.0/24');
  assert.equal(formatIp('2001:db8:abcd:12::1', 'truncated'), '2001:db8:abcd::/48');
  assert.equal(formatIp('2001:db8::1', 'truncated'), '2001:db8:0::/48');
  assert.equal(formatIp('203.0.113.77', 'full'), '203.0.113.77');
});

async function logsOfASession(log: { level: 'info' | 'debug'; ip: 'none' | 'truncated' }): Promise<string> {
  let captured = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      captured += chunk.toString();
      cb();
    },
  });
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dataDir = mkdtempSync(join(tmpdir(), 'lethe-log-'));
  const config = buildConfig(
    {
      domain: DOMAIN,
      dataDir,
      c2s: { host: '127.0.0.1', port: 0, directTlsPort: 0 },
      http: { host: '127.0.0.1', port: 0 },
      auth: { scramIterations: 4096 },
      log,
    },
    dataDir,
  );
  const running = await startLethe(config, createLogger(config, sink));
  await running.server.accounts.create((await import('../src/xml/jid.js')).Jid.parse(`alice@${DOMAIN}`), 'pw');
  const server = {
    running,
    config,
    domain: DOMAIN,
    port: running.ports.starttls,
    directTlsPort: running.ports.directTls as number,
    dataDir,
    addUser: async () => {
      throw new Error('unused');
    },
    stop: () => running.stop(),
  };
  const c = await connect(server, 'alice', { password: 'pw' });
  await c.send(xml('message', { to: c.jid, type: 'chat' }, xml('body', {}, 'secret-body-text')));
  await new Promise((r) => setTimeout(r, 200));
  await c.stop();
  await running.stop();
  return captured;
}

test('at the default level, logs carry no IP address and no message content', async () => {
  const logs = await logsOfASession({ level: 'info', ip: 'none' });
  assert.doesNotMatch(logs, /127\.0\.0\.1/);
  assert.doesNotMatch(logs, /secret-body-text/);
});

test('with log.ip truncated, debug logs show only the /24', async () => {
  const logs = await logsOfASession({ level: 'debug', ip: 'truncated' });
  assert.match(logs, /127\.0\.0\.0\/24/);
  assert.doesNotMatch(logs, /127\.0\.0\.1/);
  assert.doesNotMatch(logs, /secret-body-text/);
});
