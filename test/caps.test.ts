import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capsString, capsVer } from '../src/modules/caps.js';
import { type DiscoInfo, extensionForm } from '../src/modules/disco.js';
import { x } from '../src/xml/element.js';

/** The XEP-0115 §5.1 verification string, checked against the XEP's own worked examples. */

const features = [
  'http://jabber.org/protocol/disco#info',
  'http://jabber.org/protocol/disco#items',
  'http://jabber.org/protocol/muc',
  'http://jabber.org/protocol/caps',
];

test('§5.2 simple generation example', () => {
  const info: DiscoInfo = {
    identities: [{ category: 'client', type: 'pc', name: 'Exodus 0.9.1' }],
    features,
    forms: [],
  };
  assert.equal(
    capsString(info),
    'client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<' +
      'http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<',
  );
  assert.equal(capsVer(info), 'QgayPKawpkPSDYmwT/WM94uAlu0=');
});

test('§5.3 complex generation example: identities in two languages and an extension form', () => {
  // Fields in the XEP's order, which is not the sorted one, and values likewise.
  const form = extensionForm('urn:xmpp:dataforms:softwareinfo', [
    { var: 'os', values: ['Mac'] },
    { var: 'ip_version', type: 'text-multi', values: ['ipv6', 'ipv4'] },
    { var: 'os_version', values: ['10.5.1'] },
    { var: 'software', values: ['Psi'] },
    { var: 'software_version', values: ['0.11'] },
  ]);
  const info: DiscoInfo = {
    identities: [
      { category: 'client', type: 'pc', name: 'Psi 0.11', lang: 'en' },
      { category: 'client', type: 'pc', name: 'Ψ 0.11', lang: 'el' },
    ],
    features: [...features].reverse(),
    forms: [form],
  };
  assert.equal(
    capsString(info),
    'client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<' +
      'http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<' +
      'ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<',
  );
  assert.equal(capsVer(info), 'q07IKJEyjvHSyhy//CH0CxmKi8w=');
});

test('forms are ordered by FORM_TYPE, and a form without one is left out (§5.4)', () => {
  const a = extensionForm('urn:example:a', [{ var: 'f', values: ['1'] }]);
  const b = extensionForm('urn:example:b', [{ var: 'f', values: ['2'] }]);
  const untyped = x('x', { xmlns: 'jabber:x:data', type: 'result' }, x('field', { var: 'g' }, x('value', {}, '3')));
  const info = (forms: DiscoInfo['forms']): DiscoInfo => ({
    identities: [{ category: 'server', type: 'im' }],
    features: [],
    forms,
  });
  assert.equal(capsString(info([b, untyped, a])), 'server/im//<urn:example:a<f<1<urn:example:b<f<2<');
});

test('sorting is by UTF-8 octets (i;octet), not by UTF-16 code units', () => {
  // UTF-16 puts U+1F600 (surrogate D83D) before U+FF21; UTF-8 puts U+FF21 (EF BC A1) before U+1F600 (F0 9F 98 80).
  const info: DiscoInfo = { identities: [], features: ['urn:x:\u{1F600}', 'urn:x:\uFF21'], forms: [] };
  assert.equal(capsString(info), 'urn:x:\uFF21<urn:x:\u{1F600}<');
});
