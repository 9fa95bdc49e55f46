import assert from 'node:assert/strict';
import { CAPS_NODE, capsVer } from '../../src/modules/caps.js';
import type { DiscoInfo } from '../../src/modules/disco.js';
import { XmlElement } from '../../src/xml/element.js';
import type { TestServer } from './lethe.js';
import { connect, type Element, type TestClient, xml } from './xmpp.js';

/**
 * Conformance: every feature the server advertises in disco#info must be usable by a client. Each
 * feature has a probe here that makes one real request the way a client would and fails unless the
 * answer is a result. A module that advertises a feature adds its probe here; the conformance test
 * fails for an advertised feature without one.
 */

export interface ProbeTarget {
  /** The server's domain, where server features are asked for. */
  domain: string;
  /** The client's own bare JID, where account features are asked for. */
  self: string;
  /** For probes that need a second party (a fresh account to write to). */
  server: TestServer;
}

export type Probe = (c: TestClient, target: ProbeTarget) => Promise<void>;

const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

export async function get(c: TestClient, to: string | undefined, payload: Element): Promise<Element> {
  const reply = await c.iq(xml('iq', { type: 'get', to }, payload));
  assert.equal(reply.attrs.type, 'result', `a result for ${payload.toString()}`);
  return reply;
}

export async function discoInfo(c: TestClient, to: string, node?: string): Promise<Element> {
  const reply = await get(c, to, xml('query', { xmlns: DISCO_INFO, node }));
  return reply.getChild('query', DISCO_INFO) as Element;
}

export function featuresOf(query: Element): string[] {
  return query.getChildren('feature').map((f) => f.attrs.var as string);
}

/** Converts an xmpp.js element into ours (for hashing what a client received). */
function ours(el: Element): XmlElement {
  const copy = new XmlElement(el.name, { ...el.attrs });
  for (const child of el.children) copy.append(typeof child === 'string' ? child : ours(child));
  return copy;
}

/** What a client hashes for XEP-0115: the disco#info result as it arrived. */
export function infoOf(query: Element): DiscoInfo {
  return {
    identities: query.getChildren('identity').map((i) => ({
      category: i.attrs.category as string,
      type: i.attrs.type as string,
      name: i.attrs.name,
      lang: i.attrs['xml:lang'],
    })),
    features: featuresOf(query),
    forms: query.getChildren('x', 'jabber:x:data').map(ours),
  };
}

export const probes: Record<string, Probe> = {
  [DISCO_INFO]: async (c, { domain }) => {
    await discoInfo(c, domain);
  },
  [DISCO_ITEMS]: async (c, { domain }) => {
    await get(c, domain, xml('query', { xmlns: DISCO_ITEMS }));
  },
  // A client checks the hash of what disco#info returns, then may ask for the caps node.
  'http://jabber.org/protocol/caps': async (c, { domain }) => {
    const ver = capsVer(infoOf(await discoInfo(c, domain)));
    await discoInfo(c, domain, `${CAPS_NODE}#${ver}`);
  },
  'urn:xmpp:ping': async (c, { domain }) => {
    await get(c, domain, xml('ping', { xmlns: 'urn:xmpp:ping' }));
  },
  'urn:xmpp:time': async (c, { domain }) => {
    const reply = await get(c, domain, xml('time', { xmlns: 'urn:xmpp:time' }));
    assert.ok(reply.getChild('time', 'urn:xmpp:time')?.getChildText('utc'));
  },
  'jabber:iq:version': async (c, { domain }) => {
    const reply = await get(c, domain, xml('query', { xmlns: 'jabber:iq:version' }));
    assert.ok(reply.getChild('query', 'jabber:iq:version')?.getChildText('version'));
  },
  'jabber:iq:last': async (c, { domain }) => {
    const reply = await get(c, domain, xml('query', { xmlns: 'jabber:iq:last' }));
    assert.match(reply.getChild('query', 'jabber:iq:last')?.attrs.seconds ?? '', /^\d+$/);
  },
  'jabber:iq:roster': async (c) => {
    await get(c, undefined, xml('query', { xmlns: 'jabber:iq:roster' }));
  },
  'vcard-temp': async (c) => {
    await get(c, undefined, xml('vCard', { xmlns: 'vcard-temp' }));
  },
  'urn:xmpp:blocking': async (c) => {
    await get(c, undefined, xml('blocklist', { xmlns: 'urn:xmpp:blocking' }));
  },
  'urn:xmpp:carbons:2': async (c) => {
    const reply = await c.iq(xml('iq', { type: 'set' }, xml('enable', { xmlns: 'urn:xmpp:carbons:2' })));
    assert.equal(reply.attrs.type, 'result');
  },
  'jabber:iq:register': async (c, { domain }) => {
    await get(c, domain, xml('query', { xmlns: 'jabber:iq:register' }));
  },
  // XEP-0160: a message to an account with no session is stored and arrives when it logs in.
  msgoffline: async (c, { domain, server }) => {
    const name = `offline-probe-${Math.random().toString(36).slice(2)}`;
    const to = (await server.addUser(name)).toString();
    const id = `offline-probe-${Math.random()}`;
    await c.send(xml('message', { to, id, type: 'chat' }, xml('body', {}, 'stored')));
    // Elements of one stream are handled in order, so after this answer the message has been stored.
    await get(c, domain, xml('ping', { xmlns: 'urn:xmpp:ping' }));
    const recipient = await connect(server, name);
    try {
      await recipient.waitFor((el) => el.is('message') && el.attrs.id === id, 5000, 'the stored message');
    } finally {
      await recipient.stop();
    }
  },
  // XEP-0050: the commands a user may run are the items of the commands node; the privacy summary runs in one step.
  'http://jabber.org/protocol/commands': async (c, { domain }) => {
    const NS_COMMANDS = 'http://jabber.org/protocol/commands';
    const list = await get(c, domain, xml('query', { xmlns: DISCO_ITEMS, node: NS_COMMANDS }));
    const nodes = list
      .getChild('query', DISCO_ITEMS)
      ?.getChildren('item')
      .map((i) => i.attrs.node);
    assert.ok(nodes?.includes('urn:lethe:privacy:summary'), 'the privacy summary is listed');
    const reply = await c.iq(
      xml('iq', { type: 'set', to: domain }, xml('command', { xmlns: NS_COMMANDS, node: 'urn:lethe:privacy:summary' })),
    );
    assert.equal(reply.getChild('command', NS_COMMANDS)?.attrs.status, 'completed');
  },
  // urn:xmpp:tos:0: the terms command runs (with no terms published, it says so and accepts nothing).
  'urn:xmpp:tos:0': async (c, { domain }) => {
    const NS_COMMANDS = 'http://jabber.org/protocol/commands';
    const reply = await c.iq(
      xml('iq', { type: 'set', to: domain }, xml('command', { xmlns: NS_COMMANDS, node: 'urn:xmpp:tos:0' })),
    );
    const form = reply.getChild('command', NS_COMMANDS)?.getChild('x', 'jabber:x:data');
    assert.ok(
      form
        ?.getChildren('field')
        .some((f) => f.attrs.var === 'FORM_TYPE' && f.getChildText('value') === 'urn:xmpp:tos:0'),
    );
  },
  'jabber:iq:private': async (c) => {
    await get(
      c,
      undefined,
      xml('query', { xmlns: 'jabber:iq:private' }, xml('storage', { xmlns: 'storage:bookmarks' })),
    );
  },
};

/** Account features, asked at the user's own bare JID: the same namespaces, sent to the account. */
export const accountProbes: Record<string, Probe> = {
  [DISCO_INFO]: async (c, { self }) => {
    await discoInfo(c, self);
  },
  [DISCO_ITEMS]: async (c, { self }) => {
    await get(c, self, xml('query', { xmlns: DISCO_ITEMS }));
  },
  'urn:xmpp:ping': async (c, { self }) => {
    await get(c, self, xml('ping', { xmlns: 'urn:xmpp:ping' }));
  },
  'jabber:iq:last': async (c, { self }) => {
    await get(c, self, xml('query', { xmlns: 'jabber:iq:last' }));
  },
  // A message to the account comes back with the account's stanza-id (XEP-0359 §8).
  'urn:xmpp:sid:0': async (c, { self }) => {
    const id = `sid-probe-${Math.random()}`;
    await c.send(xml('message', { to: self, id, type: 'chat' }, xml('body', {}, 'probe')));
    const echo = await c.waitFor((el) => el.is('message') && el.attrs.id === id, 5000, 'the probe message');
    assert.ok(echo.getChildren('stanza-id', 'urn:xmpp:sid:0').some((s) => s.attrs.by === self));
  },
  // XEP-0313: a query of one's own archive ends with the iq result carrying <fin/>.
  'urn:xmpp:mam:2': async (c) => {
    const reply = await c.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: 'urn:xmpp:mam:2', queryid: 'probe' })));
    assert.ok(reply.getChild('fin', 'urn:xmpp:mam:2')?.getChild('set', 'http://jabber.org/protocol/rsm'));
  },
  // #extended: archive metadata, and a flipped last page.
  'urn:xmpp:mam:2#extended': async (c) => {
    await get(c, undefined, xml('metadata', { xmlns: 'urn:xmpp:mam:2' }));
    const query = xml(
      'query',
      { xmlns: 'urn:xmpp:mam:2' },
      xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('max', {}, '5'), xml('before')),
      xml('flip-page'),
    );
    assert.equal((await c.iq(xml('iq', { type: 'set' }, query))).attrs.type, 'result');
  },
  // urn:xmpp:mamtrim:0: an empty <trim/> empties the prober's own archive.
  'urn:xmpp:mamtrim:0': async (c) => {
    const reply = await c.iq(xml('iq', { type: 'set' }, xml('trim', { xmlns: 'urn:xmpp:mamtrim:0' })));
    assert.equal(reply.attrs.type, 'result');
  },
};
