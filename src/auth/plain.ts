/** PLAIN (RFC 4616), only ever over an encrypted stream. */

import {
  authzidAllowed,
  DEFAULT_SCRAM_ITERATIONS,
  decodeUtf8,
  fail,
  fakeCredentials,
  SaslFailure,
  saslPrep,
  verifyPassword,
} from './scram.js';
import type { SaslContext, SaslMechanism, SaslStep } from './types.js';

export class PlainServer implements SaslMechanism {
  readonly name = 'PLAIN';
  readonly #ctx: SaslContext;
  #done = false;
  #askedForResponse = false;

  constructor(ctx: SaslContext) {
    this.#ctx = ctx;
  }

  async step(data: Buffer): Promise<SaslStep> {
    try {
      if (this.#done) fail('malformed-request', 'exchange already finished');
      if (!this.#ctx.secure) {
        this.#done = true;
        fail('encryption-required');
      }
      // RFC 6120 §6.4.2: without an initial response, the client is asked for one with an empty challenge.
      if (data.length === 0 && !this.#askedForResponse) {
        this.#askedForResponse = true;
        return { kind: 'challenge', data: Buffer.alloc(0) };
      }
      this.#done = true;
      return await this.#authenticate(data);
    } catch (err) {
      if (err instanceof SaslFailure) return err.toStep();
      return { kind: 'failure', condition: 'temporary-auth-failure' };
    }
  }

  async #authenticate(data: Buffer): Promise<SaslStep> {
    const parts = decodeUtf8(data).split('\0');
    if (parts.length !== 3) fail('malformed-request', 'expected authzid NUL authcid NUL password');
    const [authzid = '', authcid = '', password = ''] = parts;
    if (authcid === '' || password === '') fail('malformed-request', 'empty authcid or password');

    let username = '';
    try {
      username = saslPrep(authcid, 'query').toLowerCase();
    } catch {
      fail('malformed-request', 'username fails SASLprep');
    }
    if (username === '') fail('malformed-request', 'empty username');
    if (!authzidAllowed(authzid, username, this.#ctx.domain)) fail('invalid-authzid');

    // Unknown users still cost one PBKDF2 run, so timing does not tell them apart from a wrong password.
    const creds =
      (await this.#ctx.lookupCredentials(username, 'sha256')) ??
      (await this.#ctx.lookupCredentials(username, 'sha1')) ??
      fakeCredentials(username, 'sha256', this.#ctx.scramIterations ?? DEFAULT_SCRAM_ITERATIONS);
    if (!verifyPassword(password, creds)) fail('not-authorized');
    return { kind: 'success', username, ...(authzid !== '' && { authzid }) };
  }
}
