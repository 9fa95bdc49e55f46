/**
 * A parsed or built XML element. Deliberately small: stanzas are routed far more
 * often than they are inspected, so the element keeps raw names and attributes
 * (prefixes included) and serialises without a DOM.
 */
export type XmlNode = XmlElement | string;

export class XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  parent: XmlElement | undefined;

  constructor(name: string, attrs: Record<string, string | undefined> = {}, children: XmlNode[] = []) {
    this.name = name;
    this.attrs = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) this.attrs[k] = v;
    this.children = [];
    for (const c of children) this.append(c);
  }

  /** The element's namespace: its own xmlns (or prefixed xmlns), else the nearest ancestor's. */
  get xmlns(): string | undefined {
    const colon = this.name.indexOf(':');
    const key = colon === -1 ? 'xmlns' : `xmlns:${this.name.slice(0, colon)}`;
    for (let el: XmlElement | undefined = this; el; el = el.parent) {
      const ns = el.attrs[key];
      if (ns !== undefined) return ns;
    }
    return undefined;
  }

  /** Local name without a prefix. */
  get localName(): string {
    const colon = this.name.indexOf(':');
    return colon === -1 ? this.name : this.name.slice(colon + 1);
  }

  is(localName: string, xmlns?: string): boolean {
    return this.localName === localName && (xmlns === undefined || this.xmlns === xmlns);
  }

  attr(name: string): string | undefined {
    return this.attrs[name];
  }

  setAttr(name: string, value: string | undefined): this {
    if (value === undefined) delete this.attrs[name];
    else this.attrs[name] = value;
    return this;
  }

  append(child: XmlNode): this {
    if (typeof child !== 'string') child.parent = this;
    this.children.push(child);
    return this;
  }

  /** Adds a child element and returns the child, for building nested trees. */
  c(name: string, attrs: Record<string, string | undefined> = {}): XmlElement {
    const child = new XmlElement(name, attrs);
    this.append(child);
    return child;
  }

  /** Adds a text child and returns this element. */
  t(text: string): this {
    return this.append(text);
  }

  elements(): XmlElement[] {
    return this.children.filter((c): c is XmlElement => typeof c !== 'string');
  }

  getChild(localName: string, xmlns?: string): XmlElement | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.is(localName, xmlns)) return c;
    return undefined;
  }

  getChildren(localName: string, xmlns?: string): XmlElement[] {
    return this.elements().filter((c) => c.is(localName, xmlns));
  }

  /** The first child element in the given namespace, whatever its name. */
  getChildByNs(xmlns: string): XmlElement | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.xmlns === xmlns) return c;
    return undefined;
  }

  text(): string {
    let out = '';
    for (const c of this.children) if (typeof c === 'string') out += c;
    return out;
  }

  getChildText(localName: string, xmlns?: string): string | undefined {
    return this.getChild(localName, xmlns)?.text();
  }

  remove(child: XmlElement): this {
    const i = this.children.indexOf(child);
    if (i !== -1) this.children.splice(i, 1);
    child.parent = undefined;
    return this;
  }

  removeChildren(localName: string, xmlns?: string): this {
    this.children = this.children.filter((c) => typeof c === 'string' || !c.is(localName, xmlns));
    return this;
  }

  /** Deep copy, detached from any parent. Namespaces inherited from ancestors are made explicit on the copy. */
  clone(): XmlElement {
    const copy = cloneTree(this);
    if (this.parent && copy.attrs.xmlns === undefined && !this.name.includes(':')) {
      const ns = this.xmlns;
      if (ns !== undefined) copy.attrs.xmlns = ns;
    }
    return copy;
  }

  toString(): string {
    let out = `<${this.name}`;
    for (const k in this.attrs) out += ` ${k}="${escapeAttr(this.attrs[k] as string)}"`;
    if (this.children.length === 0) return `${out}/>`;
    out += '>';
    for (const c of this.children) out += typeof c === 'string' ? escapeText(c) : c.toString();
    return `${out}</${this.name}>`;
  }
}

function cloneTree(el: XmlElement): XmlElement {
  const copy = new XmlElement(el.name, { ...el.attrs });
  for (const c of el.children) copy.append(typeof c === 'string' ? c : cloneTree(c));
  return copy;
}

/** Builder shorthand: x('iq', { type: 'result' }, x('query', { xmlns: NS })). */
export function x(
  name: string,
  attrs: Record<string, string | undefined> = {},
  ...children: (XmlNode | undefined | false)[]
): XmlElement {
  const el = new XmlElement(name, attrs);
  for (const c of children) if (c !== undefined && c !== false) el.append(c);
  return el;
}

const textEscapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };
const attrEscapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

export function escapeText(s: string): string {
  return /[&<>]/.test(s) ? s.replace(/[&<>]/g, (ch) => textEscapes[ch] as string) : s;
}

export function escapeAttr(s: string): string {
  return /[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (ch) => attrEscapes[ch] as string) : s;
}
