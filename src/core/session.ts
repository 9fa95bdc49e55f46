import type { XmlElement } from '../xml/element.js';
import type { Jid } from '../xml/jid.js';

/**
 * A bound client session as features see it: an address, presence state and a way to send.
 * Features never see the socket or the stream behind it.
 */
export interface ClientSession {
  readonly id: string;
  readonly jid: Jid;
  readonly secure: boolean;
  /** Available presence last broadcast by the client, or undefined while unavailable. */
  presence: XmlElement | undefined;
  /** RFC 6121 priority of the current available presence. */
  priority: number;
  /** True once the client has requested its roster (RFC 6121 §2.1.6: only these get roster pushes). */
  interested: boolean;
  /** Entities that got directed presence from this session and must get unavailable when it ends. */
  readonly directedPresence: Set<string>;
  /** Per-feature state, keyed by module name, so the core never learns what features keep. */
  readonly state: Map<string, unknown>;
  send(stanza: XmlElement): void;
  /** Ends the stream, with a stream error when given. */
  close(error?: { condition: string; text?: string }): void;
}
