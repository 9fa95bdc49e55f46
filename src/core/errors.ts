import { type XmlElement, x } from '../xml/element.js';

export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';

export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** RFC 6120 §8.3.3 conditions with the error type the RFC gives each. */
export const stanzaErrorTypes = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  gone: 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  redirect: 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
} as const satisfies Record<string, StanzaErrorType>;

export type StanzaErrorCondition = keyof typeof stanzaErrorTypes;

/** Thrown by handlers to answer a request with a stanza error. */
export class StanzaError extends Error {
  /** An application-specific condition (RFC 6120 §8.3.2), such as urn:xmpp:tos:0's `<agreement-required/>`. */
  application: XmlElement | undefined;

  constructor(
    readonly condition: StanzaErrorCondition,
    readonly text?: string,
    readonly type: StanzaErrorType = stanzaErrorTypes[condition],
  ) {
    super(text ?? condition);
  }

  withApplicationCondition(el: XmlElement): this {
    this.application = el;
    return this;
  }
}

/**
 * The error reply to a stanza (RFC 6120 §8.3): addresses swapped, original payload kept for
 * message and presence, `by` naming the entity that generated it.
 */
export function errorReply(stanza: XmlElement, error: StanzaError, by?: string): XmlElement {
  const reply = x(stanza.name, {
    xmlns: stanza.attrs.xmlns,
    type: 'error',
    id: stanza.attrs.id,
    from: stanza.attrs.to,
    to: stanza.attrs.from,
  });
  if (stanza.name !== 'iq') for (const child of stanza.elements()) reply.append(child.clone());
  const err = reply.c('error', { type: error.type, by });
  err.c(error.condition, { xmlns: NS_STANZAS });
  if (error.text) err.c('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }).t(error.text);
  if (error.application) err.append(error.application.clone());
  return reply;
}

export function streamError(condition: string, text?: string): XmlElement {
  const el = x('stream:error', {}, x(condition, { xmlns: NS_STREAMS }));
  if (text) el.c('text', { xmlns: NS_STREAMS, 'xml:lang': 'en' }).t(text);
  return el;
}
