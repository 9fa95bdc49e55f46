import { escapeAttr } from '../../xml/element.js';
import type { Jid } from '../../xml/jid.js';
import type { PrivacyRegistry } from '../registry.js';
import { NS_PIE } from './names.js';

/**
 * One account as an XEP-0227 document, streamed as text: every category with an XEP-0227 mapping, in
 * registration order, one element per line. Nothing in it depends on when it was written, so exporting
 * the same data twice gives the same bytes.
 */
export async function* pieDocument(
  registry: PrivacyRegistry,
  user: Jid,
  onElement: (category: string) => void = () => {},
): AsyncGenerator<string> {
  yield `<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='${NS_PIE}'>\n`;
  yield `<host jid='${escapeAttr(user.domain)}'>\n<user name='${escapeAttr(user.local)}'>\n`;
  for (const category of registry.all()) {
    const mapping = category.xep0227;
    if (!mapping) continue;
    const container = mapping.container && containerTags(mapping.container);
    let open = false;
    for await (const el of mapping.export(user)) {
      if (container && !open) {
        yield `${container.open}\n`;
        open = true;
      }
      onElement(category.id);
      yield `${el.toString()}\n`;
    }
    if (open && container) yield `${container.close}\n`;
  }
  yield '</user>\n</host>\n</server-data>\n';
}

/** Tags of a container `{ns}name`: XEP-0227's own (`<offline-messages/>`) inherit its namespace, others declare theirs (Prosody's `<archive xmlns='urn:xmpp:pie:0#mam'/>`). */
function containerTags(key: string): { open: string; close: string } {
  const m = /^\{([^}]*)\}(.+)$/.exec(key);
  if (!m) throw new Error(`container ${key} is not a {namespace}name key`);
  const [, ns, name] = m as unknown as [string, string, string];
  return { open: ns === NS_PIE ? `<${name}>` : `<${name} xmlns='${escapeAttr(ns)}'>`, close: `</${name}>` };
}
