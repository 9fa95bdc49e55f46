import { createHash } from 'node:crypto';
import type { StreamFeaturesEvent } from '../c2s/stream.js';
import type { LetheModule } from '../core/module.js';
import type { XmlElement } from '../xml/element.js';
import { type DiscoInfo, hostInfo, type Identity, type NodeEvent, NS_DATA, renderInfo } from './disco.js';

/**
 * Entity capabilities (XEP-0115) for the server: a `<c/>` stream feature carrying the hash of the
 * server's disco#info, so that clients can skip asking for it on every login, and the answer to
 * disco#info on the `<node>#<ver>` node clients then use to check the hash.
 */

export const NS_CAPS = 'http://jabber.org/protocol/caps';
export const CAPS_NODE = 'https://lethe.invalid';

/** §5.1: sorting uses the "i;octet" collation, i.e. UTF-8 bytes, not UTF-16 code units. */
function octets(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function byIdentity(a: Identity, b: Identity): number {
  return (
    octets(a.category, b.category) ||
    octets(a.type, b.type) ||
    octets(a.lang ?? '', b.lang ?? '') ||
    octets(a.name ?? '', b.name ?? '')
  );
}

function fieldValues(field: XmlElement): string[] {
  return field.getChildren('value', NS_DATA).map((v) => v.text());
}

function formType(form: XmlElement): string | undefined {
  const field = form.getChildren('field', NS_DATA).find((f) => f.attrs.var === 'FORM_TYPE');
  return field ? fieldValues(field)[0] : undefined;
}

/** The string S of XEP-0115 §5.1, before hashing. Forms without a FORM_TYPE are not part of it (§5.4). */
export function capsString(info: DiscoInfo): string {
  let s = '';
  for (const id of [...info.identities].sort(byIdentity))
    s += `${id.category}/${id.type}/${id.lang ?? ''}/${id.name ?? ''}<`;
  for (const feature of [...info.features].sort(octets)) s += `${feature}<`;
  const forms = info.forms
    .map((form) => ({ form, type: formType(form) }))
    .filter((f): f is { form: XmlElement; type: string } => f.type !== undefined)
    .sort((a, b) => octets(a.type, b.type));
  for (const { form, type } of forms) {
    s += `${type}<`;
    const fields = form
      .getChildren('field', NS_DATA)
      .filter((f) => f.attrs.var !== undefined && f.attrs.var !== 'FORM_TYPE')
      .sort((a, b) => octets(a.attrs.var as string, b.attrs.var as string));
    for (const field of fields) {
      s += `${field.attrs.var}<`;
      for (const value of fieldValues(field).sort(octets)) s += `${value}<`;
    }
  }
  return s;
}

/** The verification string: SHA-1 of S in UTF-8, base64 (§5.1 steps 8 and 9). */
export function capsVer(info: DiscoInfo): string {
  return createHash('sha1').update(capsString(info), 'utf8').digest('base64');
}

export const capsModule: LetheModule = {
  name: 'caps',
  features: [NS_CAPS],
  load(server) {
    const { hooks } = server;
    // Only once authenticated: the hash of a feature set fingerprints the software and its version,
    // and it is only useful to a client that is about to use the server.
    hooks.on('stream-features', (event: StreamFeaturesEvent) => {
      if (!event.authenticated) return;
      event.features.c('c', {
        xmlns: NS_CAPS,
        hash: 'sha-1',
        node: CAPS_NODE,
        ver: capsVer(hostInfo(server, event.host)),
      });
    });
    hooks.on('disco-info-node/host', (event: NodeEvent) => {
      if (!event.node.startsWith(`${CAPS_NODE}#`)) return false;
      const info = hostInfo(server, event.to.domain);
      // An older hash (the configuration changed since) is an unknown node: the client asks again.
      if (event.node !== `${CAPS_NODE}#${capsVer(info)}`) return false;
      renderInfo(info, event.query);
      return true;
    });
  },
};
