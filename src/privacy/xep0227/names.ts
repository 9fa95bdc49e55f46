import type { XmlElement } from '../../xml/element.js';

/** Namespaces of XEP-0227 (Portable Import/Export Format) and of Lethe's own additions to it. */
export const NS_PIE = 'urn:xmpp:pie:0';
export const NS_PIE_SCRAM = 'urn:xmpp:pie:0#scram';
export const NS_XINCLUDE = 'http://www.w3.org/2001/XInclude';
/**
 * What XEP-0227 has no place for (when an account was created, when a vCard was last changed) travels
 * in this namespace, as the XEP allows (§3), so that a Lethe-to-Lethe move loses nothing; other
 * servers ignore it, the way Lethe ignores Prosody's `http://prosody.im/protocol/extended-xep0227`.
 */
export const NS_LETHE_PIE = 'https://lethe.invalid/protocol/pie';
export const LETHE_PREFIX = 'lethe';

/** `{namespace}localName`, the key mappings use to claim elements whatever prefix a file used. */
export function elementKey(el: XmlElement): string {
  return `{${el.xmlns ?? ''}}${el.localName}`;
}

export function key(ns: string, localName: string): string {
  return `{${ns}}${localName}`;
}

/** Sets a Lethe attribute (declaring the prefix) on an element that belongs to another namespace. */
export function setLetheAttr(el: XmlElement, name: string, value: string): void {
  el.attrs[`xmlns:${LETHE_PREFIX}`] = NS_LETHE_PIE;
  el.attrs[`${LETHE_PREFIX}:${name}`] = value;
}

/**
 * Reads and removes a Lethe attribute, whatever prefix the file bound to the namespace, so that the
 * stored element is the user's own XML again. Declarations of the namespace go as well.
 */
export function takeLetheAttr(el: XmlElement, name: string): string | undefined {
  let value: string | undefined;
  for (const k of Object.keys(el.attrs)) {
    if (!k.startsWith('xmlns:') || el.attrs[k] !== NS_LETHE_PIE) continue;
    const prefix = k.slice(6);
    value ??= el.attrs[`${prefix}:${name}`];
    delete el.attrs[`${prefix}:${name}`];
    if (!Object.keys(el.attrs).some((a) => a.startsWith(`${prefix}:`))) delete el.attrs[k];
  }
  return value;
}

/** A date attribute of an imported element as ISO 8601, or undefined when it is missing or no date. */
export function isoDate(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}
