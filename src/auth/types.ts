/** Contracts between the c2s stream (which owns the socket) and SASL mechanisms (which know nothing of sockets). */

export type ScramHash = 'sha1' | 'sha256';

/** What is stored per user and hash: never the password itself (RFC 5802 §3). */
export interface ScramCredentials {
  hash: ScramHash;
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export type ChannelBindingType = 'tls-exporter' | 'tls-server-end-point';

/** What a mechanism may ask of the connection and the account store. */
export interface SaslContext {
  /** True once the stream is encrypted; PLAIN is refused otherwise. */
  secure: boolean;
  /** Channel binding types this connection can provide, best first (XEP-0440 advertises them). */
  channelBindingTypes: ChannelBindingType[];
  /** The channel binding data for a type, or undefined when this connection cannot provide it. */
  channelBinding(type: ChannelBindingType): Buffer | undefined;
  /**
   * What to do when a client says it supports channel binding but uses none ('y' flag) although -PLUS was
   * offered: RFC 5802 says fail (`refuse`); `allow` admits clients whose only binding type (tls-unique)
   * does not exist in TLS 1.3. Defaults to `refuse` where unset.
   */
  channelBindingDowngrade?: 'allow' | 'refuse';
  /** Credentials for a (SASLprep-ed, lower-cased) username; undefined when the user does not exist. */
  lookupCredentials(username: string, hash: ScramHash): Promise<ScramCredentials | undefined>;
  /** The served domain, so an authzid that is the user's own bare JID is accepted; without it only the username is. */
  domain?: string;
  /** Iteration count new credentials get (default 4096); unknown users are shown the same so they look real. */
  scramIterations?: number;
}

/** RFC 6120 §6.5 SASL failure conditions. */
export type SaslFailureCondition =
  | 'aborted'
  | 'account-disabled'
  | 'credentials-expired'
  | 'encryption-required'
  | 'incorrect-encoding'
  | 'invalid-authzid'
  | 'invalid-mechanism'
  | 'malformed-request'
  | 'mechanism-too-weak'
  | 'not-authorized'
  | 'temporary-auth-failure';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  | { kind: 'success'; username: string; authzid?: string; data?: Buffer }
  | { kind: 'failure'; condition: SaslFailureCondition; text?: string };

/** One authentication attempt. `step` is called with the initial response, then with each client response. */
export interface SaslMechanism {
  readonly name: string;
  step(data: Buffer): Promise<SaslStep>;
}
