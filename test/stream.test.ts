import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { connect, xml } from './support/xmpp.js';

/** RFC 6120 stream handling and XML safety, driven over real sockets by a raw client and by xmpp.js. */

const plainAuth = (user: string, password = PASSWORD) =>
  `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`;

/** A raw client that is authenticated (PLAIN over TLS) and bound to `resource`. */
async function boundRaw(server: TestServer, user: string, resource: string): Promise<RawClient> {
  const raw = await RawClient.connect(server.port);
  await raw.startTls(server.domain);
  await raw.write(plainAuth(user));
  await raw.waitFor('<success');
  raw.buffer = '';
  await raw.open(server.domain);
  await raw.write(
    `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`,
  );
  await raw.waitFor(/<iq[^>]*id="b1"[^>]*>.*?<\/iq>/);
  return raw;
}

async function stillServes(server: TestServer): Promise<void> {
  const c = await connect(server, 'alice', { resource: `check-${Math.random()}` });
  // Any answer proves the server is alive; an unknown namespace gets service-unavailable.
  await assert.rejects(
    c.iq(xml('iq', { type: 'get', to: server.domain }, xml('query', { xmlns: 'urn:example:nothing' }))),
    /service-unavailable/,
  );
  await c.stop();
}

describe('streams with TLS required (the default)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await server.addUser('alice');
  });
  after(() => server.stop());

  test('before TLS only STARTTLS is offered, and it is required', async () => {
    const raw = await RawClient.connect(server.port);
    const features = await raw.open(server.domain);
    assert.match(features, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
    assert.doesNotMatch(features, /mechanisms/);
    await raw.write(plainAuth('alice'));
    await raw.waitFor(/<failure[^>]*><encryption-required\/>/);
    raw.destroy();
  });

  test('over TLS the SCRAM family, -PLUS variants with channel binding types, and PLAIN are offered', async () => {
    const raw = await RawClient.connect(server.port);
    const features = await raw.startTls(server.domain);
    const mechanisms = [...features.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]);
    assert.deepEqual(mechanisms, ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
    assert.equal(raw.tlsSocket?.getProtocol(), 'TLSv1.3');
    assert.match(features, /<sasl-channel-binding xmlns="urn:xmpp:sasl-cb:0"><channel-binding type="tls-exporter"\/>/);
    raw.destroy();
  });

  test('plaintext sent after <starttls/> in the same packet is ignored, not run inside TLS', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.open(server.domain);
    await raw.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>${plainAuth('alice')}`);
    await raw.waitFor('<proceed');
    const features = await raw.upgrade(server.domain);
    assert.match(features, /<mechanism>PLAIN<\/mechanism>/);
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(raw.buffer, /<success|<failure/, 'the injected auth was not processed');
    raw.destroy();
  });

  test('direct TLS (XEP-0368) offers SASL at once', async () => {
    const raw = await RawClient.connect(server.directTlsPort, { tls: true });
    const features = await raw.open(server.domain);
    assert.doesNotMatch(features, /starttls/);
    assert.match(features, /<mechanism>SCRAM-SHA-256<\/mechanism>/);
    raw.destroy();
    const c = await connect(server, 'alice', { transport: 'direct' });
    assert.match(c.jid, /^alice@lethe\.test\//);
    await c.stop();
  });

  test('a wrong password fails with not-authorized and the stream stays usable', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    await raw.write(plainAuth('alice', 'wrong'));
    await raw.waitFor(/<failure[^>]*><not-authorized\/>/);
    await raw.write(plainAuth('alice'));
    await raw.waitFor('<success');
    raw.destroy();
  });

  test('three failed attempts close the stream', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    for (let i = 0; i < 3; i++) await raw.write(plainAuth('alice', `wrong${i}`));
    await raw.waitFor(/<policy-violation/);
    await raw.waitClosed();
  });

  test('an unknown host gets host-unknown, a wrong namespace invalid-namespace', async () => {
    const a = await RawClient.connect(server.port);
    await a.write(
      `<stream:stream to='elsewhere.example' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    await a.waitFor(/<stream:error><host-unknown xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await a.waitClosed();
    const b = await RawClient.connect(server.port);
    await b.write(
      `<stream:stream to='${server.domain}' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    await b.waitFor(/<invalid-namespace/);
    await b.waitClosed();
  });

  test('stanzas before authentication get not-authorized', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.open(server.domain);
    await raw.write(`<message to='alice@${server.domain}'><body>hi</body></message>`);
    await raw.waitFor(/<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await raw.waitClosed();
  });

  test('malformed XML closes that stream with not-well-formed; others are unaffected', async () => {
    const raw = await boundRaw(server, 'alice', 'broken');
    await raw.write(`<message><body>unclosed</bodyy></message>`);
    await raw.waitFor(/<not-well-formed xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await raw.waitFor('</stream:stream>');
    await raw.waitClosed();
    await stillServes(server);
  });

  test('a DTD ("billion laughs") is refused at once with restricted-xml and memory stays flat', async () => {
    const laughs = [
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">`,
      ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`),
      `]><stream:stream to='${server.domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message>&lol9;</message>`,
    ].join('');
    global.gc?.();
    const before = process.memoryUsage().rss;
    const started = Date.now();
    const raw = await RawClient.connect(server.port);
    await raw.write(laughs);
    await raw.waitFor(/<restricted-xml xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/, 2000);
    await raw.waitClosed(2000);
    assert.ok(Date.now() - started < 2000, 'refused promptly');
    const grown = process.memoryUsage().rss - before;
    assert.ok(grown < 50 * 1024 * 1024, `memory grew by ${grown} bytes`);
    await stillServes(server);
  });

  test('comments, processing instructions and undeclared entities are restricted-xml', async () => {
    for (const bad of [
      `<!-- hello --><message/>`,
      `<?php echo 1; ?><message/>`,
      `<message><body>&custom;</body></message>`,
    ]) {
      const raw = await boundRaw(server, 'alice', `r${Math.random()}`);
      await raw.write(bad);
      await raw.waitFor(/<(restricted-xml|not-well-formed) xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
      await raw.waitClosed();
    }
  });

  test('an oversized stanza is refused with policy-violation before it has been sent whole', async () => {
    const raw = await boundRaw(server, 'alice', 'big');
    await raw.write(`<message to='alice@${server.domain}'><body>`);
    const chunk = 'a'.repeat(64 * 1024);
    let sent = 0;
    // 10 MiB would be sent if the server buffered the stanza whole; it must cut us off long before.
    while (sent < 10 * 1024 * 1024 && !raw.buffer.includes('policy-violation')) {
      if (!(await raw.write(chunk))) break;
      sent += chunk.length;
    }
    await raw.waitFor(/<policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    assert.ok(sent < 2 * 1024 * 1024, `server read ${sent} bytes before refusing`);
    await raw.waitClosed();
    await stillServes(server);
  });

  test('an unknown top-level element after binding gets unsupported-stanza-type', async () => {
    const raw = await boundRaw(server, 'alice', 'odd');
    await raw.write(`<frobnicate xmlns='urn:example:unknown'/>`);
    await raw.waitFor(/<unsupported-stanza-type xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await raw.waitClosed();
  });

  test('whitespace keepalives are accepted and a clean close is answered with a close', async () => {
    const raw = await boundRaw(server, 'alice', 'ws');
    await raw.write('   \n  ');
    await raw.write(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`);
    await raw.waitFor(/id="r1"/);
    await raw.write('</stream:stream>');
    await raw.waitFor('</stream:stream>');
    await raw.waitClosed();
  });

  test('binding a resource that is in use closes the old session with conflict (kick-old)', async () => {
    const first = await boundRaw(server, 'alice', 'same');
    const second = await boundRaw(server, 'alice', 'same');
    await first.waitFor(/<conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await first.waitClosed();
    assert.match(second.buffer, /<jid>alice@lethe\.test\/same<\/jid>/);
    second.destroy();
  });

  test('an empty resource gets a server-generated one', async () => {
    const c = await connect(server, 'alice');
    assert.match(c.jid, /^alice@lethe\.test\/lethe-[0-9a-f]{12}$/);
    await c.stop();
  });

  test('a from address that is not the client’s own closes the stream with invalid-from', async () => {
    const raw = await boundRaw(server, 'alice', 'spoof');
    await raw.write(`<iq type='get' id='s0' from='alice@${server.domain}'><query xmlns='jabber:iq:roster'/></iq>`);
    await raw.waitFor(/id="s0"/);
    await raw.write(`<iq type='get' id='s1' from='bob@${server.domain}/x'><query xmlns='jabber:iq:roster'/></iq>`);
    await raw.waitFor(/<invalid-from xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await raw.waitClosed();
  });
});

describe('stream timeouts and policies', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ c2s: { authTimeout: 1, resourceConflict: 'refuse' } });
    await server.addUser('alice');
  });
  after(() => server.stop());

  test('a connection that does not authenticate in time is closed with connection-timeout', async () => {
    const raw = await RawClient.connect(server.port);
    await raw.open(server.domain);
    await raw.waitFor(/<connection-timeout xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/, 8000);
    await raw.waitClosed();
  });

  test('resourceConflict: refuse answers the new binding with conflict', async () => {
    const first = await boundRaw(server, 'alice', 'mine');
    const raw = await RawClient.connect(server.port);
    await raw.startTls(server.domain);
    await raw.write(plainAuth('alice'));
    await raw.waitFor('<success');
    raw.buffer = '';
    await raw.open(server.domain);
    await raw.write(
      `<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>mine</resource></bind></iq>`,
    );
    await raw.waitFor(/<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
    assert.equal(first.closed, false);
    first.destroy();
    raw.destroy();
  });
});

describe('streams with TLS not required (loopback test setting)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ c2s: { requireEncryption: false } });
    await server.addUser('alice');
  });
  after(() => server.stop());

  test('PLAIN is neither offered nor accepted without TLS; SCRAM is', async () => {
    const raw = await RawClient.connect(server.port);
    const features = await raw.open(server.domain);
    assert.match(features, /<mechanism>SCRAM-SHA-1<\/mechanism>/);
    assert.doesNotMatch(features, /PLAIN|-PLUS/);
    await raw.write(plainAuth('alice'));
    await raw.waitFor(/<failure[^>]*><encryption-required\/>/);
    raw.destroy();
  });
});
