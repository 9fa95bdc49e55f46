// Minimal incremental scanner for the server side of a c2s stream.
//
// The load generator only needs top-level elements (stream features, SASL
// replies, iq results, messages) as raw strings, so instead of a full XML
// parser per connection this tracks tag depth with indexOf jumps and hands
// out each complete depth-1 element as a slice of the input. It assumes what
// XMPP servers actually send: no DTDs, no CDATA, escaped '<' in text.

const LT = 60; // <
const GT = 62; // >
const SLASH = 47; // /
const QMARK = 63; // ?
const BANG = 33; // !
const DQUOTE = 34;
const SQUOTE = 39;

/** Emitted instead of an element when the server closes its stream. */
export const STREAM_END = '</stream:stream>';

export class StanzaScanner {
  private buf = '';
  private pos = 0;
  private depth = 0;
  private start = -1;

  /** Forget everything, e.g. after STARTTLS or SASL success (stream restart). */
  reset(): void {
    this.buf = '';
    this.pos = 0;
    this.depth = 0;
    this.start = -1;
  }

  push(chunk: string, emit: (el: string) => void): void {
    const buf = this.buf.length === 0 ? chunk : this.buf + chunk;
    let pos = this.pos;
    let depth = this.depth;
    let start = this.start;
    for (;;) {
      const lt = buf.indexOf('<', pos);
      if (lt < 0) {
        pos = buf.length;
        break;
      }
      const gt = tagEnd(buf, lt);
      if (gt < 0) {
        pos = lt;
        break;
      }
      const c = buf.charCodeAt(lt + 1);
      if (c === QMARK || c === BANG) {
        // XML declaration or comment: carries nothing we need.
      } else if (c === SLASH) {
        depth--;
        if (depth === 1 && start >= 0) {
          emit(buf.slice(start, gt + 1));
          start = -1;
        } else if (depth === 0) {
          emit(STREAM_END);
        }
      } else if (buf.charCodeAt(gt - 1) === SLASH) {
        if (depth === 1) emit(buf.slice(lt, gt + 1));
      } else {
        if (depth === 1) start = lt;
        depth++;
      }
      pos = gt + 1;
    }
    // Keep only the unconsumed tail (an incomplete element or tag).
    const keep = start >= 0 ? start : pos;
    this.buf = keep >= buf.length ? '' : buf.slice(keep);
    this.pos = pos - keep;
    this.start = start >= 0 ? 0 : -1;
    this.depth = depth;
  }
}

/** Index of the '>' closing the tag opened at `lt`, skipping quoted attribute values; -1 if incomplete. */
function tagEnd(s: string, lt: number): number {
  let quote = 0;
  for (let i = lt + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (quote !== 0) {
      if (c === quote) quote = 0;
    } else if (c === DQUOTE || c === SQUOTE) {
      quote = c;
    } else if (c === GT) {
      return i;
    } else if (c === LT) {
      return -1; // malformed; wait for more input rather than mis-scan
    }
  }
  return -1;
}

/** Local name of an element string, without namespace prefix ("stream:features" -> "features"). */
export function localName(el: string): string {
  let end = 1;
  while (end < el.length) {
    const c = el.charCodeAt(end);
    if (c === 32 || c === GT || c === SLASH || c === 9 || c === 10 || c === 13) break;
    end++;
  }
  const qname = el.slice(1, end);
  const colon = qname.indexOf(':');
  return colon < 0 ? qname : qname.slice(colon + 1);
}

/** Attribute of the element's start tag. */
export function attr(el: string, name: string): string | undefined {
  const tagEndIdx = el.indexOf('>');
  const head = tagEndIdx < 0 ? el : el.slice(0, tagEndIdx);
  let i = head.indexOf(` ${name}=`);
  if (i < 0) return undefined;
  i += name.length + 2;
  const q = head[i];
  if (q !== '"' && q !== "'") return undefined;
  const end = head.indexOf(q, i + 1);
  return end < 0 ? undefined : unescapeXml(head.slice(i + 1, end));
}

/** Text of the first child element `<name>`/`<name ...>` anywhere inside `el`. */
export function childText(el: string, name: string): string | undefined {
  let i = 0;
  for (;;) {
    i = el.indexOf(`<${name}`, i);
    if (i < 0) return undefined;
    const after = el.charCodeAt(i + name.length + 1);
    if (after === GT || after === 32 || after === SLASH) break;
    i += name.length + 1;
  }
  const gt = el.indexOf('>', i);
  if (gt < 0) return undefined;
  if (el.charCodeAt(gt - 1) === SLASH) return '';
  const close = el.indexOf(`</${name}>`, gt);
  if (close < 0) return undefined;
  return unescapeXml(el.slice(gt + 1, close));
}

/** All texts of `<name>` children (e.g. SASL mechanisms). */
export function childTexts(el: string, name: string): string[] {
  const out: string[] = [];
  const open = `<${name}>`;
  const close = `</${name}>`;
  let i = el.indexOf(open);
  while (i >= 0) {
    const end = el.indexOf(close, i);
    if (end < 0) break;
    out.push(unescapeXml(el.slice(i + open.length, end)));
    i = el.indexOf(open, end);
  }
  return out;
}

export function hasChild(el: string, name: string): boolean {
  return childText(el, name) !== undefined;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c] ?? c);
}

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const UNESC: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function unescapeXml(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(amp|lt|gt|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g, (_m, e: string) => {
    if (e[0] !== '#') return UNESC[e] ?? '';
    return String.fromCodePoint(e[1] === 'x' ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10));
  });
}
