import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { detachedXml, parseFragments } from '../src/xml/fragment.js';
import { StreamParser } from '../src/xml/parser.js';

/** How modules store payloads as XML text: detached from the stanza, and parsed back. */

function firstStanza(xml: string): XmlElement {
  const parser = new StreamParser({ maxStanzaBytes: 65536, maxDepth: 16, maxAttributes: 32 });
  let stanza: XmlElement | undefined;
  parser.on('stanza', (el) => {
    stanza ??= el;
  });
  parser.write(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>${xml}`);
  assert.ok(stanza, 'a stanza');
  return stanza;
}

test('a payload keeps the namespaces it inherits from the stanza', () => {
  const iq = firstStanza(
    `<iq type='set' id='1' xmlns:v='vcard-temp'><v:vCard><v:FN>a &amp; &lt;b&gt;</v:FN><NOTE k='&quot;'>n</NOTE></v:vCard></iq>`,
  );
  const text = detachedXml(iq.elements()[0] as XmlElement);
  assert.equal(
    text,
    '<v:vCard xmlns:v="vcard-temp" xmlns="jabber:client"><v:FN>a &amp; &lt;b&gt;</v:FN><NOTE k="&quot;">n</NOTE></v:vCard>',
  );
  const [back] = parseFragments(text);
  assert.equal(back?.xmlns, 'vcard-temp');
  assert.equal(back?.getChild('NOTE')?.xmlns, 'jabber:client');
  assert.equal(back?.toString(), text);
});

test('several stored elements parse back in order; broken text is an error', () => {
  const els = parseFragments('<a xmlns="urn:x">1</a> <b xmlns="urn:x"/>');
  assert.deepEqual(
    els.map((e) => e.toString()),
    ['<a xmlns="urn:x">1</a>', '<b xmlns="urn:x"/>'],
  );
  assert.throws(() => parseFragments('<a xmlns="urn:x">'), /does not parse/);
});
