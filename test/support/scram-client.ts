/**
 * Client side of SCRAM (RFC 5802 / RFC 7677) for tests, written independently of src/auth/scram.ts so that
 * the two check each other; plus a mechanism for @xmpp/client and the TLS channel binding helpers it needs.
 */

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { TLSSocket } from 'node:tls';

const saslprep = createRequire(import.meta.url)('saslprep') as (
  input: string,
  opts?: { allowUnassigned?: boolean },
) => string;

export type ClientHash = 'sha1' | 'sha256';
export type ClientCbType = 'tls-exporter' | 'tls-server-end-point';

export interface ScramClientOptions {
  hash: ClientHash;
  username: string;
  password: string;
  authzid?: string;
  /** Bind to the channel: sends p=<cbType> and c=base64(gs2-header + cbData). */
  cbType?: ClientCbType;
  cbData?: Buffer;
  /** Sends 'y,,': the client could bind but believes the server cannot. */
  clientSupportsCbButNotUsed?: boolean;
  /** Fixed client nonce, for test vectors. */
  nonce?: string;
}

const escapeSaslname = (s: string): string => s.replace(/=/g, '=3D').replace(/,/g, '=2C');

export class ScramClient {
  readonly #opts: ScramClientOptions;
  readonly #gs2Header: string;
  readonly #clientNonce: string;
  readonly #clientFirstBare: string;
  #serverSignature: Buffer | undefined;

  constructor(opts: ScramClientOptions) {
    if (opts.cbType !== undefined && opts.cbData === undefined) throw new Error('cbType needs cbData');
    this.#opts = opts;
    const flag = opts.cbType ? `p=${opts.cbType}` : opts.clientSupportsCbButNotUsed ? 'y' : 'n';
    const authzid = opts.authzid ? `a=${escapeSaslname(opts.authzid)}` : '';
    this.#gs2Header = `${flag},${authzid},`;
    this.#clientNonce = opts.nonce ?? randomBytes(18).toString('base64');
    const username = escapeSaslname(saslprep(opts.username, { allowUnassigned: true }));
    this.#clientFirstBare = `n=${username},r=${this.#clientNonce}`;
  }

  first(): Buffer {
    return Buffer.from(this.#gs2Header + this.#clientFirstBare, 'utf8');
  }

  /** Throws when the server-first message is not one a correct server would send. */
  final(serverFirst: Buffer): Buffer {
    const { hash, password, cbData } = this.#opts;
    const text = serverFirst.toString('utf8');
    const attrs = new Map(text.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce?.startsWith(this.#clientNonce) || nonce === this.#clientNonce) throw new Error('bad server nonce');
    if (salt === undefined || !Number.isInteger(iterations) || iterations < 1) throw new Error('bad server-first');

    const hmac = (key: Buffer, data: string): Buffer => createHmac(hash, key).update(data).digest();
    const keyLength = hash === 'sha1' ? 20 : 32;
    const salted = pbkdf2Sync(saslprep(password), Buffer.from(salt, 'base64'), iterations, keyLength, hash);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash(hash).update(clientKey).digest();

    const cb = Buffer.concat([Buffer.from(this.#gs2Header, 'utf8'), cbData ?? Buffer.alloc(0)]);
    const withoutProof = `c=${cb.toString('base64')},r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${text},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.from(clientKey.map((b, i) => b ^ (clientSignature[i] as number)));
    this.#serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  verifyServerFinal(serverFinal: Buffer): boolean {
    const match = /^v=([A-Za-z0-9+/=]+)$/.exec(serverFinal.toString('utf8'));
    if (!match?.[1] || this.#serverSignature === undefined) return false;
    const v = Buffer.from(match[1], 'base64');
    return v.length === this.#serverSignature.length && timingSafeEqual(v, this.#serverSignature);
  }
}

/** RFC 9266: 32 bytes exported with label EXPORTER-Channel-Binding and an empty context (TLS 1.3 only). */
export function tlsExporter(socket: TLSSocket): Buffer {
  if (socket.getProtocol() !== 'TLSv1.3') throw new Error('tls-exporter needs TLS 1.3');
  return socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
}

/** RFC 5929 §4.1: hash of the server certificate (DER) with its signature hash, MD5 and SHA-1 becoming SHA-256. */
export function tlsServerEndPoint(socket: TLSSocket): Buffer {
  // Not getPeerX509Certificate(): on Node 20 client sockets it consumes the certificate, later calls get nothing.
  const der = socket.getPeerCertificate(true).raw as Buffer | undefined;
  if (!der) throw new Error('no peer certificate');
  return createHash(certificateHash(der)).update(der).digest();
}

const SIGNATURE_HASHES: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'sha256', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha256', // sha1WithRSAEncryption
  '1.2.840.10045.4.1': 'sha256', // ecdsa-with-SHA1
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/** Reads Certificate.signatureAlgorithm (RFC 5280 §4.1), which Node 20's X509Certificate does not expose. */
function certificateHash(der: Buffer): string {
  // Returns [content start, content end] of the TLV at `at`.
  const tlv = (at: number): [number, number] => {
    const first = der[at + 1] as number;
    if (first < 0x80) return [at + 2, at + 2 + first];
    let length = 0;
    for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + (der[at + 2 + i] as number);
    const start = at + 2 + (first & 0x7f);
    return [start, start + length];
  };
  const [certStart] = tlv(0);
  const [, tbsEnd] = tlv(certStart);
  const [algStart] = tlv(tbsEnd);
  const [oidStart, oidEnd] = tlv(algStart);
  const bytes = der.subarray(oidStart, oidEnd);
  const arcs = [Math.floor((bytes[0] as number) / 40), (bytes[0] as number) % 40];
  let arc = 0;
  for (const b of bytes.subarray(1)) {
    arc = arc * 128 + (b & 0x7f);
    if (b < 0x80) {
      arcs.push(arc);
      arc = 0;
    }
  }
  const oid = arcs.join('.');
  const hash = SIGNATURE_HASHES[oid];
  if (!hash) throw new Error(`tls-server-end-point undefined for signature algorithm ${oid}`);
  return hash;
}

/** The tls.TLSSocket under an @xmpp/client entity (direct TLS or after STARTTLS): xmpp.socket wraps it. */
export function tlsSocketOf(xmpp: { socket?: unknown }): TLSSocket {
  const inner = (xmpp.socket as { socket?: unknown } | null | undefined)?.socket;
  if (!(inner instanceof TLSSocket)) throw new Error('the connection is not over TLS');
  return inner;
}

export type XmppJsScramName = 'SCRAM-SHA-1' | 'SCRAM-SHA-256' | 'SCRAM-SHA-1-PLUS' | 'SCRAM-SHA-256-PLUS';

export interface XmppJsMechanismOptions {
  name: XmppJsScramName;
  /** Required for -PLUS. */
  cbType?: ClientCbType;
  /** Called when authentication starts, once TLS is up: e.g. () => tlsExporter(tlsSocketOf(xmpp)). */
  channelBinding?: () => Buffer;
}

/** What @xmpp/sasl passes to response(): the credentials given to authenticate(), plus domain defaults. */
interface XmppJsCredentials {
  username?: string | null;
  password?: string | null;
  authzid?: string;
}

/**
 * A mechanism class for saslmechanisms' factory (`xmpp.saslFactory.use(xmppJsMechanism({...}))`), which
 * instantiates it without arguments. @xmpp/sasl base64-encodes responses with btoa and decodes challenges
 * with atob, so messages cross as binary (latin1) strings.
 */
export function xmppJsMechanism(opts: XmppJsMechanismOptions) {
  const plus = opts.name.endsWith('-PLUS');
  if (plus && (!opts.cbType || !opts.channelBinding)) throw new Error(`${opts.name} needs cbType and channelBinding`);
  const hash: ClientHash = opts.name.startsWith('SCRAM-SHA-256') ? 'sha256' : 'sha1';

  return class XmppJsScram {
    // Factory.use(Mech) reads the name from the prototype; Factory.create() checks it.
    get name(): string {
      return opts.name;
    }

    get clientFirst(): boolean {
      return true;
    }

    #client: ScramClient | undefined;
    #challenges: Buffer[] = [];

    response(cred: XmppJsCredentials): string {
      if (this.#client === undefined) {
        this.#client = new ScramClient({
          hash,
          username: cred.username ?? '',
          password: cred.password ?? '',
          ...(cred.authzid && { authzid: cred.authzid }),
          ...(plus && { cbType: opts.cbType, cbData: opts.channelBinding?.() }),
        });
        return this.#client.first().toString('latin1');
      }
      const [serverFirst, serverFinal] = this.#challenges;
      if (serverFinal !== undefined) {
        // Some servers send server-final as a challenge and expect an empty response.
        this.final(serverFinal.toString('latin1'));
        return '';
      }
      if (serverFirst === undefined) throw new Error('SCRAM: response before server-first');
      return this.#client.final(serverFirst).toString('latin1');
    }

    challenge(chal: string): this {
      this.#challenges.push(Buffer.from(chal, 'latin1'));
      return this;
    }

    /** Called by @xmpp/sasl2 with <success>'s additional data; RFC 6120 SASL (@xmpp/sasl) discards it. */
    final(data: string): void {
      if (!this.#client?.verifyServerFinal(Buffer.from(data, 'latin1'))) {
        throw new Error('SCRAM: server signature mismatch');
      }
    }
  };
}
