import type { ChannelBindingType } from '../auth/types.js';

/**
 * A byte stream to one peer, as the XMPP stream layer sees it: it can write, upgrade to TLS and
 * provide channel binding, and knows nothing about XMPP.
 */
export interface Connection {
  readonly id: string;
  /** Peer address; personal data, so only ever logged through `formatIp`. */
  readonly remoteAddress: string | undefined;
  readonly secure: boolean;
  /** True when TLS was on from the first byte (XEP-0368). */
  readonly directTls: boolean;
  /** True when STARTTLS can still be offered. */
  readonly canStartTls: boolean;
  write(data: string): void;
  /** Upgrades a plain connection in place; data arriving after the call is decrypted. */
  startTls(): Promise<void>;
  channelBindingTypes(): ChannelBindingType[];
  channelBinding(type: ChannelBindingType): Buffer | undefined;
  setHandlers(handlers: { data(chunk: Buffer): void; close(): void }): void;
  /** Flushes what was written, then closes. */
  end(): void;
  destroy(): void;
}
