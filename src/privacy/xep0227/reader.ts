import { createReadStream } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { XmlElement } from '../../xml/element.js';
import { NS_PIE, NS_XINCLUDE } from './names.js';

/**
 * A streaming reader of XEP-0227 documents. It cannot reuse the XMPP stream parser (src/xml/parser.ts),
 * which delivers whole depth-1 elements: here depth 1 is a `<host/>` holding every user. Instead it
 * builds one child of `<user/>` at a time, and the children of a container (`<offline-messages/>`) one
 * by one, so memory stays flat however large the file. Children nobody asked for are skipped unbuilt.
 *
 * Accepted: `<server-data/>` documents (Prosody, Lethe), a `<host/>` or `<user/>` root, and XInclude at
 * the places §7 of the XEP allows (hosts in `<server-data/>`, users in `<host/>`), which ejabberd uses.
 * Restricted XML, as on streams: no DTD (so no entity expansion), bounded depth and element size.
 */

export type PieEvent =
  | { type: 'host'; jid: string }
  | { type: 'user'; name: string; password: string | undefined }
  | { type: 'element'; el: XmlElement; container: string | undefined }
  | { type: 'skipped'; key: string }
  | { type: 'user-end' }
  | { type: 'host-end' };

export interface ReaderOptions {
  /** Keys (`{ns}local`) of the children of `<user/>`, and `<container key> {ns}local` of a container's, that are built and delivered. */
  wanted: ReadonlySet<string>;
  /** Keys of children of `<user/>` whose children are delivered one by one. */
  containers: ReadonlySet<string>;
  /** Called with the number of bytes read, for progress. */
  onBytes?: (n: number) => void;
}

export class PieFormatError extends Error {}

const MAX_DEPTH = 256;
/** One child of `<user/>` (a roster, a vCard with its photo, one offline message) in UTF-16 units. */
const MAX_ELEMENT_CHARS = 64 * 1024 * 1024;
const MAX_INCLUDE_DEPTH = 4;

type Frame =
  | { kind: 'server-data' | 'host' | 'user' | 'skip' }
  | { kind: 'container'; key: string }
  | { kind: 'build'; el: XmlElement; root: XmlElement; container: string | undefined; declared: Set<string> };

type Queued = PieEvent | { type: 'include'; href: string; expect: 'host' | 'user' };

/** Reads a file, following its XIncludes (relative paths inside the file's directory only). */
export async function* readPieFile(path: string, options: ReaderOptions): AsyncGenerator<PieEvent> {
  yield* readFile(resolve(path), ['server-data', 'host', 'user'], options, dirname(resolve(path)), 0);
}

/** Reads a document from a stream (an entry of an export archive); XIncludes are refused, there is nothing to resolve them against. */
export function readPieStream(input: Readable, name: string, options: ReaderOptions): AsyncGenerator<PieEvent> {
  return readSource(input, name, ['server-data', 'host', 'user'], options, undefined, 0);
}

async function* readFile(
  path: string,
  roots: string[],
  options: ReaderOptions,
  baseDir: string,
  depth: number,
): AsyncGenerator<PieEvent> {
  const input = createReadStream(path, { highWaterMark: 64 * 1024 });
  try {
    yield* readSource(input, path, roots, options, baseDir, depth);
  } finally {
    input.destroy();
  }
}

async function* readSource(
  input: Readable,
  name: string,
  roots: string[],
  options: ReaderOptions,
  baseDir: string | undefined,
  depth: number,
): AsyncGenerator<PieEvent> {
  const queue: Queued[] = [];
  const parser = new DocumentParser(name, roots, options, queue);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const drain = async function* (): AsyncGenerator<PieEvent> {
    // Taken one at a time from the front: an include's events must come before what follows it.
    for (let ev = queue.shift(); ev; ev = queue.shift()) {
      if (ev.type !== 'include') {
        yield ev;
        continue;
      }
      if (baseDir === undefined) throw new PieFormatError(`${name}: XInclude is not supported in an archive`);
      if (depth >= MAX_INCLUDE_DEPTH) throw new PieFormatError(`${name}: XIncludes nested too deeply`);
      yield* readFile(includePath(baseDir, ev.href, name), [ev.expect], options, baseDir, depth + 1);
    }
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    options.onBytes?.(chunk.length);
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch {
      throw new PieFormatError(`${name}: not valid UTF-8`);
    }
    parser.write(text);
    yield* drain();
  }
  parser.end();
  yield* drain();
}

/**
 * Where an include points, refused unless it is a relative path staying within the main document's
 * directory: a hostile file must not make the importer read (and report on) arbitrary files.
 */
function includePath(baseDir: string, href: string, from: string): string {
  if (href === '' || /^[a-z][a-z0-9+.-]*:/i.test(href) || isAbsolute(href))
    throw new PieFormatError(`${from}: XInclude of ${JSON.stringify(href)}: only relative file paths are allowed`);
  const target = resolve(baseDir, href);
  const rel = relative(baseDir, target);
  if (rel.startsWith('..') || isAbsolute(rel))
    throw new PieFormatError(`${from}: XInclude of ${JSON.stringify(href)} leaves the document's directory`);
  return target;
}

class DocumentParser {
  private readonly sax = new SaxesParser({ xmlns: true, position: true });
  private readonly stack: Frame[] = [];
  private buildChars = 0;
  private error: PieFormatError | undefined;

  constructor(
    private readonly name: string,
    private readonly roots: string[],
    private readonly options: ReaderOptions,
    private readonly queue: Queued[],
  ) {
    this.sax.on('opentag', (tag) => this.guard(() => this.open(tag)));
    this.sax.on('closetag', () => this.guard(() => this.close()));
    this.sax.on('text', (text) => this.guard(() => this.text(text)));
    this.sax.on('cdata', (text) => this.guard(() => this.text(text)));
    this.sax.on('doctype', () => this.guard(() => this.fail('a DTD is not allowed')));
    this.sax.on('error', (err) => {
      this.error ??= new PieFormatError(`${this.name}: ${err.message}`);
    });
  }

  write(text: string): void {
    this.sax.write(text);
    if (this.error) throw this.error;
  }

  end(): void {
    this.sax.close();
    if (this.error) throw this.error;
  }

  private guard(fn: () => void): void {
    if (this.error) return;
    try {
      fn();
    } catch (err) {
      this.error = err instanceof PieFormatError ? err : new PieFormatError(`${this.name}: ${(err as Error).message}`);
    }
  }

  private fail(message: string): never {
    throw new PieFormatError(`${this.name}:${this.sax.line}:${this.sax.column}: ${message}`);
  }

  private open(tag: SaxesTagNS): void {
    if (this.stack.length >= MAX_DEPTH) this.fail(`elements nested deeper than ${MAX_DEPTH}`);
    const top = this.stack.at(-1);
    const key = `{${tag.uri}}${tag.local}`;
    if (!top) return this.openRoot(tag);
    switch (top.kind) {
      case 'server-data':
        if (key === `{${NS_PIE}}host`) return this.openHost(tag);
        if (key === `{${NS_XINCLUDE}}include`) return this.include(tag, 'host');
        return this.skip(key);
      case 'host':
        if (key === `{${NS_PIE}}user`) return this.openUser(tag);
        if (key === `{${NS_XINCLUDE}}include`) return this.include(tag, 'user');
        return this.skip(key);
      case 'user':
        if (this.options.containers.has(key)) {
          this.stack.push({ kind: 'container', key });
          return;
        }
        return this.options.wanted.has(key) ? this.build(tag, undefined) : this.skip(key);
      case 'container': {
        const inner = `${top.key} ${key}`;
        return this.options.wanted.has(inner) ? this.build(tag, top.key) : this.skip(inner);
      }
      case 'build': {
        const el = this.element(tag, top.root, top.declared);
        top.el.append(el);
        this.stack.push({ ...top, el });
        return;
      }
      case 'skip':
        this.stack.push(top);
    }
  }

  private openRoot(tag: SaxesTagNS): void {
    const root = tag.uri === NS_PIE && this.roots.includes(tag.local) ? tag.local : undefined;
    if (root === 'server-data') this.stack.push({ kind: 'server-data' });
    else if (root === 'host') this.openHost(tag);
    else if (root === 'user') this.openUser(tag);
    else
      this.fail(
        `expected <${this.roots.join('/>, <')}/> in ${NS_PIE} (XEP-0227), found <${tag.local}${tag.uri ? ` xmlns='${tag.uri}'` : ''}>`,
      );
  }

  private openHost(tag: SaxesTagNS): void {
    const jid = tag.attributes.jid?.value;
    if (!jid) this.fail('<host/> without a jid attribute');
    this.queue.push({ type: 'host', jid });
    this.stack.push({ kind: 'host' });
  }

  private openUser(tag: SaxesTagNS): void {
    if (this.stack.at(-1)?.kind !== 'host' && this.roots.length > 1)
      this.fail('<user/> outside a <host/>: the host it belongs to is unknown');
    const name = tag.attributes.name?.value;
    if (!name) this.fail('<user/> without a name attribute');
    this.queue.push({ type: 'user', name, password: tag.attributes.password?.value });
    this.stack.push({ kind: 'user' });
  }

  private include(tag: SaxesTagNS, expect: 'host' | 'user'): void {
    const href = tag.attributes.href?.value;
    if (href === undefined) this.fail('<xi:include/> without href');
    if ((tag.attributes.parse?.value ?? 'xml') !== 'xml') this.fail('only XInclude with parse="xml" is supported');
    this.queue.push({ type: 'include', href, expect });
    this.stack.push({ kind: 'skip' });
  }

  private skip(key: string): void {
    this.queue.push({ type: 'skipped', key });
    this.stack.push({ kind: 'skip' });
  }

  private build(tag: SaxesTagNS, container: string | undefined): void {
    const declared = new Set<string>();
    const root = new XmlElement(tag.name);
    this.buildChars = 0;
    const el = this.element(tag, root, declared, root);
    this.stack.push({ kind: 'build', el, root: el, container, declared });
  }

  /**
   * An element of a detached subtree. Namespaces are kept as written (prefixes and all), and whatever
   * the subtree uses but inherits from outside it is declared on its root, so that it means the same
   * standing alone.
   */
  private element(tag: SaxesTagNS, root: XmlElement, declared: Set<string>, self?: XmlElement): XmlElement {
    const el = self ?? new XmlElement(tag.name);
    for (const attr of Object.values(tag.attributes)) {
      el.attrs[attr.name] = attr.value;
      this.count(attr.name.length + attr.value.length);
      if (attr.prefix === 'xmlns') declared.add(attr.local);
      else if (attr.name === 'xmlns') declared.add('');
    }
    const needs: [string, string][] = [[tag.prefix, tag.uri]];
    for (const attr of Object.values(tag.attributes))
      if (attr.prefix !== '' && attr.prefix !== 'xmlns' && attr.prefix !== 'xml') needs.push([attr.prefix, attr.uri]);
    for (const [prefix, uri] of needs) {
      if (declared.has(prefix) || (prefix === '' && uri === '')) continue;
      root.attrs[prefix === '' ? 'xmlns' : `xmlns:${prefix}`] = uri;
      declared.add(prefix);
    }
    this.count(tag.name.length);
    return el;
  }

  private count(chars: number): void {
    this.buildChars += chars;
    if (this.buildChars > MAX_ELEMENT_CHARS) this.fail(`an element is larger than ${MAX_ELEMENT_CHARS} characters`);
  }

  private close(): void {
    const frame = this.stack.pop();
    if (!frame) return;
    if (frame.kind === 'build') {
      if (frame.el === frame.root) this.queue.push({ type: 'element', el: frame.root, container: frame.container });
    } else if (frame.kind === 'user') this.queue.push({ type: 'user-end' });
    else if (frame.kind === 'host') this.queue.push({ type: 'host-end' });
  }

  private text(text: string): void {
    const top = this.stack.at(-1);
    // Text between structural elements is layout; inside skipped elements, nobody's business.
    if (top?.kind !== 'build') return;
    this.count(text.length);
    top.el.t(text);
  }
}
