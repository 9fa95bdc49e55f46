/**
 * Streaming parser for one XMPP stream (RFC 6120 §4, restricted XML per §11).
 *
 * Built on saxes without namespace processing: elements keep their raw (possibly
 * prefixed) names and xmlns attributes, exactly as XmlElement expects. Input is fed
 * to saxes in slices of at most SLICE UTF-16 units so that the byte size of the
 * element being parsed can be checked while saxes is still buffering it.
 */
import { EventEmitter } from 'node:events';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { XmlElement } from './element.js';

export interface ParserLimits {
  /** Max UTF-8 bytes of one depth-1 element (also bounds the stream header and inter-stanza data). */
  maxStanzaBytes: number;
  /** Max element depth, counted from the stream root (stream = 0, stanza = 1, its children = 2, ...). */
  maxDepth: number;
  /** Max attributes (namespace declarations included) on one element. */
  maxAttributes: number;
}

export type StreamErrorCondition =
  | 'not-well-formed'
  | 'restricted-xml'
  | 'policy-violation'
  | 'invalid-namespace'
  | 'bad-format';

export interface StreamParserError {
  condition: StreamErrorCondition;
  text: string;
}

export interface StreamParserEvents {
  /** The stream root's open tag (e.g. `stream:stream`); its namespace is not checked here. */
  streamStart: [attrs: Record<string, string>, name: string];
  /** A complete depth-1 element, detached, with its namespace resolvable through `el.xmlns`. */
  stanza: [el: XmlElement];
  /** The stream root was closed; further input is ignored until reset(). */
  streamEnd: [];
  /** Emitted once; further input is ignored until reset(). */
  error: [err: StreamParserError];
}

type SaxOptions = { xmlns: false; position: false };
/** ES2024 (Node 20); the project's lib setting stops at ES2023. */
type WellFormedString = string & { isWellFormed(): boolean };

const SLICE = 16 * 1024;

// Thrown through saxes (and caught in feed()) to abandon the rest of a slice at once:
// saxes itself keeps going after reporting an error.
const STOP = Symbol('stop');
const RESTART = Symbol('restart');

/**
 * Events are delivered synchronously from write(). Listeners may call reset() (e.g.
 * from the 'stanza' listener that handles a SASL success or STARTTLS proceed): the
 * rest of the input passed to the current write() is then parsed as the start of the
 * new stream. An exception thrown by a listener propagates out of write() and leaves
 * the parser dead until reset(). Attribute objects of parsed elements (and of
 * 'streamStart') have a null prototype, so hostile attribute names such as
 * `__proto__` are plain keys.
 */
export class StreamParser extends EventEmitter<StreamParserEvents> {
  /** The error reported, if any; useful when nobody listens for 'error'. */
  failure: StreamParserError | undefined;

  private readonly limits: ParserLimits;
  private sax!: SaxesParser<SaxOptions>;
  private decoder = new TextDecoder('utf-8', { fatal: true });
  /** A trailing high surrogate of string input, held back so byte counts stay exact. */
  private carry = '';

  /** Open elements, root included. */
  private depth = 0;
  private rootAttrs: Record<string, string> = {};
  private stanza: XmlElement | undefined;
  private cur: XmlElement | undefined;
  /**
   * A stanza (or, as null, the root) whose close tag was just seen. saxes reports a
   * mismatched close tag only after calling the close handler, so delivery waits for
   * the next saxes event or the end of the slice.
   */
  private pending: XmlElement | null | undefined;
  private pendingEnd = 0;

  private slice = '';
  /** UTF-16 units fed to the current saxes parser before `slice`, to turn saxes positions into slice offsets. */
  private sliceBase = 0;
  /**
   * The current "unit" is the stream header, then each depth-1 element together with
   * any inter-stanza data before it. Bytes of the unit in earlier slices, and where
   * it starts in the current one.
   */
  private unitBytes = 0;
  private unitStart = 0;
  /** Whether everything fed since the unit started is known to be whitespace. */
  private unitClean = true;
  /** Whitespace at the start of the next input is not fed to saxes (keepalives between stanzas, before a header). */
  private skipWs = true;

  private done = false;
  private writing = false;
  private restarted = false;
  /** Slice offset just after the markup whose event is being emitted: where a restarted stream resumes. */
  private emitEnd = -1;

  constructor(limits: ParserLimits) {
    super();
    this.limits = limits;
    this.newSax();
  }

  write(chunk: Buffer | string): void {
    if (this.done) return;
    if (this.writing) throw new Error('StreamParser.write() called from a listener');
    let s: string;
    if (typeof chunk === 'string') {
      s = chunk;
    } else {
      try {
        s = this.decoder.decode(chunk, { stream: true });
      } catch {
        // XML 1.0 §4.3.3: bytes that are illegal in the document's encoding are a fatal error.
        this.report({ condition: 'not-well-formed', text: 'invalid UTF-8' });
        return;
      }
    }
    if (this.carry !== '') {
      s = this.carry + s;
      this.carry = '';
    }
    if (isHighSurrogate(s.charCodeAt(s.length - 1))) {
      this.carry = s.slice(-1);
      s = s.slice(0, -1);
    }
    // saxes lets an unpaired high surrogate swallow the next unit (even a '<'). Decoded
    // bytes are always well-formed, so only string input needs checking.
    if (typeof chunk === 'string' && !(s as WellFormedString).isWellFormed()) {
      this.report({ condition: 'not-well-formed', text: 'unpaired surrogate' });
      return;
    }
    this.writing = true;
    try {
      this.feed(s);
    } finally {
      this.writing = false;
    }
    if (this.failure !== undefined && !this.done) this.report(this.failure);
  }

  /** Starts over with a fresh stream (after STARTTLS or SASL success): a new header is expected. */
  reset(): void {
    if (this.writing) {
      this.restarted = true;
    } else {
      // The byte stream itself starts over (e.g. TLS now carries it).
      this.decoder = new TextDecoder('utf-8', { fatal: true });
      this.carry = '';
    }
    this.failure = undefined;
    this.done = false;
    this.depth = 0;
    this.rootAttrs = {};
    this.stanza = this.cur = this.pending = undefined;
    this.unitBytes = this.unitStart = 0;
    this.unitClean = this.skipWs = true;
    this.newSax();
  }

  private newSax(): void {
    const sax = new SaxesParser<SaxOptions>({ xmlns: false, position: false });
    sax.on('opentag', this.onOpenTag);
    sax.on('closetag', this.onCloseTag);
    sax.on('text', this.onText);
    sax.on('cdata', this.onCData);
    sax.on('error', this.onSaxError);
    sax.on('doctype', this.onDoctype);
    sax.on('comment', this.onComment);
    sax.on('processinginstruction', this.onPI);
    this.sax = sax;
    this.sliceBase = 0;
  }

  private feed(s: string): void {
    const len = s.length;
    let pos = 0;
    while (pos < len && !this.done) {
      const wasClean = this.skipWs;
      if (wasClean) {
        pos = skipWhitespace(s, pos);
        if (pos === len) return;
        this.skipWs = false;
      }
      let end = pos + SLICE;
      if (end >= len) end = len;
      // Keep pairs whole so each slice's UTF-8 length is exact.
      else if (isHighSurrogate(s.charCodeAt(end - 1))) end--;
      const slice = pos === 0 && end === len ? s : s.slice(pos, end);
      this.slice = slice;
      this.unitStart = 0;
      this.unitClean = wasClean;
      try {
        this.sax.write(slice);
        if (this.pending !== undefined) this.flush();
        this.endOfSlice();
      } catch (e) {
        if (e === RESTART) {
          this.restarted = false;
          pos += this.emitEnd;
          continue;
        }
        if (e === STOP) return;
        // A listener threw: saxes is stuck mid-slice, so nothing more can be parsed.
        this.done = true;
        throw e;
      }
      this.sliceBase += slice.length;
      pos = end;
    }
  }

  /** Bounds what saxes buffers for the still-open unit, and spots text between stanzas early. */
  private endOfSlice(): void {
    const start = this.unitStart;
    const rest = start === 0 ? this.slice : this.slice.slice(start);
    this.unitBytes += Buffer.byteLength(rest);
    if (this.unitBytes > this.limits.maxStanzaBytes) this.tooBig();
    if (this.depth === 1 && this.unitClean) {
      const i = skipWhitespace(rest, 0);
      if (i === rest.length) this.skipWs = true;
      else if (rest.charCodeAt(i) !== 0x3c) this.fail('bad-format', 'text is not allowed between stanzas');
    }
  }

  /** Closes the current unit at slice offset `end`, checking its exact size. */
  private endUnit(end: number): void {
    const max = this.limits.maxStanzaBytes;
    // A UTF-16 unit is at most 3 UTF-8 bytes, so most stanzas need no measuring.
    if (this.unitBytes + (end - this.unitStart) * 3 > max) {
      const bytes = this.unitBytes + Buffer.byteLength(this.slice.slice(this.unitStart, end));
      if (bytes > max) this.tooBig();
    }
    this.unitBytes = 0;
    this.unitStart = end;
    this.unitClean = true;
  }

  private tooBig(): never {
    return this.fail(
      'policy-violation',
      this.depth === 0
        ? `stream header exceeds ${this.limits.maxStanzaBytes} bytes`
        : `stanza exceeds ${this.limits.maxStanzaBytes} bytes`,
    );
  }

  private offset(): number {
    return this.sax.position - this.sliceBase;
  }

  private fail(condition: StreamErrorCondition, text: string): never {
    this.failure = { condition, text };
    throw STOP;
  }

  private report(err: StreamParserError): void {
    this.failure = err;
    this.done = true;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private flush(): void {
    const el = this.pending;
    this.pending = undefined;
    this.emitEnd = this.pendingEnd;
    if (el === null) {
      this.done = true;
      this.emit('streamEnd');
    } else if (el !== undefined) {
      this.emit('stanza', el);
    }
    if (this.restarted) throw RESTART;
    if (this.done) throw STOP;
  }

  private readonly onOpenTag = (tag: SaxesTagPlain): void => {
    if (this.pending !== undefined) this.flush();
    const { limits } = this;
    const depth = this.depth;
    if (depth > limits.maxDepth) this.fail('policy-violation', `elements nested deeper than ${limits.maxDepth}`);
    const attrs = tag.attributes;
    let n = 0;
    for (const _ in attrs) n++;
    if (n > limits.maxAttributes) this.fail('policy-violation', `more than ${limits.maxAttributes} attributes`);
    const name = tag.name;

    if (depth === 0) {
      const end = this.offset();
      this.endUnit(end);
      this.depth = 1;
      this.rootAttrs = attrs;
      this.emitEnd = end;
      this.emit('streamStart', attrs, name);
      if (this.restarted) throw RESTART;
      return;
    }

    const el = new XmlElement(name);
    el.attrs = attrs;
    const colon = name.indexOf(':');
    if (depth === 1) {
      // Make the stanza's namespace explicit, since it is detached from the root.
      if (colon === -1) {
        if (attrs.xmlns === undefined) {
          const ns = this.rootAttrs.xmlns;
          if (ns !== undefined) attrs.xmlns = ns;
        }
      } else {
        this.copyPrefix(attrs, name, colon);
      }
      this.stanza = el;
    } else {
      if (colon !== -1 && attrs[`xmlns:${name.slice(0, colon)}`] === undefined) {
        this.copyPrefix((this.stanza as XmlElement).attrs, name, colon);
      }
      (this.cur as XmlElement).append(el);
    }
    this.cur = el;
    this.depth = depth + 1;
  };

  /** Copies the root's declaration of the prefix of `name` onto `attrs`, unless already declared there. */
  private copyPrefix(attrs: Record<string, string>, name: string, colon: number): void {
    const key = `xmlns:${name.slice(0, colon)}`;
    if (attrs[key] !== undefined) return;
    const ns = this.rootAttrs[key];
    if (ns !== undefined) attrs[key] = ns;
  }

  private readonly onCloseTag = (): void => {
    if (this.pending !== undefined) this.flush();
    const depth = --this.depth;
    if (depth >= 2) {
      this.cur = (this.cur as XmlElement).parent;
      return;
    }
    const end = this.offset();
    if (depth === 1) {
      const el = this.stanza as XmlElement;
      this.stanza = this.cur = undefined;
      this.endUnit(end);
      this.pending = el;
    } else {
      this.pending = null;
    }
    this.pendingEnd = end;
  };

  private readonly onText = (text: string): void => {
    if (this.pending !== undefined) this.flush();
    const cur = this.cur;
    if (cur !== undefined) appendText(cur, text);
    // RFC 6120 §4.1 allows only elements (and whitespace keepalives, §4.6.1) at depth 1.
    // The XML itself is well-formed, so this is bad-format rather than not-well-formed.
    else if (this.depth === 1 && skipWhitespace(text, 0) !== text.length) {
      this.fail('bad-format', 'text is not allowed between stanzas');
    }
    // Text outside the root is checked by saxes.
  };

  private readonly onCData = (text: string): void => {
    if (this.pending !== undefined) this.flush();
    const cur = this.cur;
    if (cur !== undefined) {
      if (text !== '') appendText(cur, text);
    } else {
      this.fail('bad-format', 'text is not allowed between stanzas');
    }
  };

  private readonly onSaxError = (err: Error): void => {
    const msg = err.message;
    if (this.pending !== undefined) {
      // This error is about the close tag of the pending element itself: drop it.
      if (msg === 'unexpected close tag.') this.pending = undefined;
      else this.flush();
    }
    this.fail(saxCondition(msg), msg);
  };

  private readonly onDoctype = (): void => {
    if (this.pending !== undefined) this.flush();
    this.fail('restricted-xml', 'DTDs are not allowed');
  };

  private readonly onComment = (): void => {
    if (this.pending !== undefined) this.flush();
    this.fail('restricted-xml', 'comments are not allowed');
  };

  // The XML declaration is reported by saxes as 'xmldecl', not as a processing instruction.
  private readonly onPI = (): void => {
    if (this.pending !== undefined) this.flush();
    this.fail('restricted-xml', 'processing instructions are not allowed');
  };
}

/**
 * An undefined entity is also a well-formedness error in XML terms, but RFC 6120 §11.1
 * lists entity references other than the predefined ones among the restricted
 * features (and the DTD that could define one is restricted too), so it gets the more
 * specific condition. saxes never expands entities beyond the predefined ones and
 * character references, so "billion laughs" cannot grow anything.
 */
function saxCondition(msg: string): StreamErrorCondition {
  return msg === 'undefined entity.' || msg === 'inappropriately located doctype declaration.'
    ? 'restricted-xml'
    : 'not-well-formed';
}

function appendText(el: XmlElement, text: string): void {
  const children = el.children;
  const last = children.length - 1;
  if (last >= 0 && typeof children[last] === 'string') children[last] += text;
  else children.push(text);
}

/** Index of the first non-whitespace (XML S) unit of `s` at or after `from`. */
function skipWhitespace(s: string, from: number): number {
  const len = s.length;
  let i = from;
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
  }
  return i;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
