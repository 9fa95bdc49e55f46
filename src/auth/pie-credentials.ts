import { NS_PIE_SCRAM } from '../privacy/xep0227/names.js';
import { type XmlElement, x } from '../xml/element.js';
import type { ScramCredentials, ScramHash } from './types.js';

/**
 * SCRAM credentials in XEP-0227 (§4.3, `<scram-credentials/>`): the keys as they are, so an account
 * moves between servers without anyone knowing its password.
 */

const MECHANISM: Record<ScramHash, string> = { sha1: 'SCRAM-SHA-1', sha256: 'SCRAM-SHA-256' };
const DIGEST_BYTES: Record<ScramHash, number> = { sha1: 20, sha256: 32 };
const MAX_ITERATIONS = 10_000_000;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function scramElement(c: ScramCredentials): XmlElement {
  return x(
    'scram-credentials',
    { xmlns: NS_PIE_SCRAM, mechanism: MECHANISM[c.hash] },
    x('iter-count', {}, String(c.iterations)),
    x('salt', {}, c.salt.toString('base64')),
    x('server-key', {}, c.serverKey.toString('base64')),
    x('stored-key', {}, c.storedKey.toString('base64')),
  );
}

/** Thrown for credentials that cannot be right; the import stops rather than leave an account nobody can log in to. */
export class CredentialsError extends Error {}

/**
 * Reads `<scram-credentials/>`; undefined for a mechanism Lethe does not use (the caller says so).
 * ejabberd 23 base64-encodes its (already base64) values once more: when the stored key is only the
 * right length after a second decoding, every value of the element is decoded twice.
 */
export function parseScramElement(el: XmlElement): ScramCredentials | undefined {
  const mechanism = el.attrs.mechanism;
  const hash = (Object.keys(MECHANISM) as ScramHash[]).find((h) => MECHANISM[h] === mechanism);
  if (!hash) return undefined;
  const field = (name: string): string => {
    const children = el.getChildren(name, NS_PIE_SCRAM);
    if (children.length !== 1) throw new CredentialsError(`${mechanism} credentials need exactly one <${name}/>`);
    return (children[0] as XmlElement).text().trim();
  };
  const iterText = field('iter-count');
  // Bounded: every login costs this many HMACs, and a hostile file must not make logins a denial of service.
  if (!/^[1-9][0-9]{0,7}$/.test(iterText) || Number(iterText) > MAX_ITERATIONS)
    throw new CredentialsError(
      `${mechanism} iter-count ${JSON.stringify(iterText)} is not an integer from 1 to ${MAX_ITERATIONS}`,
    );
  const values = { salt: field('salt'), serverKey: field('server-key'), storedKey: field('stored-key') };
  const once = (text: string, what: string): Buffer => {
    if (text === '' || !BASE64.test(text)) throw new CredentialsError(`${mechanism} ${what} is not base64`);
    return Buffer.from(text, 'base64');
  };
  const bytes = DIGEST_BYTES[hash];
  const stored = once(values.storedKey, 'stored-key');
  const twice = stored.length !== bytes && BASE64.test(stored.toString('latin1'));
  const decode = (text: string, what: string): Buffer => {
    const first = once(text, what);
    return twice ? once(first.toString('latin1'), what) : first;
  };
  const credentials: ScramCredentials = {
    hash,
    iterations: Number(iterText),
    salt: decode(values.salt, 'salt'),
    serverKey: decode(values.serverKey, 'server-key'),
    storedKey: decode(values.storedKey, 'stored-key'),
  };
  if (credentials.storedKey.length !== bytes || credentials.serverKey.length !== bytes)
    throw new CredentialsError(`${mechanism} keys must be ${bytes} bytes`);
  if (credentials.salt.length === 0) throw new CredentialsError(`${mechanism} salt is empty`);
  return credentials;
}
