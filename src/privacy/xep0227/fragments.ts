import type { XmlElement } from '../../xml/element.js';
import { StreamParser } from '../../xml/parser.js';

/**
 * Parses many stored fragments (offline messages, one after another) with one parser: setting up a
 * parser costs more than parsing a message, which is what an export of a large store does 100 000 times.
 */
export class FragmentParser {
  private parser = this.fresh();
  private out: XmlElement[] = [];

  private fresh(): StreamParser {
    const parser = new StreamParser({ maxStanzaBytes: 64 * 1024 * 1024, maxDepth: 1000, maxAttributes: 1000 });
    parser.on('stanza', (el) => this.out.push(el));
    parser.write('<fragments>');
    return parser;
  }

  /** The elements of one stored text, as `parseFragments` gives them. */
  parse(text: string): XmlElement[] {
    this.out = [];
    this.parser.write(text);
    const failure = this.parser.failure;
    if (failure) {
      // A parser that failed stays failed; the next text gets a new one.
      this.parser = this.fresh();
      throw new Error(`stored XML does not parse: ${failure.text}`);
    }
    return this.out;
  }
}
