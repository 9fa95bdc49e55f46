/** SCRAM (RFC 5802, RFC 7677) server side, plus the credential derivation PLAIN shares with it. */

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import type {
  ChannelBindingType,
  SaslContext,
  SaslFailureCondition,
  SaslMechanism,
  SaslStep,
  ScramCredentials,
  ScramHash,
} from './types.js';

// saslprep is CommonJS without type declarations.
const saslprepImpl = createRequire(import.meta.url)('saslprep') as (
  input: string,
  opts?: { allowUnassigned?: boolean },
) => string;

/**
 * SASLprep (RFC 4013). Passwords are "stored strings" (RFC 5802 §2.2: unassigned code points refused);
 * usernames are "query" strings (RFC 5802 §5.1: allowed). Throws on prohibited input.
 */
export function saslPrep(input: string, kind: 'stored' | 'query' = 'stored'): string {
  return saslprepImpl(input, { allowUnassigned: kind === 'query' });
}

export const SCRAM_MECHANISMS = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1'] as const;
export type ScramMechanismName = (typeof SCRAM_MECHANISMS)[number];

export function isScramMechanism(name: string): name is ScramMechanismName {
  return (SCRAM_MECHANISMS as readonly string[]).includes(name);
}

/** RFC 7677 §4 minimum; used for unknown users when the context does not say what real users get. */
export const DEFAULT_SCRAM_ITERATIONS = 4096;

const SALT_BYTES = 16;
const DIGEST_BYTES: Record<ScramHash, number> = { sha1: 20, sha256: 32 };
const CHANNEL_BINDING_TYPES: readonly string[] = [
  'tls-exporter',
  'tls-server-end-point',
] satisfies ChannelBindingType[];

const hmac = (hash: ScramHash, key: Buffer, data: string | Buffer): Buffer =>
  createHmac(hash, key).update(data).digest();
const digest = (hash: ScramHash, data: Buffer): Buffer => createHash(hash).update(data).digest();

function saltedPassword(password: string, hash: ScramHash, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, DIGEST_BYTES[hash], hash);
}

/** Throws when the password fails SASLprep (e.g. control characters), so registration can refuse it. */
export function deriveScramCredentials(
  password: string,
  hash: ScramHash,
  iterations: number,
  salt: Buffer = randomBytes(SALT_BYTES),
): ScramCredentials {
  const salted = saltedPassword(password, hash, salt, iterations);
  return {
    hash,
    salt,
    iterations,
    storedKey: digest(hash, hmac(hash, salted, 'Client Key')),
    serverKey: hmac(hash, salted, 'Server Key'),
  };
}

/** For PLAIN: recompute StoredKey from the password and compare in constant time. */
export function verifyPassword(password: string, creds: ScramCredentials): boolean {
  let salted: Buffer;
  try {
    salted = saltedPassword(password, creds.hash, creds.salt, creds.iterations);
  } catch {
    return false;
  }
  const storedKey = digest(creds.hash, hmac(creds.hash, salted, 'Client Key'));
  return storedKey.length === creds.storedKey.length && timingSafeEqual(storedKey, creds.storedKey);
}

const fakeSecret = randomBytes(32);

/**
 * Credentials for a user that does not exist: stable per username (repeated probes see the same salt)
 * but unpredictable without the per-process secret, and no password matches them.
 */
export function fakeCredentials(username: string, hash: ScramHash, iterations: number): ScramCredentials {
  const seed = createHmac('sha256', fakeSecret).update(`${hash}\0${username}`).digest();
  return {
    hash,
    salt: seed.subarray(0, SALT_BYTES),
    iterations,
    storedKey: hmac(hash, seed, 'Stored Key'),
    serverKey: hmac(hash, seed, 'Server Key'),
  };
}

/** An authzid is accepted only when it names the authenticated user: the username or its bare JID. */
export function authzidAllowed(authzid: string, username: string, domain: string | undefined): boolean {
  const a = authzid.toLowerCase();
  return a === '' || a === username || (domain !== undefined && a === `${username}@${domain.toLowerCase()}`);
}

/** Thrown inside a mechanism to end the exchange with a given condition. */
export class SaslFailure extends Error {
  readonly condition: SaslFailureCondition;
  readonly text: string | undefined;

  constructor(condition: SaslFailureCondition, text?: string) {
    super(text ?? condition);
    this.condition = condition;
    this.text = text;
  }

  toStep(): SaslStep {
    return { kind: 'failure', condition: this.condition, ...(this.text !== undefined && { text: this.text }) };
  }
}

// A declaration (not an arrow) so that TypeScript narrows after calls to it.
export function fail(condition: SaslFailureCondition, text?: string): never {
  throw new SaslFailure(condition, text);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8: invalid sequences are an encoding error, not something to repair. */
export function decodeUtf8(data: Buffer): string {
  try {
    return utf8.decode(data);
  } catch {
    return fail('incorrect-encoding', 'invalid UTF-8');
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text)) fail('incorrect-encoding', `${what} is not base64`);
  return Buffer.from(text, 'base64');
}

/** RFC 5802 saslname: ',' and '=' travel as '=2C' and '=3D'; any other '=' is malformed. */
function decodeSaslname(text: string, what: string): string {
  if (text === '' || /=(?!2C|3D)/.test(text)) fail('malformed-request', `bad ${what}`);
  return text.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

/** Optional extensions are ignored (RFC 5802 §5.1) but the mandatory-extension marker m= must fail. */
function checkExtensions(attrs: string[]): void {
  for (const attr of attrs) {
    if (attr.startsWith('m=')) fail('malformed-request', 'unsupported mandatory extension');
    if (!/^[A-Za-z]=/.test(attr)) fail('malformed-request', 'bad attribute');
  }
}

export interface ScramServerOptions {
  /** Server half of the nonce; for test vectors only, by default 18 random bytes in base64. */
  serverNonce?: string;
  /**
   * Fail a client's 'y' flag, which RFC 5802 §6 reads as a downgrade when -PLUS was advertised.
   * Defaults to ctx.channelBindingTypes being non-empty.
   */
  refuseDowngrade?: boolean;
}

export class ScramServer implements SaslMechanism {
  readonly name: ScramMechanismName;
  readonly #ctx: SaslContext;
  readonly #hash: ScramHash;
  readonly #plus: boolean;
  readonly #refuseDowngrade: boolean;
  readonly #serverNonce: string | undefined;
  #stage: 'first' | 'final' | 'done' = 'first';
  #askedForFirst = false;
  #gs2Header = '';
  #cbData: Buffer | undefined;
  #clientFirstBare = '';
  #serverFirst = '';
  #nonce = '';
  #username = '';
  #authzid: string | undefined;
  #creds: ScramCredentials | undefined;

  constructor(name: ScramMechanismName, ctx: SaslContext, opts: ScramServerOptions = {}) {
    this.name = name;
    this.#ctx = ctx;
    this.#hash = name.startsWith('SCRAM-SHA-256') ? 'sha256' : 'sha1';
    this.#plus = name.endsWith('-PLUS');
    this.#refuseDowngrade = opts.refuseDowngrade ?? ctx.channelBindingTypes.length > 0;
    this.#serverNonce = opts.serverNonce;
  }

  async step(data: Buffer): Promise<SaslStep> {
    try {
      if (this.#stage === 'first') return await this.#first(data);
      if (this.#stage === 'final') return this.#final(data);
      return fail('malformed-request', 'exchange already finished');
    } catch (err) {
      this.#stage = 'done';
      if (err instanceof SaslFailure) return err.toStep();
      // A store error or corrupt credentials: the client is not to blame.
      return { kind: 'failure', condition: 'temporary-auth-failure' };
    }
  }

  async #first(data: Buffer): Promise<SaslStep> {
    // RFC 6120 §6.4.2: without an initial response, a client-first mechanism gets an empty challenge.
    if (data.length === 0 && !this.#askedForFirst) {
      this.#askedForFirst = true;
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    const msg = decodeUtf8(data);
    if (msg.includes('\0')) fail('malformed-request', 'NUL in message');

    const c1 = msg.indexOf(',');
    const c2 = c1 < 0 ? -1 : msg.indexOf(',', c1 + 1);
    if (c2 < 0) fail('malformed-request', 'missing GS2 header');
    this.#gs2Header = msg.slice(0, c2 + 1);
    this.#parseCbFlag(msg.slice(0, c1));

    const authzPart = msg.slice(c1 + 1, c2);
    if (authzPart !== '') {
      if (!authzPart.startsWith('a=')) fail('malformed-request', 'bad authzid');
      this.#authzid = decodeSaslname(authzPart.slice(2), 'authzid');
    }

    this.#clientFirstBare = msg.slice(c2 + 1);
    const [userAttr, nonceAttr, ...extensions] = this.#clientFirstBare.split(',');
    if (userAttr?.startsWith('m=')) fail('malformed-request', 'unsupported mandatory extension');
    if (!userAttr?.startsWith('n=')) fail('malformed-request', 'missing username');
    if (!nonceAttr?.startsWith('r=')) fail('malformed-request', 'missing nonce');
    checkExtensions(extensions);

    const clientNonce = nonceAttr.slice(2);
    if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(clientNonce)) fail('malformed-request', 'bad nonce');

    let username = '';
    try {
      username = saslPrep(decodeSaslname(userAttr.slice(2), 'username'), 'query').toLowerCase();
    } catch (err) {
      if (err instanceof SaslFailure) throw err;
      fail('malformed-request', 'username fails SASLprep');
    }
    if (username === '') fail('malformed-request', 'empty username');
    if (this.#authzid !== undefined && !authzidAllowed(this.#authzid, username, this.#ctx.domain)) {
      fail('invalid-authzid');
    }
    this.#username = username;

    // Unknown users get plausible credentials and fail only at the proof, like a wrong password.
    const iterations = this.#ctx.scramIterations ?? DEFAULT_SCRAM_ITERATIONS;
    const creds =
      (await this.#ctx.lookupCredentials(username, this.#hash)) ?? fakeCredentials(username, this.#hash, iterations);
    this.#creds = creds;

    this.#nonce = clientNonce + (this.#serverNonce ?? randomBytes(18).toString('base64'));
    this.#serverFirst = `r=${this.#nonce},s=${creds.salt.toString('base64')},i=${creds.iterations}`;
    this.#stage = 'final';
    return { kind: 'challenge', data: Buffer.from(this.#serverFirst, 'utf8') };
  }

  #parseCbFlag(flag: string): void {
    if (flag === 'n' || flag === 'y') {
      if (this.#plus) fail('malformed-request', `${this.name} requires channel binding`);
      // The client could bind but believes we cannot: someone stripped -PLUS from our features.
      if (flag === 'y' && this.#refuseDowngrade) fail('not-authorized', 'channel binding downgrade detected');
      return;
    }
    if (!flag.startsWith('p=')) fail('malformed-request', 'bad channel binding flag');
    if (!this.#plus) fail('malformed-request', 'channel binding requires a -PLUS mechanism');
    const type = flag.slice(2);
    if (!CHANNEL_BINDING_TYPES.includes(type) || !this.#ctx.channelBindingTypes.includes(type as ChannelBindingType)) {
      fail('not-authorized', 'unsupported channel binding type');
    }
    this.#cbData = this.#ctx.channelBinding(type as ChannelBindingType);
    if (this.#cbData === undefined) fail('not-authorized', 'channel binding data unavailable');
  }

  #final(data: Buffer): SaslStep {
    this.#stage = 'done';
    const msg = decodeUtf8(data);
    if (msg.includes('\0')) fail('malformed-request', 'NUL in message');

    const proofAt = msg.lastIndexOf(',p=');
    if (proofAt < 0) fail('malformed-request', 'missing proof');
    const withoutProof = msg.slice(0, proofAt);
    const [cbAttr, nonceAttr, ...extensions] = withoutProof.split(',');
    if (!cbAttr?.startsWith('c=')) fail('malformed-request', 'missing channel binding');
    if (!nonceAttr?.startsWith('r=')) fail('malformed-request', 'missing nonce');
    checkExtensions(extensions);

    const cb = decodeBase64(cbAttr.slice(2), 'channel binding');
    const proof = decodeBase64(msg.slice(proofAt + 3), 'proof');
    if (nonceAttr.slice(2) !== this.#nonce) fail('malformed-request', 'nonce mismatch');
    const expectedCb = Buffer.concat([Buffer.from(this.#gs2Header, 'utf8'), this.#cbData ?? Buffer.alloc(0)]);
    if (!cb.equals(expectedCb)) fail('not-authorized', 'channel binding mismatch');
    if (proof.length !== DIGEST_BYTES[this.#hash]) fail('malformed-request', 'bad proof length');

    const creds = this.#creds as ScramCredentials;
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const clientSignature = hmac(this.#hash, creds.storedKey, authMessage);
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = (proof[i] as number) ^ (clientSignature[i] as number);
    if (!timingSafeEqual(digest(this.#hash, clientKey), creds.storedKey)) fail('not-authorized');

    const serverSignature = hmac(this.#hash, creds.serverKey, authMessage);
    return {
      kind: 'success',
      username: this.#username,
      ...(this.#authzid !== undefined && { authzid: this.#authzid }),
      data: Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8'),
    };
  }
}
