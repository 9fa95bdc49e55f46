/**
 * XMPP addresses (RFC 7622), prepared without an external PRECIS library:
 *
 * - localpart: close to the UsernameCaseMapped profile (RFC 8265 §3.3): fullwidth and
 *   halfwidth forms are width-mapped, then toLowerCase() (RFC 7613's case mapping;
 *   RFC 8265 uses default case folding, which differs for a few letters such as "ß"),
 *   then NFC; code points must be letters, marks, digits or printable ASCII (the
 *   IdentifierClass), with no compatibility decomposition, and none of " & ' / : < > @.
 *   The bidi rule is not checked.
 * - resourcepart: close to OpaqueString (RFC 8265 §4.2): non-ASCII spaces map to
 *   U+0020, then NFC; control characters and unassigned code points are refused.
 * - domainpart: kept in ASCII form (A-labels), lower-cased and without a trailing dot.
 *   RFC 7622 prefers U-labels; ASCII compares the same way and is what DNS, TLS
 *   certificates and configuration use. IDNA mapping is node:url's domainToASCII
 *   (UTS #46, non-transitional); labels must then be LDH. IP literals are accepted.
 *
 * Every part is limited to 1023 UTF-8 bytes; lone surrogates are refused everywhere.
 */
import { isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

export class JidError extends Error {
  override name = 'JidError';
}

const MAX_PART_BYTES = 1023;
// NFC can merge at most three UTF-16 units into one (Hangul L+V+T), so anything longer
// cannot shrink below the byte limit and is refused before normalising it.
const MAX_RAW_UNITS = MAX_PART_BYTES * 3;

/** Marks constructor arguments that are already prepared (bare, withResource). */
const PREPARED: unique symbol = Symbol('prepared');

export class Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  private full: string | undefined;
  private bareStr: string | undefined;
  private bareJid: Jid | undefined;

  constructor(local: string, domain: string, resource = '', prepared?: typeof PREPARED) {
    if (prepared === PREPARED) {
      this.local = local;
      this.domain = domain;
      this.resource = resource;
    } else {
      this.local = local === '' ? '' : prepLocal(local);
      this.domain = prepDomain(domain);
      this.resource = resource === '' ? '' : prepResource(resource);
    }
  }

  /** Splits per RFC 7622 §3.1: the resource at the first '/', then the localpart at the first '@' before it. */
  static parse(s: string): Jid {
    if (typeof s !== 'string' || s === '') throw new JidError('empty JID');
    let rest = s;
    let resource = '';
    const slash = rest.indexOf('/');
    if (slash !== -1) {
      resource = rest.slice(slash + 1);
      if (resource === '') throw new JidError('empty resourcepart');
      rest = rest.slice(0, slash);
    }
    let local = '';
    const at = rest.indexOf('@');
    if (at !== -1) {
      local = rest.slice(0, at);
      if (local === '') throw new JidError('empty localpart');
      rest = rest.slice(at + 1);
    }
    return new Jid(local, rest, resource);
  }

  static tryParse(s: string | undefined): Jid | undefined {
    if (s === undefined) return undefined;
    try {
      return Jid.parse(s);
    } catch (e) {
      if (e instanceof JidError) return undefined;
      throw e;
    }
  }

  get bare(): Jid {
    if (this.resource === '') return this;
    if (this.bareJid === undefined) this.bareJid = new Jid(this.local, this.domain, '', PREPARED);
    return this.bareJid;
  }

  get isBare(): boolean {
    return this.resource === '';
  }

  toString(): string {
    if (this.full === undefined) {
      this.full = this.resource === '' ? this.bareString() : `${this.bareString()}/${this.resource}`;
    }
    return this.full;
  }

  bareString(): string {
    if (this.bareStr === undefined) this.bareStr = this.local === '' ? this.domain : `${this.local}@${this.domain}`;
    return this.bareStr;
  }

  equals(o: Jid): boolean {
    return this === o || (this.domain === o.domain && this.local === o.local && this.resource === o.resource);
  }

  withResource(r: string): Jid {
    return new Jid(this.local, this.domain, r === '' ? '' : prepResource(r), PREPARED);
  }
}

export function isValidJid(s: string): boolean {
  return Jid.tryParse(s) !== undefined;
}

const LOCAL_FORBIDDEN = /["&'/:<>@]/;
const FULLWIDTH = /[\uff01-\uffee]/g;
const IDENTIFIER_CLASS = /^[\p{Ll}\p{Lu}\p{Lo}\p{Lm}\p{Nd}\p{Mn}\p{Mc}\x21-\x7e]+$/u;
const LONE_SURROGATE = /\p{Cs}/u;
const NON_ASCII_SPACE = /[^\P{Zs} ]/gu;
const RESOURCE_FORBIDDEN = /[\p{Cc}\p{Cn}]/u;

function checkBytes(s: string, part: string): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings need no measuring.
  if (s.length * 3 > MAX_PART_BYTES && Buffer.byteLength(s) > MAX_PART_BYTES) {
    throw new JidError(`${part} exceeds ${MAX_PART_BYTES} bytes`);
  }
}

function checkRaw(s: string, part: string): void {
  if (s.length > MAX_RAW_UNITS) throw new JidError(`${part} exceeds ${MAX_PART_BYTES} bytes`);
  if (LONE_SURROGATE.test(s)) throw new JidError(`${part} contains an unpaired surrogate`);
}

function prepLocal(raw: string): string {
  let ascii = true;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      ascii = false;
      break;
    }
  }
  let s: string;
  if (ascii) {
    if (raw.length > MAX_PART_BYTES) throw new JidError(`localpart exceeds ${MAX_PART_BYTES} bytes`);
    s = raw.toLowerCase();
  } else {
    checkRaw(raw, 'localpart');
    s = raw.replace(FULLWIDTH, (c) => c.normalize('NFKC'));
    s = s.toLowerCase().normalize('NFC');
    if (!IDENTIFIER_CLASS.test(s) || s.normalize('NFKC') !== s) {
      throw new JidError('localpart contains a disallowed character');
    }
    checkBytes(s, 'localpart');
  }
  if (LOCAL_FORBIDDEN.test(s)) throw new JidError(`localpart contains a forbidden character: ${JSON.stringify(s)}`);
  return s;
}

function prepResource(raw: string): string {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return prepResourceSlow(raw);
  }
  if (raw.length > MAX_PART_BYTES) throw new JidError(`resourcepart exceeds ${MAX_PART_BYTES} bytes`);
  return raw;
}

function prepResourceSlow(raw: string): string {
  checkRaw(raw, 'resourcepart');
  const s = raw.replace(NON_ASCII_SPACE, ' ').normalize('NFC');
  if (RESOURCE_FORBIDDEN.test(s))
    throw new JidError('resourcepart contains a control character or unassigned code point');
  checkBytes(s, 'resourcepart');
  return s;
}

function prepDomain(raw: string): string {
  if (raw === '') throw new JidError('empty domainpart');
  if (raw.length > MAX_RAW_UNITS) throw new JidError(`domainpart exceeds ${MAX_PART_BYTES} bytes`);
  if (raw.charCodeAt(0) === 0x5b) {
    if (raw.charCodeAt(raw.length - 1) !== 0x5d || !isIPv6(raw.slice(1, -1))) {
      throw new JidError('invalid IPv6 literal in domainpart');
    }
    return raw.toLowerCase();
  }
  let ascii = true;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c > 0x7e) {
      ascii = false;
      break;
    }
  }
  let d = ascii ? raw.toLowerCase() : raw;
  // Non-ASCII names go through IDNA; so do A-labels, to reject invalid punycode.
  if (!ascii || d.includes('xn--')) {
    if (LONE_SURROGATE.test(d)) throw new JidError('domainpart contains an unpaired surrogate');
    const mapped = domainToASCII(d);
    if (mapped === '') throw new JidError(`invalid internationalised domain: ${JSON.stringify(raw)}`);
    d = mapped;
  }
  if (d.charCodeAt(d.length - 1) === 0x2e) d = d.slice(0, -1);
  if (d === '') throw new JidError('empty domainpart');
  if (d.length > MAX_PART_BYTES) throw new JidError(`domainpart exceeds ${MAX_PART_BYTES} bytes`);
  checkLabels(d);
  return d;
}

/** LDH labels of 1 to 63 characters, not starting or ending with '-'; an all-numeric name must be an IPv4 address. */
function checkLabels(d: string): void {
  let start = 0;
  let labels = 0;
  let numeric = true;
  let allOctets = true;
  for (let i = 0; i <= d.length; i++) {
    const c = i < d.length ? d.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      const len = i - start;
      if (len === 0 || len > 63) throw new JidError(`invalid domain label in ${JSON.stringify(d)}`);
      if (d.charCodeAt(start) === 0x2d || d.charCodeAt(i - 1) === 0x2d) {
        throw new JidError(`domain label starts or ends with '-' in ${JSON.stringify(d)}`);
      }
      if (!numeric || len > 3 || (len > 1 && d.charCodeAt(start) === 0x30) || Number(d.slice(start, i)) > 255) {
        allOctets = false;
      }
      labels++;
      start = i + 1;
      if (i < d.length) numeric = true;
    } else if ((c >= 0x61 && c <= 0x7a) || c === 0x2d) {
      numeric = false;
    } else if (c < 0x30 || c > 0x39) {
      throw new JidError(`domainpart contains a disallowed character: ${JSON.stringify(d)}`);
    }
  }
  // RFC 3696 §2: a top-level label is never all-numeric, so such a name can only be an IPv4 address.
  if (numeric && (labels !== 4 || !allOctets)) throw new JidError(`invalid IPv4 address: ${JSON.stringify(d)}`);
}
