import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { type ParserLimits, StreamParser, type StreamParserError } from '../src/xml/parser.js';

const LIMITS: ParserLimits = { maxStanzaBytes: 65536, maxDepth: 16, maxAttributes: 32 };
const HEADER =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/** Records every event as a string so whole runs can be compared. */
function record(p: StreamParser): string[] {
  const log: string[] = [];
  p.on('streamStart', (attrs, name) => log.push(`start ${name} ${JSON.stringify(attrs)}`));
  p.on('stanza', (el) => log.push(`stanza ${el.xmlns} ${el.toString()}`));
  p.on('streamEnd', () => log.push('end'));
  p.on('error', (e) => log.push(`error ${e.condition}`));
  return log;
}

function parse(input: string | Buffer | (string | Buffer)[], limits: ParserLimits = LIMITS) {
  const p = new StreamParser(limits);
  const log = record(p);
  const stanzas: XmlElement[] = [];
  const errors: StreamParserError[] = [];
  p.on('stanza', (el) => stanzas.push(el));
  p.on('error', (e) => errors.push(e));
  for (const chunk of Array.isArray(input) ? input : [input]) p.write(chunk);
  return { p, log, stanzas, errors };
}

function errorOf(input: string | (string | Buffer)[], limits: ParserLimits = LIMITS): StreamParserError | undefined {
  const { errors } = parse(input, limits);
  assert.ok(errors.length <= 1, 'error is emitted at most once');
  return errors[0];
}

const CLIENT_STREAM = `${HEADER}
  <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>
<message to='juliet@example.com/balcony' id='m1' type='chat' xml:lang='en'><body>Wherefore art thou, Romeo? &amp; &lt;3 &#x263A; &#65; caf\u00e9 \u2603 \u{1F600}</body><thread>t&apos;1</thread></message>
\t<presence><show>away</show><status><![CDATA[<b>brb</b> ]]>&quot;ok&quot;</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/></presence> \r\n
<iq type='get' id='r1'><query xmlns='jabber:iq:roster'><item jid='a@b'><group>G\u00fcnter \u{1F3B8}</group></item></query></iq>
</stream:stream>`;

describe('StreamParser: a client stream', () => {
  const reference = parse(CLIENT_STREAM).log;

  it('parses header, stanzas and end', () => {
    assert.equal(reference.length, 6);
    assert.match(reference[0] as string, /^start stream:stream .*"xmlns":"jabber:client"/);
    assert.equal(reference[5], 'end');
    const { stanzas } = parse(CLIENT_STREAM);
    const [starttls, message, presence, iq] = stanzas as [XmlElement, XmlElement, XmlElement, XmlElement];
    assert.ok(starttls.is('starttls', 'urn:ietf:params:xml:ns:xmpp-tls'));
    assert.ok(message.is('message', 'jabber:client'));
    assert.equal(message.attr('xml:lang'), 'en');
    assert.equal(message.getChildText('body'), 'Wherefore art thou, Romeo? & <3 \u263a A caf\u00e9 \u2603 \u{1F600}');
    assert.equal(message.getChildText('thread'), "t'1");
    assert.equal(presence.getChildText('status'), '<b>brb</b> "ok"');
    assert.equal(presence.getChild('status')?.children.length, 1, 'CDATA and text are merged');
    assert.equal(presence.getChild('c')?.xmlns, 'http://jabber.org/protocol/caps');
    assert.equal(
      iq.getChild('query', 'jabber:iq:roster')?.getChild('item')?.getChildText('group'),
      'G\u00fcnter \u{1F3B8}',
    );
    for (const el of stanzas) assert.equal(el.parent, undefined);
  });

  it('gives identical results when split at every byte position', () => {
    const buf = Buffer.from(CLIENT_STREAM);
    for (let i = 1; i < buf.length; i++) {
      assert.deepEqual(parse([buf.subarray(0, i), buf.subarray(i)]).log, reference, `split at byte ${i}`);
    }
  });

  it('gives identical results fed one byte at a time', () => {
    const buf = Buffer.from(CLIENT_STREAM);
    const chunks: Buffer[] = [];
    for (let i = 0; i < buf.length; i++) chunks.push(buf.subarray(i, i + 1));
    assert.deepEqual(parse(chunks).log, reference);
  });

  it('gives identical results fed one UTF-16 unit at a time (surrogate pairs split)', () => {
    assert.deepEqual(parse(CLIENT_STREAM.split('')).log, reference);
  });

  it('decodes multi-byte UTF-8 split across chunks', () => {
    const text = '\u00e9\u20ac\u{1F600}\u{10348}';
    const buf = Buffer.from(`${HEADER}<message><body>${text}</body></message>`);
    const at = buf.indexOf(Buffer.from('\u{1F600}'));
    for (const cut of [at + 1, at + 2, at + 3]) {
      const { stanzas, errors } = parse([buf.subarray(0, cut), buf.subarray(cut)]);
      assert.deepEqual(errors, []);
      assert.equal(stanzas[0]?.getChildText('body'), text);
    }
  });

  it('refuses invalid UTF-8', () => {
    const bad = Buffer.concat([Buffer.from(`${HEADER}<message><body>`), Buffer.from([0xc3, 0x28])]);
    assert.equal(errorOf([bad])?.condition, 'not-well-formed');
    const overlong = Buffer.concat([Buffer.from(`${HEADER}<message><body>`), Buffer.from([0xc0, 0xbc])]);
    assert.equal(errorOf([overlong])?.condition, 'not-well-formed');
  });

  it('ignores input after the stream end', () => {
    const { log } = parse([`${HEADER}<presence/></stream:stream>`, 'garbage <<<', '<message/>']);
    assert.deepEqual(log.slice(1), [`stanza jabber:client <presence xmlns="jabber:client"/>`, 'end']);
  });

  it('keeps hostile attribute names as plain keys', () => {
    const { stanzas } = parse(`${HEADER}<message __proto__='x' constructor='y'/>`);
    const el = stanzas[0] as XmlElement;
    assert.equal(el.attr('__proto__'), 'x');
    assert.equal(el.attr('constructor'), 'y');
    assert.equal(el.attr('toString'), undefined);
  });
});

describe('StreamParser: namespaces', () => {
  it('makes the default namespace explicit on detached stanzas', () => {
    const { stanzas } = parse(`${HEADER}<message><body>x</body></message><iq xmlns='jabber:iq:other'/>`);
    const [message, iq] = stanzas as [XmlElement, XmlElement];
    assert.equal(message.attr('xmlns'), 'jabber:client');
    assert.equal(message.getChild('body')?.xmlns, 'jabber:client');
    assert.equal(message.toString(), '<message xmlns="jabber:client"><body>x</body></message>');
    assert.equal(iq.xmlns, 'jabber:iq:other', 'an explicit xmlns is kept');
  });

  it('uses jabber:server for server streams', () => {
    const header =
      "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>";
    const { stanzas } = parse(`${header}<message/><db:result from='a' to='b'>key</db:result>`);
    const [message, result] = stanzas as [XmlElement, XmlElement];
    assert.ok(message.is('message', 'jabber:server'));
    assert.equal(result.name, 'db:result');
    assert.ok(result.is('result', 'jabber:server:dialback'));
    assert.equal(result.attr('xmlns'), undefined, 'no default namespace is added to prefixed elements');
  });

  it('copies root prefix declarations onto prefixed stanzas and their descendants', () => {
    const { stanzas } = parse(
      `${HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features><message><stream:x/></message>`,
    );
    const [features, message] = stanzas as [XmlElement, XmlElement];
    assert.ok(features.is('features', 'http://etherx.jabber.org/streams'));
    assert.equal(features.attr('xmlns:stream'), 'http://etherx.jabber.org/streams');
    assert.equal(features.attr('xmlns'), undefined);
    assert.equal(features.getChild('mechanisms')?.getChildText('mechanism'), 'PLAIN');
    assert.equal(message.getChild('x')?.xmlns, 'http://etherx.jabber.org/streams');
  });

  it('keeps a prefix declared on the stanza itself', () => {
    const { stanzas } = parse(`${HEADER}<stream:error xmlns:stream='urn:other'/>`);
    assert.equal(stanzas[0]?.xmlns, 'urn:other');
  });

  it('reports the root as is, without validating its namespace', () => {
    const { log } = parse("<stream xmlns='urn:wrong' a='1'>");
    assert.deepEqual(log, ['start stream {"xmlns":"urn:wrong","a":"1"}']);
  });
});

describe('StreamParser: restricted and malformed XML', () => {
  const cases: [string, string, string][] = [
    ['DOCTYPE', '<!DOCTYPE stream><stream:stream>', 'restricted-xml'],
    ['DOCTYPE with internal subset', "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'b'>]><s>", 'restricted-xml'],
    ['comment before the root', '<!-- hi --><stream:stream>', 'restricted-xml'],
    ['comment between stanzas', `${HEADER}<presence/><!-- hi --><presence/>`, 'restricted-xml'],
    ['comment in a stanza', `${HEADER}<message><!-- hi --></message>`, 'restricted-xml'],
    [
      'processing instruction before the root',
      "<?php echo 1; ?><stream:stream xmlns='jabber:client'>",
      'restricted-xml',
    ],
    ['processing instruction in a stanza', `${HEADER}<message><?pi x?></message>`, 'restricted-xml'],
    ['DOCTYPE in a stanza', `${HEADER}<message><!DOCTYPE x></message>`, 'restricted-xml'],
    ['undefined entity', `${HEADER}<message><body>&nbsp;</body></message>`, 'restricted-xml'],
    ['undefined entity in an attribute', `${HEADER}<message to='&x;'/>`, 'restricted-xml'],
    ['a second XML declaration', `${HEADER}<?xml version='1.0'?>`, 'not-well-formed'],
    ['mismatched close tag', `${HEADER}<message><body></message>`, 'not-well-formed'],
    ['duplicate attribute', `${HEADER}<message to='a' to='b'/>`, 'not-well-formed'],
    ['bad character reference', `${HEADER}<message><body>&#0;</body></message>`, 'not-well-formed'],
    ['control character', `${HEADER}<message><body>\u0001</body></message>`, 'not-well-formed'],
    ['lone surrogate', `${HEADER}<message><body>\ud800x</body></message>`, 'not-well-formed'],
    ['unquoted attribute', `${HEADER}<message to=a/>`, 'not-well-formed'],
    ['text before the root', 'hello <stream:stream>', 'not-well-formed'],
    ['text between stanzas', `${HEADER}<presence/>hello<presence/>`, 'bad-format'],
    ['text between stanzas, at the end of the input', `${HEADER}<presence/> hello`, 'bad-format'],
    ['entity between stanzas', `${HEADER}&amp;<presence/>`, 'bad-format'],
    ['CDATA between stanzas', `${HEADER}<![CDATA[x]]>`, 'bad-format'],
  ];
  for (const [what, input, condition] of cases) {
    it(`refuses ${what}`, () => {
      assert.equal(errorOf(input)?.condition, condition);
      // The same verdict whatever the chunking.
      assert.equal(errorOf(input.split(''))?.condition, condition);
    });
  }

  it('accepts the XML declaration, predefined entities and character references', () => {
    const { stanzas, errors } = parse(`${HEADER}<message><body>&lt;&gt;&amp;&quot;&apos;&#169;&#xA9;</body></message>`);
    assert.deepEqual(errors, []);
    assert.equal(stanzas[0]?.getChildText('body'), '<>&"\'\u00a9\u00a9');
  });

  it('does not deliver a stanza closed by the wrong tag', () => {
    const { log } = parse(`${HEADER}<presence/><message></presence>`);
    assert.deepEqual(log.slice(1), ['stanza jabber:client <presence xmlns="jabber:client"/>', 'error not-well-formed']);
  });

  it('does not end the stream on a mismatched root close tag', () => {
    const { log } = parse(`${HEADER}</stream:other>`);
    assert.deepEqual(log.slice(1), ['error not-well-formed']);
  });

  it('delivers stanzas completed before an error in the same chunk', () => {
    const { log } = parse(`${HEADER}<presence/>&bogus;`);
    assert.deepEqual(log.slice(1), ['stanza jabber:client <presence xmlns="jabber:client"/>', 'error restricted-xml']);
  });

  it('emits one error and ignores further input', () => {
    const { p, log } = parse([`${HEADER}<!-- x -->`, '<message/>', '<!-- y -->']);
    assert.deepEqual(log.slice(1), ['error restricted-xml']);
    assert.equal(p.failure?.condition, 'restricted-xml');
  });

  it('does not throw without an error listener', () => {
    const p = new StreamParser(LIMITS);
    p.write(`${HEADER}<a></b>`);
    assert.equal(p.failure?.condition, 'not-well-formed');
  });
});

describe('StreamParser: billion laughs', () => {
  const entities = ['<!ENTITY lol "lol">'];
  for (let i = 1; i <= 9; i++) {
    const prev = i === 1 ? 'lol' : `lol${i - 1}`;
    entities.push(`<!ENTITY lol${i} "${`&${prev};`.repeat(10)}">`);
  }
  const laughs = `<?xml version="1.0"?>\n<!DOCTYPE lolz [\n${entities.join('\n')}\n]>\n<lolz>&lol9;</lolz>`;

  it('is refused at the DTD without expanding anything', () => {
    const before = process.memoryUsage().heapUsed;
    const started = performance.now();
    const { log } = parse(laughs);
    assert.deepEqual(log, ['error restricted-xml']);
    assert.ok(performance.now() - started < 1000);
    assert.ok(process.memoryUsage().heapUsed - before < 4 * 1024 * 1024);
  });

  it('is refused inside a stream, where the entity is simply undefined', () => {
    const before = process.memoryUsage().heapUsed;
    const { log } = parse(`${HEADER}<message><body>&lol9;&lol9;&lol9;</body></message>`);
    assert.deepEqual(log.slice(1), ['error restricted-xml']);
    assert.ok(process.memoryUsage().heapUsed - before < 4 * 1024 * 1024);
  });

  it('refuses an endless DTD without buffering it', () => {
    const limits = { ...LIMITS, maxStanzaBytes: 100_000 };
    const p = new StreamParser(limits);
    const errors: StreamParserError[] = [];
    p.on('error', (e) => errors.push(e));
    p.write('<!DOCTYPE lolz [');
    const chunk = `<!ENTITY a "${'x'.repeat(1000)}">`.repeat(64);
    let written = 0;
    while (errors.length === 0 && written < 50_000_000) {
      p.write(chunk);
      written += chunk.length;
    }
    assert.equal(errors.length, 1);
    assert.ok(written <= limits.maxStanzaBytes + 16 * 1024 + chunk.length, `${written} bytes written before the error`);
  });
});

describe('StreamParser: size, depth and attribute limits', () => {
  it('refuses a huge text node before it is written whole', () => {
    const max = 100_000;
    const p = new StreamParser({ ...LIMITS, maxStanzaBytes: max });
    let error: StreamParserError | undefined;
    let writtenAtError = -1;
    let written = 0;
    p.on('error', (e) => {
      error = e;
      writtenAtError = written;
    });
    p.on('stanza', () => assert.fail('no stanza expected'));
    p.write(HEADER);
    p.write('<message><body>');
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const total = 100 * 1024 * 1024;
    while (written < total && error === undefined) {
      written += chunk.length;
      p.write(chunk);
    }
    assert.equal(error?.condition, 'policy-violation');
    assert.ok(writtenAtError <= max + 64 * 1024, `error after ${writtenAtError} bytes`);
    assert.ok(writtenAtError < total);
  });

  it('counts UTF-8 bytes, not characters', () => {
    const max = 100_000;
    // 60 000 characters, 120 000 bytes.
    const body = '\u00e9'.repeat(60_000);
    assert.equal(
      errorOf([HEADER, `<message><body>${body}</body></message>`], { ...LIMITS, maxStanzaBytes: max })?.condition,
      'policy-violation',
    );
    const small = '\u00e9'.repeat(40_000);
    assert.equal(
      errorOf([HEADER, `<message><body>${small}</body></message>`], { ...LIMITS, maxStanzaBytes: max }),
      undefined,
    );
  });

  it('keeps surrogate pairs and CRLF intact across internal slices', () => {
    // Shifting by 1 to 4 units puts a slice boundary inside each of the pair and the CRLF.
    for (const pad of ['x', 'xx', 'xxx', 'xxxx']) {
      const body = `${pad}${'\u{1F600}\r\n'.repeat(20_000)}`;
      const { stanzas, errors } = parse([HEADER, `<message><body>${body}</body></message>`], {
        ...LIMITS,
        maxStanzaBytes: 1_000_000,
      });
      assert.deepEqual(errors, []);
      assert.equal(stanzas[0]?.getChildText('body'), body.replaceAll('\r\n', '\n'));
    }
  });

  it('refuses a complete stanza one byte over the limit, within one chunk', () => {
    const stanza = `<message><body>${'\u20ac'.repeat(100)}</body></message>`;
    const bytes = Buffer.byteLength(stanza);
    const at = (max: number) => errorOf([HEADER, `${stanza}<presence/>`], { ...LIMITS, maxStanzaBytes: max });
    assert.equal(at(bytes), undefined);
    assert.equal(at(bytes - 1)?.condition, 'policy-violation');
  });

  it('bounds the stream header too', () => {
    const header = `<stream:stream xmlns='jabber:client' to='${'a'.repeat(2000)}'>`;
    assert.deepEqual(errorOf(header, { ...LIMITS, maxStanzaBytes: 1000 }), {
      condition: 'policy-violation',
      text: 'stream header exceeds 1000 bytes',
    });
    assert.deepEqual(errorOf(header.split(''), { ...LIMITS, maxStanzaBytes: 1000 }), {
      condition: 'policy-violation',
      text: 'stream header exceeds 1000 bytes',
    });
  });

  it('ignores whitespace keepalives, however many', () => {
    const { p, log } = parse(HEADER, { ...LIMITS, maxStanzaBytes: 200 });
    for (let i = 0; i < 10_000; i++) p.write(i % 2 ? ' ' : '\r\n');
    p.write('<presence/>\n');
    for (let i = 0; i < 10_000; i++) p.write('\t');
    p.write(Buffer.from(' \n<presence/>'));
    assert.deepEqual(log.slice(1), [
      'stanza jabber:client <presence xmlns="jabber:client"/>',
      'stanza jabber:client <presence xmlns="jabber:client"/>',
    ]);
  });

  it('caps element depth, counted from the stream root', () => {
    const nest = (n: number) => `${'<a>'.repeat(n)}${'</a>'.repeat(n)}`;
    const limits = { ...LIMITS, maxDepth: 5 };
    assert.equal(errorOf(`${HEADER}${nest(5)}`, limits), undefined);
    assert.equal(errorOf(`${HEADER}${nest(6)}`, limits)?.condition, 'policy-violation');
    const deep = parse([HEADER, '<a>'.repeat(100_000)], limits);
    assert.equal(deep.errors[0]?.condition, 'policy-violation');
  });

  it('caps attributes per element', () => {
    const attrs = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}='${i}'`).join('');
    const limits = { ...LIMITS, maxAttributes: 4 };
    assert.equal(errorOf(`${HEADER}<message${attrs(4)}/>`, limits), undefined);
    assert.equal(errorOf(`${HEADER}<message${attrs(5)}/>`, limits)?.condition, 'policy-violation');
    assert.equal(errorOf(`${HEADER}<message><x${attrs(5)}/></message>`, limits)?.condition, 'policy-violation');
    assert.equal(errorOf(`<stream:stream${attrs(5)}>`, limits)?.condition, 'policy-violation');
  });
});

describe('StreamParser: stream restarts', () => {
  it('restarts from a listener, parsing the rest of the chunk as a new stream', () => {
    const p = new StreamParser(LIMITS);
    const log = record(p);
    p.on('stanza', (el) => {
      if (el.is('auth')) p.reset();
    });
    p.write(
      `${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>\n${HEADER}<iq type='set' id='b'/>`,
    );
    assert.equal(log.length, 4);
    assert.match(log[0] as string, /^start /);
    assert.match(log[1] as string, /^stanza urn:ietf:params:xml:ns:xmpp-sasl <auth/);
    assert.equal(log[2], log[0], 'a second stream header, XML declaration included');
    assert.equal(log[3], `stanza jabber:client <iq type="set" id="b" xmlns="jabber:client"/>`);
  });

  it('restarts between writes', () => {
    const { p, log } = parse([HEADER, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"]);
    p.reset();
    p.write(`\n${HEADER.replace('jabber:client', 'jabber:server')}<message/>`);
    assert.equal(log.length, 4);
    assert.match(log[2] as string, /"xmlns":"jabber:server"/);
    assert.equal(log[3], 'stanza jabber:server <message xmlns="jabber:server"/>');
  });

  it('recovers from an error and from a stream end after reset()', () => {
    const { p, log } = parse([`${HEADER}<!-- x -->`]);
    p.reset();
    p.write(`${HEADER}<presence/></stream:stream>`);
    p.reset();
    p.write(`${HEADER}<message/>`);
    assert.deepEqual(
      log.filter((l) => !l.startsWith('start')),
      [
        'error restricted-xml',
        'stanza jabber:client <presence xmlns="jabber:client"/>',
        'end',
        'stanza jabber:client <message xmlns="jabber:client"/>',
      ],
    );
  });

  it('passes exceptions from listeners through and stops parsing', () => {
    const p = new StreamParser(LIMITS);
    let seen = 0;
    p.on('stanza', () => {
      seen++;
      throw new Error('boom');
    });
    assert.throws(() => p.write(`${HEADER}<presence/><presence/>`), /boom/);
    p.write('<presence/>');
    assert.equal(seen, 1);
  });
});
