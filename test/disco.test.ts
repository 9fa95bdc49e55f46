import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildConfig, ConfigError } from '../src/core/config.js';
import { CAPS_NODE, capsVer } from '../src/modules/caps.js';
import { accountProbes, discoInfo, featuresOf, get, infoOf, type ProbeTarget, probes } from './support/conformance.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { sharePresence } from './support/subscriptions.js';
import { connect, type Element, type TestClient, xml } from './support/xmpp.js';

/** Service discovery (XEP-0030, XEP-0128), entity capabilities (XEP-0115) and contact addresses (XEP-0157). */

const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

async function condition(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { condition: string }).condition;
  }
  return 'no error';
}

function bare(c: TestClient): string {
  return c.jid.split('/')[0] as string;
}

/** The stream features a client sees before and after authenticating, over a raw socket. */
async function streamFeatures(server: TestServer, user: string): Promise<{ before: string; after: string }> {
  const raw = await RawClient.connect(server.port);
  const beforeAuth = await raw.startTls(server.domain);
  await raw.write(
    `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`,
  );
  await raw.waitFor('<success');
  raw.buffer = '';
  const afterAuth = await raw.open(server.domain);
  raw.destroy();
  return { before: beforeAuth, after: afterAuth };
}

/** Runs the probe of every advertised feature; a feature without a probe fails the test. */
async function checkConformance(c: TestClient, target: ProbeTarget, at: string, table: typeof probes): Promise<void> {
  const advertised = featuresOf(await discoInfo(c, at));
  assert.ok(advertised.length > 0);
  for (const feature of advertised) {
    const probe = table[feature];
    assert.ok(probe, `${at} advertises ${feature}, but test/support/conformance.ts has no probe for it`);
    await probe(c, target).catch((err: unknown) => {
      throw new Error(`${at} advertises ${feature}, but a client cannot use it: ${String(err)}`);
    });
  }
}

describe('with the default configuration', () => {
  let server: TestServer;
  let alice: TestClient;
  let bob: TestClient;
  let carol: TestClient;

  before(async () => {
    server = await startTestServer();
    for (const name of ['alice', 'bob', 'carol']) await server.addUser(name);
    [alice, bob, carol] = await Promise.all([
      connect(server, 'alice'),
      connect(server, 'bob'),
      connect(server, 'carol'),
    ]);
    // Bob sees alice's presence; carol is a stranger to her.
    await sharePresence(alice, bob);
  });
  after(async () => {
    await Promise.all([alice, bob, carol].map((c) => c.stop()));
    await server.stop();
  });

  test('the server is a server/im without a name, and lists its modules’ features', async () => {
    const query = await discoInfo(alice, server.domain);
    const identities = query.getChildren('identity');
    assert.equal(identities.length, 1);
    assert.deepEqual(identities[0]?.attrs, { category: 'server', type: 'im' });
    const features = featuresOf(query);
    for (const f of [
      DISCO_INFO,
      DISCO_ITEMS,
      'http://jabber.org/protocol/caps',
      'urn:xmpp:ping',
      'urn:xmpp:time',
      'jabber:iq:last',
      'jabber:iq:roster',
    ])
      assert.ok(features.includes(f), `advertises ${f}`);
    assert.equal(new Set(features).size, features.length, 'no feature twice');
    assert.ok(!features.includes('jabber:iq:version'), 'the software version is not advertised');
    assert.doesNotMatch(query.toString(), /network\/serverinfo/, 'no contact addresses configured, no form');
  });

  test('the server has no items yet, and says so with an empty list', async () => {
    const reply = await get(alice, server.domain, xml('query', { xmlns: DISCO_ITEMS }));
    assert.equal(reply.getChild('query', DISCO_ITEMS)?.children.length, 0);
  });

  test('an unknown node is item-not-found, for info and items', async () => {
    for (const xmlns of [DISCO_INFO, DISCO_ITEMS])
      assert.equal(
        await condition(alice.iq(xml('iq', { type: 'get', to: server.domain }, xml('query', { xmlns, node: 'nope' })))),
        'item-not-found',
        xmlns,
      );
  });

  test('caps: the stream feature appears once authenticated, and its hash is that of disco#info', async () => {
    const { before: beforeAuth, after: afterAuth } = await streamFeatures(server, 'carol');
    assert.doesNotMatch(beforeAuth, /protocol\/caps/, 'no fingerprint before authentication');
    const c = /<c xmlns="http:\/\/jabber.org\/protocol\/caps" hash="sha-1" node="([^"]+)" ver="([^"]+)"\/>/.exec(
      afterAuth,
    );
    assert.ok(c, afterAuth);
    assert.equal(c[1], CAPS_NODE);
    const info = await discoInfo(alice, server.domain);
    assert.equal(c[2], capsVer(infoOf(info)));
    // The caps node answers with the same info, naming the node.
    const byNode = await discoInfo(alice, server.domain, `${CAPS_NODE}#${c[2]}`);
    assert.equal(byNode.attrs.node, `${CAPS_NODE}#${c[2]}`);
    assert.deepEqual(infoOf(byNode), infoOf(info));
    assert.equal(
      await condition(discoInfo(alice, server.domain, `${CAPS_NODE}#AAAAAAAAAAAAAAAAAAAAAAAAAAA=`)),
      'item-not-found',
      'an outdated hash is an unknown node',
    );
  });

  test('an account answers its owner as account/registered', async () => {
    for (const to of [bare(alice), undefined]) {
      const reply = await get(alice, to, xml('query', { xmlns: DISCO_INFO }));
      const query = reply.getChild('query', DISCO_INFO) as Element;
      assert.deepEqual(query.getChild('identity')?.attrs, { category: 'account', type: 'registered' });
      const features = featuresOf(query);
      for (const f of [DISCO_INFO, DISCO_ITEMS, 'urn:xmpp:ping', 'jabber:iq:last']) assert.ok(features.includes(f), f);
    }
    const items = await get(alice, bare(alice), xml('query', { xmlns: DISCO_ITEMS }));
    assert.equal(items.getChild('query', DISCO_ITEMS)?.children.length, 0, 'resources are not listed');
  });

  test('an account answers a contact it shares presence with, without the owner-only ping', async () => {
    const query = await discoInfo(bob, bare(alice));
    assert.equal(query.getChild('identity')?.attrs.type, 'registered');
    const features = featuresOf(query);
    assert.ok(features.includes('jabber:iq:last'));
    assert.ok(!features.includes('urn:xmpp:ping'));
  });

  test('to a stranger, an account and a missing account look the same: service-unavailable, no items', async () => {
    // Alice does not share her presence with bob's contact carol, nor with bob in the other direction.
    for (const [who, to] of [
      [carol, bare(alice)],
      [alice, bare(bob)],
      [carol, `nobody@${server.domain}`],
    ] as const) {
      assert.equal(
        await condition(who.iq(xml('iq', { type: 'get', to }, xml('query', { xmlns: DISCO_INFO })))),
        'service-unavailable',
        `${who.jid} → ${to}`,
      );
      const items = await get(who, to, xml('query', { xmlns: DISCO_ITEMS }));
      assert.equal(items.getChild('query', DISCO_ITEMS)?.children.length, 0);
    }
    assert.equal(
      await condition(
        carol.iq(xml('iq', { type: 'get', to: bare(alice) }, xml('query', { xmlns: DISCO_INFO, node: 'x' }))),
      ),
      'service-unavailable',
      'a node does not get around it',
    );
  });

  test('conformance: every feature the server and an account advertise can be used', async () => {
    const target = { domain: server.domain, self: bare(alice), server };
    await checkConformance(alice, target, server.domain, probes);
    await checkConformance(alice, target, bare(alice), accountProbes);
  });
});

describe('with a name, the version disclosed and contact addresses', () => {
  let server: TestServer;
  let alice: TestClient;

  before(async () => {
    server = await startTestServer({
      disco: { name: 'Example Chat' },
      version: { disclose: true },
      contactAddresses: {
        abuse: ['mailto:abuse@example.org', 'xmpp:abuse@example.org'],
        privacy: ['mailto:dpo@example.org', 'https://example.org/privacy'],
        status: ['https://status.example.org'],
      },
    });
    await server.addUser('alice');
    alice = await connect(server, 'alice');
  });
  after(async () => {
    await alice.stop();
    await server.stop();
  });

  test('the identity carries the configured name', async () => {
    const query = await discoInfo(alice, server.domain);
    assert.deepEqual(query.getChild('identity')?.attrs, { category: 'server', type: 'im', name: 'Example Chat' });
    assert.ok(featuresOf(query).includes('jabber:iq:version'));
  });

  test('XEP-0157: the serverinfo form lists the configured addresses, the privacy contact as x-privacy-addresses', async () => {
    const query = await discoInfo(alice, server.domain);
    const forms = query.getChildren('x', 'jabber:x:data').filter((f) => /network\/serverinfo/.test(f.toString()));
    assert.equal(forms.length, 1);
    const form = forms[0] as Element;
    assert.equal(form.attrs.type, 'result');
    const fields = Object.fromEntries(
      form.getChildren('field').map((f) => [f.attrs.var, f.getChildren('value').map((v) => v.text())]),
    );
    assert.deepEqual(fields, {
      FORM_TYPE: ['http://jabber.org/network/serverinfo'],
      'abuse-addresses': ['mailto:abuse@example.org', 'xmpp:abuse@example.org'],
      'status-addresses': ['https://status.example.org'],
      'x-privacy-addresses': ['mailto:dpo@example.org', 'https://example.org/privacy'],
    });
    assert.equal(form.getChildren('field').find((f) => f.attrs.var === 'FORM_TYPE')?.attrs.type, 'hidden');
  });

  test('caps: the hash covers the extension form', async () => {
    const { after: features } = await streamFeatures(server, 'alice');
    const ver = /ver="([^"]+)"/.exec(features)?.[1];
    const info = infoOf(await discoInfo(alice, server.domain));
    assert.equal(info.forms.length, 2, 'contact addresses and data policy');
    assert.equal(ver, capsVer(info));
  });

  test('conformance: every advertised feature can be used', async () => {
    await checkConformance(alice, { domain: server.domain, self: bare(alice), server }, server.domain, probes);
  });
});

test('contact addresses must be xmpp:, mailto: or https: URIs', () => {
  const check = (addresses: Record<string, string[]>) => () => buildConfig({ contactAddresses: addresses }, '/tmp');
  check({ abuse: ['xmpp:abuse@example.org?message'], privacy: ['mailto:dpo@example.org', 'https://example.org/p'] })();
  for (const bad of ['abuse@example.org', 'http://example.org/', 'mailto:nobody', 'xmpp:a@b@c', 'javascript:alert(1)'])
    assert.throws(
      check({ privacy: [bad] }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => p.startsWith('contactAddresses.privacy.0')),
      bad,
    );
});

/**
 * XEP-0479 (Compliance Suites 2023): the server-side rows of the Core, IM and Mobile suites, Advanced
 * Server, that this build covers. Each must be discoverable where a client looks for it and usable.
 * Not covered yet, each a later piece of work: XEP-0114 components, XEP-0163 PEP, XEP-0045 group chat,
 * XEP-0313 archive, XEP-0363 upload, XEP-0357 push, XEP-0223/0402 bookmarks, XEP-0398 avatar conversion.
 */
describe('XEP-0479 compliance (the parts this build covers)', () => {
  let server: TestServer;
  let alice: TestClient;

  before(async () => {
    server = await startTestServer({ register: { enabled: true } });
    await server.addUser('alice');
    // Core, Advanced Server: XEP-0368 means accepting direct TLS connections.
    alice = await connect(server, 'alice', { transport: 'direct' });
  });
  after(async () => {
    await alice.stop();
    await server.stop();
  });

  test('server features are in disco#info and each can be used', async () => {
    const features = featuresOf(await discoInfo(alice, server.domain));
    const required: [string, string][] = [
      [DISCO_INFO, 'XEP-0030 feature discovery'],
      [DISCO_ITEMS, 'XEP-0030 feature discovery'],
      ['http://jabber.org/protocol/caps', 'XEP-0115 feature broadcasts'],
      ['vcard-temp', 'XEP-0054 vcard-temp'],
      ['urn:xmpp:carbons:2', 'XEP-0280 outbound message synchronization'],
      ['urn:xmpp:blocking', 'XEP-0191 user blocking'],
      ['jabber:iq:private', 'XEP-0049 private XML storage'],
      ['jabber:iq:register', 'XEP-0077 (of note for public IM networks)'],
      ['msgoffline', 'XEP-0160 offline messages (RFC 6121 core)'],
    ];
    for (const [feature, row] of required) assert.ok(features.includes(feature), `${row}: ${feature} advertised`);
    await checkConformance(alice, { domain: server.domain, self: bare(alice), server }, server.domain, probes);
  });

  test('stream features: stream management, client state indication, caps, registration', async () => {
    const { before: beforeAuth, after: afterAuth } = await streamFeatures(server, 'alice');
    assert.match(beforeAuth, /<register xmlns=["']http:\/\/jabber.org\/features\/iq-register["']/, 'XEP-0077');
    assert.match(afterAuth, /<sm xmlns=["']urn:xmpp:sm:3["']/, 'XEP-0198 stream management');
    assert.match(afterAuth, /<csi xmlns=["']urn:xmpp:csi:0["']/, 'XEP-0352 client state indication');
    assert.match(afterAuth, /<c xmlns=["']http:\/\/jabber.org\/protocol\/caps["']/, 'XEP-0115 caps in stream features');
  });
});
