import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { buildConfig, ConfigError } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import { startLethe } from '../src/lethe.js';
import { adhocCommands } from '../src/modules/adhoc.js';
import { privacyCapabilities } from '../src/privacy/capabilities.js';
import { fetchHttps } from './support/https.js';
import { DOMAIN, startTestServer, type TestServer } from './support/lethe.js';

/** The HTTPS listener: TLS with the server's certificate, routes, 404/405, HEAD, limits, security headers. */

describe('the HTTPS listener', () => {
  let server: TestServer;
  const port = () => server.running.ports.http as number;

  before(async () => {
    server = await startTestServer({ http: { maxBodyBytes: 1024 } });
    const { http } = server.running.server;
    http.route('GET', '/hello/:name', (req) => ({
      status: 200,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: `hello ${req.params.name}`,
    }));
    http.route('POST', '/echo', (req) => ({ status: 200, body: req.body }));
    http.route('GET', '/fail', () => {
      throw new Error('boom');
    });
  });

  after(() => server.stop());

  test('serves a route over TLS with the server certificate and the security headers', async () => {
    const reply = await fetchHttps(port(), '/hello/w%C3%B6rld');
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'hello wörld');
    assert.equal(reply.certificate.subject.CN, DOMAIN);
    assert.equal(reply.headers['cache-control'], 'no-store');
    assert.match(String(reply.headers['content-security-policy']), /default-src 'none'/);
    assert.match(String(reply.headers['content-security-policy']), /frame-ancestors 'none'/);
    assert.equal(reply.headers['x-content-type-options'], 'nosniff');
    assert.equal(reply.headers['referrer-policy'], 'no-referrer');
    // The self-signed certificate must not be pinned by HSTS, and the software is not named.
    assert.equal(reply.headers['strict-transport-security'], undefined);
    assert.equal(reply.headers.server, undefined);
    assert.equal(reply.headers['x-powered-by'], undefined);
  });

  test('HEAD answers like GET without a body', async () => {
    const reply = await fetchHttps(port(), '/hello/you', { method: 'HEAD' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], String(Buffer.byteLength('hello you')));
    assert.equal(reply.body.length, 0);
    assert.equal(reply.headers['cache-control'], 'no-store');
  });

  test('404 for unknown paths, with the same headers', async () => {
    for (const path of ['/', '/nothing', '/hello', '/hello/a/b', '/hello/%E0%A4%A']) {
      const reply = await fetchHttps(port(), path);
      assert.equal(reply.status, 404, path);
      assert.equal(reply.headers['x-content-type-options'], 'nosniff');
      assert.equal(reply.headers['cache-control'], 'no-store');
    }
  });

  test('405 with Allow for a known path and another method', async () => {
    const post = await fetchHttps(port(), '/hello/x', { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const get = await fetchHttps(port(), '/echo');
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    const options = await fetchHttps(port(), '/download/abc', { method: 'OPTIONS' });
    assert.equal(options.status, 405);
  });

  test('request bodies are limited by http.maxBodyBytes', async () => {
    const small = await fetchHttps(port(), '/echo', { method: 'POST', body: 'x'.repeat(1024) });
    assert.equal(small.status, 200);
    assert.equal(small.body.length, 1024);
    const large = await fetchHttps(port(), '/echo', { method: 'POST', body: 'x'.repeat(1025) });
    assert.equal(large.status, 413);
  });

  test('a failing handler gives 500 without details', async () => {
    const reply = await fetchHttps(port(), '/fail');
    assert.equal(reply.status, 500);
    assert.doesNotMatch(reply.body.toString(), /boom/);
  });

  test('links use https://<first domain>:<port> by default', () => {
    assert.equal(server.running.server.http.url('/x'), `https://${DOMAIN}:${port()}/x`);
  });
});

test('http.publicUrl sets the base of links', async () => {
  const server = await startTestServer({ http: { publicUrl: 'https://xmpp.example.org/lethe/' } });
  try {
    assert.equal(server.running.server.http.url('/download/t'), 'https://xmpp.example.org/lethe/download/t');
  } finally {
    await server.stop();
  }
});

test('http.enabled false: no listener, no self-service export', async () => {
  const server = await startTestServer({ http: { enabled: false } });
  try {
    assert.equal(server.running.ports.http, null);
    assert.equal(server.running.server.http.listening, false);
    assert.equal(adhocCommands(server.running.server).get('urn:lethe:privacy:export'), undefined);
    assert.equal(privacyCapabilities(server.running.server).selfServiceExport, false);
  } finally {
    await server.stop();
  }
});

test('configuration errors name the key and the fix', () => {
  const problems = (raw: unknown) => {
    try {
      buildConfig(raw, '/tmp');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.join('\n');
    }
    return '';
  };
  assert.match(problems({ http: { publicUrl: 'http://example.org' } }), /^http\.publicUrl: .*https: URL/);
  assert.match(problems({ http: { port: 5222 } }), /^http\.port: must differ from the client ports/);
  assert.match(problems({ http: { port: 70000 } }), /^http\.port: /);
  assert.equal(problems({ http: { port: 5222, enabled: false } }), '');
});

test('IP addresses are not logged by default', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'lethe-http-log-'));
  const config = buildConfig(
    {
      domain: DOMAIN,
      dataDir: dir,
      c2s: { host: '127.0.0.1', port: 0, directTlsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'debug' },
      auth: { scramIterations: 4096 },
    },
    dir,
  );
  const running = await startLethe(config, createLogger(config, sink));
  try {
    const reply = await fetchHttps(running.ports.http as number, '/download/secret-token');
    assert.equal(reply.status, 404);
    const logged = lines.filter((l) => l.includes('http request'));
    assert.equal(logged.length, 1);
    assert.doesNotMatch(logged[0] as string, /127\.0\.0\.1|secret-token/);
  } finally {
    await running.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
