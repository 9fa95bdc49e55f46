import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidJid, Jid, JidError } from '../src/xml/jid.js';

describe('Jid.parse: valid JIDs', () => {
  // input, local, domain, resource, toString()
  const valid: [string, string, string, string, string][] = [
    ['example.com', '', 'example.com', '', 'example.com'],
    ['juliet@example.com', 'juliet', 'example.com', '', 'juliet@example.com'],
    ['juliet@example.com/foo', 'juliet', 'example.com', 'foo', 'juliet@example.com/foo'],
    ['example.com/foo', '', 'example.com', 'foo', 'example.com/foo'],
    ['localhost', '', 'localhost', '', 'localhost'],
    ['Juliet@Example.COM/Balcony', 'juliet', 'example.com', 'Balcony', 'juliet@example.com/Balcony'],
    ['juliet@example.com./r', 'juliet', 'example.com', 'r', 'juliet@example.com/r'],
    ['juliet@example.com/foo bar', 'juliet', 'example.com', 'foo bar', 'juliet@example.com/foo bar'],
    ['juliet@example.com/foo@bar', 'juliet', 'example.com', 'foo@bar', 'juliet@example.com/foo@bar'],
    ['juliet@example.com/a/b/c', 'juliet', 'example.com', 'a/b/c', 'juliet@example.com/a/b/c'],
    ['example.com/a@b', '', 'example.com', 'a@b', 'example.com/a@b'],
    ['foo\\20bar@example.com', 'foo\\20bar', 'example.com', '', 'foo\\20bar@example.com'],
    ['user+tag.x_y-z@example.com', 'user+tag.x_y-z', 'example.com', '', 'user+tag.x_y-z@example.com'],
    ['\u00e9l\u00e8ve@\u00e9cole.fr', '\u00e9l\u00e8ve', 'xn--cole-9oa.fr', '', '\u00e9l\u00e8ve@xn--cole-9oa.fr'],
    ['\u00c9L\u00c8VE@example.com', '\u00e9l\u00e8ve', 'example.com', '', '\u00e9l\u00e8ve@example.com'],
    ['\u0440\u0438\u043c@example.com', '\u0440\u0438\u043c', 'example.com', '', '\u0440\u0438\u043c@example.com'],
    [
      '\u5c0f\u660e@example.com/\u624b\u673a',
      '\u5c0f\u660e',
      'example.com',
      '\u624b\u673a',
      '\u5c0f\u660e@example.com/\u624b\u673a',
    ],
    ['a@m\u00fcnchen.de', 'a', 'xn--mnchen-3ya.de', '', 'a@xn--mnchen-3ya.de'],
    ['a@XN--MNCHEN-3YA.DE', 'a', 'xn--mnchen-3ya.de', '', 'a@xn--mnchen-3ya.de'],
    ['a@127.0.0.1', 'a', '127.0.0.1', '', 'a@127.0.0.1'],
    ['a@[::1]/r', 'a', '[::1]', 'r', 'a@[::1]/r'],
    ['a@[2001:DB8::1]', 'a', '[2001:db8::1]', '', 'a@[2001:db8::1]'],
    ['a@b', 'a', 'b', '', 'a@b'],
    ['a@x-y.example', 'a', 'x-y.example', '', 'a@x-y.example'],
    ['a@example.com/\u{1F600}', 'a', 'example.com', '\u{1F600}', 'a@example.com/\u{1F600}'],
  ];
  for (const [input, local, domain, resource, str] of valid) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const jid = Jid.parse(input);
      assert.equal(jid.local, local);
      assert.equal(jid.domain, domain);
      assert.equal(jid.resource, resource);
      assert.equal(jid.toString(), str);
      assert.ok(isValidJid(input));
      assert.ok(Jid.parse(str).equals(jid), 'the string form parses to the same JID');
    });
  }
});

describe('Jid.parse: invalid JIDs', () => {
  const invalid: [string, string][] = [
    ['', 'empty'],
    ['@example.com', 'empty localpart'],
    ['a@', 'empty domain'],
    ['a@/r', 'empty domain with resource'],
    ['example.com/', 'empty resource'],
    ['a@example.com/', 'empty resource'],
    ['/r', 'empty domain'],
    ['a@b@example.com', '@ in domain'],
    ['a"b@example.com', 'double quote in localpart'],
    ['a&b@example.com', 'ampersand in localpart'],
    ["a'b@example.com", 'apostrophe in localpart'],
    ['a:b@example.com', 'colon in localpart'],
    ['a<b@example.com', '< in localpart'],
    ['a>b@example.com', '> in localpart'],
    ['a b@example.com', 'space in localpart'],
    ['a\tb@example.com', 'tab in localpart'],
    ['a\u0000b@example.com', 'NUL in localpart'],
    ['a\u007fb@example.com', 'DEL in localpart'],
    ['a\u0085b@example.com', 'C1 control in localpart'],
    ['a\u00a0b@example.com', 'no-break space in localpart'],
    ['\u2603@example.com', 'symbol in localpart'],
    ['\ufb01@example.com', 'compatibility ligature in localpart'],
    ['a\ud800@example.com', 'lone high surrogate in localpart'],
    ['a\udc00@example.com', 'lone low surrogate in localpart'],
    ['a@example.com/\u0007', 'control character in resource'],
    ['a@example.com/x\u0000', 'NUL in resource'],
    ['a@example.com/\ud800', 'lone surrogate in resource'],
    ['a@example.com/\u0378', 'unassigned code point in resource'],
    ['a@exa mple.com', 'space in domain'],
    ['a@exa_mple.com', 'underscore in domain'],
    ['a@example..com', 'empty label'],
    ['a@.example.com', 'empty first label'],
    ['a@.', 'only a dot'],
    ['a@example.com..', 'two trailing dots'],
    ['a@-example.com', 'leading hyphen'],
    ['a@example-.com', 'trailing hyphen'],
    [`a@${'x'.repeat(64)}.com`, 'label over 63'],
    ['a@xn--zz.com', 'invalid punycode'],
    ['a@1.2.3', 'numeric but not IPv4'],
    ['a@256.1.1.1', 'IPv4 octet over 255'],
    ['a@01.2.3.4', 'IPv4 octet with leading zero'],
    ['a@[::1', 'unterminated IPv6 literal'],
    ['a@[example.com]', 'not an IPv6 literal'],
    ['a@[1.2.3.4]', 'IPv4 in brackets'],
    ['a@exam\u0000ple.com', 'NUL in domain'],
    ['a@ex\ud800ample.com', 'lone surrogate in domain'],
  ];
  for (const [input, why] of invalid) {
    it(`refuses ${JSON.stringify(input)} (${why})`, () => {
      assert.throws(() => Jid.parse(input), JidError);
      assert.equal(Jid.tryParse(input), undefined);
      assert.equal(isValidJid(input), false);
    });
  }

  it('gives clear messages', () => {
    assert.throws(() => Jid.parse('@example.com'), /empty localpart/);
    assert.throws(() => Jid.parse('a@example.com/'), /empty resourcepart/);
    assert.throws(() => Jid.parse('a@'), /empty domainpart/);
    assert.throws(() => Jid.parse('a<b@example.com'), /localpart contains a forbidden character/);
  });

  it('returns undefined from tryParse for undefined', () => {
    assert.equal(Jid.tryParse(undefined), undefined);
  });
});

describe('Jid: hostile input', () => {
  it('enforces 1023 bytes per part, in UTF-8', () => {
    assert.ok(isValidJid(`${'a'.repeat(1023)}@example.com/${'r'.repeat(1023)}`));
    assert.equal(isValidJid(`${'a'.repeat(1024)}@example.com`), false);
    assert.equal(isValidJid(`a@example.com/${'r'.repeat(1024)}`), false);
    // 512 two-byte characters: 1024 bytes, 512 UTF-16 units.
    assert.equal(isValidJid(`${'\u00e9'.repeat(512)}@example.com`), false);
    assert.ok(isValidJid(`${'\u00e9'.repeat(511)}@example.com`));
    assert.equal(isValidJid(`a@example.com/${'\u00e9'.repeat(512)}`), false);
    const longDomain = `${'abcdefghi.'.repeat(103)}com`;
    assert.equal(isValidJid(`a@${longDomain}`), false);
  });

  it('refuses huge strings quickly', () => {
    const huge = 'a'.repeat(10_000_000);
    const started = performance.now();
    for (const s of [huge, `${huge}@x`, `x@${huge}`, `x@y/${huge}`, `\u00e9${huge}@x`, `x@\u00fc${huge}`]) {
      assert.equal(isValidJid(s), false);
    }
    assert.ok(performance.now() - started < 2000);
  });

  it('refuses control characters anywhere', () => {
    for (let c = 0; c < 0x20; c++) {
      const ch = String.fromCharCode(c);
      assert.equal(isValidJid(`a${ch}@example.com`), false, `localpart U+${c.toString(16)}`);
      assert.equal(isValidJid(`a@example${ch}.com`), false, `domain U+${c.toString(16)}`);
      assert.equal(isValidJid(`a@example.com/r${ch}`), false, `resource U+${c.toString(16)}`);
    }
  });

  it('rejects non-string input to parse', () => {
    assert.throws(() => Jid.parse(undefined as unknown as string), JidError);
  });
});

describe('Jid: normalisation', () => {
  it('applies NFC to localpart and resource', () => {
    const decomposed = Jid.parse('e\u0301@example.com/e\u0301');
    assert.equal(decomposed.local, '\u00e9');
    assert.equal(decomposed.resource, '\u00e9');
    assert.ok(decomposed.equals(Jid.parse('\u00e9@example.com/\u00e9')));
  });

  it('width-maps fullwidth localparts', () => {
    assert.equal(Jid.parse('\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com').local, 'juliet');
  });

  it('keeps resource case, maps non-ASCII spaces', () => {
    assert.equal(Jid.parse('a@b/Foo\u00a0Bar').resource, 'Foo Bar');
    assert.notEqual(Jid.parse('a@b/Foo').resource, Jid.parse('a@b/foo').resource);
  });

  it('lower-cases and IDNA-maps the domain', () => {
    assert.equal(Jid.parse('a@M\u00dcNCHEN.DE').domain, 'xn--mnchen-3ya.de');
    assert.equal(Jid.parse('a@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com').domain, 'example.com');
    assert.ok(Jid.parse('a@m\u00fcnchen.de').equals(Jid.parse('a@xn--mnchen-3ya.de')));
  });

  it('normalises through the constructor too', () => {
    const jid = new Jid('Juliet', 'Example.com.', 'Balcony');
    assert.equal(jid.toString(), 'juliet@example.com/Balcony');
    assert.throws(() => new Jid('a@b', 'example.com'), JidError);
    assert.throws(() => new Jid('a', ''), JidError);
    assert.equal(new Jid('', 'example.com').toString(), 'example.com');
  });
});

describe('Jid: accessors', () => {
  it('derives bare JIDs and resources', () => {
    const full = Jid.parse('juliet@example.com/balcony');
    assert.equal(full.isBare, false);
    assert.equal(full.bareString(), 'juliet@example.com');
    const bare = full.bare;
    assert.equal(bare.isBare, true);
    assert.equal(bare.toString(), 'juliet@example.com');
    assert.equal(full.bare, bare, 'the bare JID is cached');
    assert.equal(bare.bare, bare);
    assert.ok(bare.withResource('chamber').equals(Jid.parse('juliet@example.com/chamber')));
    assert.equal(full.withResource('').toString(), 'juliet@example.com');
    assert.equal(full.withResource('Foo\u00a0Bar').resource, 'Foo Bar');
    assert.throws(() => full.withResource('\u0000'), JidError);
  });

  it('compares by value', () => {
    const a = Jid.parse('Juliet@Example.com/r');
    assert.ok(a.equals(Jid.parse('juliet@example.com/r')));
    assert.ok(!a.equals(Jid.parse('juliet@example.com/R')));
    assert.ok(!a.equals(Jid.parse('juliet@example.com')));
    assert.ok(!a.equals(Jid.parse('example.com/r')));
    assert.equal(`${a}`, 'juliet@example.com/r');
  });
});
