import type { XmlElement } from './element.js';
import { StreamParser } from './parser.js';

/**
 * Payloads that modules keep as XML text (vCards, private storage): serialised so that the text
 * means the same on its own, and parsed back with the same restricted parser that reads streams.
 */

/**
 * Serialises `el` as a standalone document fragment: namespace declarations it inherits from its
 * ancestors (the iq, the stream) are copied onto it, so prefixes and the default namespace it or its
 * descendants rely on still resolve once it is stored away from them.
 */
export function detachedXml(el: XmlElement): string {
  const copy = el.clone();
  for (let a = el.parent; a; a = a.parent)
    for (const key in a.attrs)
      if ((key === 'xmlns' || key.startsWith('xmlns:')) && copy.attrs[key] === undefined)
        copy.attrs[key] = a.attrs[key] as string;
  return copy.toString();
}

/**
 * Parses text written by `detachedXml` (one element, or several concatenated) back into elements.
 * The text was within the stream limits when it arrived, so only size-independent limits apply here.
 */
export function parseFragments(text: string): XmlElement[] {
  const parser = new StreamParser({
    maxStanzaBytes: Buffer.byteLength(text) + 64,
    maxDepth: 1000,
    maxAttributes: 1000,
  });
  const out: XmlElement[] = [];
  parser.on('stanza', (el) => out.push(el));
  parser.write(`<fragment>${text}</fragment>`);
  if (parser.failure) throw new Error(`stored XML does not parse: ${parser.failure.text}`);
  return out;
}
