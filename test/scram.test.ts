import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { PlainServer } from '../src/auth/plain.js';
import { createMechanism, offeredMechanisms } from '../src/auth/sasl.js';
import { deriveScramCredentials, type ScramMechanismName, ScramServer, verifyPassword } from '../src/auth/scram.js';
import type {
  ChannelBindingType,
  SaslContext,
  SaslMechanism,
  SaslStep,
  ScramCredentials,
  ScramHash,
} from '../src/auth/types.js';
import { ScramClient, tlsExporter, tlsServerEndPoint, xmppJsMechanism } from './support/scram-client.js';

const ITERATIONS = 4096;
const EXPORTER = Buffer.alloc(32, 7);
const END_POINT = Buffer.alloc(32, 9);

interface CtxOptions {
  secure?: boolean;
  cb?: Partial<Record<ChannelBindingType, Buffer | undefined>>;
  /** username -> password, or fixed credentials per hash */
  users?: Record<string, string | Partial<Record<ScramHash, ScramCredentials>>>;
  domain?: string;
  lookup?: SaslContext['lookupCredentials'];
}

function makeCtx(opts: CtxOptions = {}): SaslContext & { lookups: string[] } {
  const cb = opts.cb ?? {};
  const users = opts.users ?? { user: 'pencil' };
  const lookups: string[] = [];
  const cache = new Map<string, ScramCredentials>();
  return {
    lookups,
    secure: opts.secure ?? true,
    channelBindingTypes: Object.keys(cb) as ChannelBindingType[],
    channelBinding: (type) => cb[type],
    ...(opts.domain !== undefined && { domain: opts.domain }),
    lookupCredentials:
      opts.lookup ??
      (async (username, hash) => {
        lookups.push(username);
        const entry = users[username];
        if (entry === undefined) return undefined;
        if (typeof entry !== 'string') return entry[hash];
        const key = `${hash}:${username}`;
        let creds = cache.get(key);
        if (!creds) {
          creds = deriveScramCredentials(entry, hash, ITERATIONS);
          cache.set(key, creds);
        }
        return creds;
      }),
  };
}

const text = (step: SaslStep): string => {
  assert.ok(step.kind !== 'failure', `unexpected failure ${JSON.stringify(step)}`);
  return step.data?.toString('utf8') ?? '';
};

const failure = (condition: string) => (step: SaslStep) => {
  assert.equal(step.kind, 'failure', JSON.stringify(step));
  assert.equal(step.kind === 'failure' && step.condition, condition, JSON.stringify(step));
};

/** Runs a whole exchange; returns the last step and whether the client accepted the server signature. */
async function exchange(mech: SaslMechanism, client: ScramClient): Promise<{ step: SaslStep; verified: boolean }> {
  const first = await mech.step(client.first());
  if (first.kind !== 'challenge') return { step: first, verified: false };
  const step = await mech.step(client.final(first.data));
  const verified = step.kind === 'success' && step.data !== undefined && client.verifyServerFinal(step.data);
  return { step, verified };
}

describe('SCRAM test vectors', () => {
  it('RFC 5802 §5 SCRAM-SHA-1', async () => {
    const salt = Buffer.from('QSXCR+Q6sek8bf92', 'base64');
    const ctx = makeCtx({ users: { user: { sha1: deriveScramCredentials('pencil', 'sha1', 4096, salt) } } });
    const server = new ScramServer('SCRAM-SHA-1', ctx, { serverNonce: '3rfcNHYJY1ZVvWVs7j' });
    const client = new ScramClient({
      hash: 'sha1',
      username: 'user',
      password: 'pencil',
      nonce: 'fyko+d2lbbFgONRv9qkxdawL',
    });

    assert.equal(client.first().toString(), 'n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL');
    const serverFirst = await server.step(client.first());
    assert.equal(text(serverFirst), 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
    const clientFinal = client.final(Buffer.from(text(serverFirst)));
    assert.equal(
      clientFinal.toString(),
      'c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=',
    );
    const done = await server.step(clientFinal);
    assert.equal(done.kind, 'success');
    assert.equal(done.kind === 'success' && done.username, 'user');
    assert.equal(text(done), 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=');
    assert.ok(client.verifyServerFinal(Buffer.from(text(done))));
  });

  it('RFC 7677 §3 SCRAM-SHA-256', async () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const ctx = makeCtx({ users: { user: { sha256: deriveScramCredentials('pencil', 'sha256', 4096, salt) } } });
    const server = new ScramServer('SCRAM-SHA-256', ctx, { serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
    const client = new ScramClient({
      hash: 'sha256',
      username: 'user',
      password: 'pencil',
      nonce: 'rOprNGfwEbeRWgbNEkqO',
    });

    const serverFirst = await server.step(Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
    assert.equal(
      text(serverFirst),
      'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    );
    const clientFinal = client.final(Buffer.from(text(serverFirst)));
    assert.equal(
      clientFinal.toString(),
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    const done = await server.step(clientFinal);
    assert.equal(text(done), 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  });
});

describe('SCRAM exchanges', () => {
  const hashes = [
    ['sha1', 'SCRAM-SHA-1'],
    ['sha256', 'SCRAM-SHA-256'],
  ] as const;
  const cbs = [
    ['tls-exporter', EXPORTER],
    ['tls-server-end-point', END_POINT],
  ] as const;

  for (const [hash, mechName] of hashes) {
    it(`${mechName} without channel binding`, async () => {
      const ctx = makeCtx();
      const { step, verified } = await exchange(
        new ScramServer(mechName, ctx),
        new ScramClient({ hash, username: 'User', password: 'pencil' }),
      );
      assert.equal(step.kind, 'success');
      assert.equal(step.kind === 'success' && step.username, 'user', 'username is lower-cased');
      assert.deepEqual(ctx.lookups, ['user']);
      assert.ok(verified);
    });

    for (const [cbType, cbData] of cbs) {
      it(`${mechName}-PLUS with ${cbType}`, async () => {
        const ctx = makeCtx({ cb: { 'tls-exporter': EXPORTER, 'tls-server-end-point': END_POINT } });
        const { step, verified } = await exchange(
          new ScramServer(`${mechName}-PLUS`, ctx),
          new ScramClient({ hash, username: 'user', password: 'pencil', cbType, cbData }),
        );
        assert.equal(step.kind, 'success');
        assert.ok(verified);
      });
    }
  }

  it('asks for the client-first message when the initial response is empty', async () => {
    const server = new ScramServer('SCRAM-SHA-256', makeCtx());
    const empty = await server.step(Buffer.alloc(0));
    assert.deepEqual(empty, { kind: 'challenge', data: Buffer.alloc(0) });
    const { step } = await exchange(server, new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil' }));
    assert.equal(step.kind, 'success');
  });

  it('decodes =2C and =3D in the username', async () => {
    const ctx = makeCtx({ users: { 'a,b=c': 'pw' } });
    const client = new ScramClient({ hash: 'sha256', username: 'a,b=c', password: 'pw' });
    assert.match(client.first().toString(), /n=a=2Cb=3Dc,/);
    const { step } = await exchange(new ScramServer('SCRAM-SHA-256', ctx), client);
    assert.equal(step.kind === 'success' && step.username, 'a,b=c');
  });

  it('applies SASLprep to the password', async () => {
    // U+00AD SOFT HYPHEN is mapped to nothing, U+2168 ROMAN NUMERAL NINE normalises to "IX".
    const ctx = makeCtx({ users: { user: 'IX pencil' } });
    const { step } = await exchange(
      new ScramServer('SCRAM-SHA-256', ctx),
      new ScramClient({ hash: 'sha256', username: 'user', password: '\u2168 pen\u00adcil' }),
    );
    assert.equal(step.kind, 'success');
  });

  it('accepts an authzid naming the user and refuses any other', async () => {
    const ctx = makeCtx({ domain: 'Example.org' });
    for (const authzid of ['user', 'user@example.org']) {
      const { step } = await exchange(
        new ScramServer('SCRAM-SHA-256', ctx),
        new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil', authzid }),
      );
      assert.equal(step.kind === 'success' && step.authzid, authzid);
    }
    const { step } = await exchange(
      new ScramServer('SCRAM-SHA-256', ctx),
      new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil', authzid: 'admin@example.org' }),
    );
    failure('invalid-authzid')(step);
  });

  it('fails with a wrong password', async () => {
    const { step, verified } = await exchange(
      new ScramServer('SCRAM-SHA-1', makeCtx()),
      new ScramClient({ hash: 'sha1', username: 'user', password: 'pencils' }),
    );
    assert.deepEqual(step, { kind: 'failure', condition: 'not-authorized' });
    assert.equal(verified, false);
  });

  it('does not tell an unknown user from a wrong password', async () => {
    const ctx = makeCtx();
    const shape = /^r=[\x21-\x2b\x2d-\x7e]+,s=[A-Za-z0-9+/]{22}==,i=4096$/;

    const known = new ScramServer('SCRAM-SHA-256', ctx);
    const knownClient = new ScramClient({ hash: 'sha256', username: 'user', password: 'wrong' });
    const knownFirst = text(await known.step(knownClient.first()));
    assert.match(knownFirst, shape);
    const knownFail = await known.step(knownClient.final(Buffer.from(knownFirst)));

    const salts: string[] = [];
    for (const username of ['nobody', 'nobody', 'someone-else']) {
      const unknown = new ScramServer('SCRAM-SHA-256', ctx);
      const client = new ScramClient({ hash: 'sha256', username, password: 'pencil' });
      const first = text(await unknown.step(client.first()));
      assert.match(first, shape);
      salts.push(/,s=([^,]+),/.exec(first)?.[1] ?? '');
      assert.deepEqual(await unknown.step(client.final(Buffer.from(first))), knownFail);
    }
    assert.equal(salts[0], salts[1], 'the fake salt is stable per username');
    assert.notEqual(salts[0], salts[2]);
  });

  it('shows unknown users the configured iteration count', async () => {
    const ctx = { ...makeCtx(), scramIterations: 10000 };
    const first = await new ScramServer('SCRAM-SHA-256', ctx).step(Buffer.from('n,,n=nobody,r=abc'));
    assert.match(text(first), /,i=10000$/);
  });

  it('fails when the channel binding data differs', async () => {
    const ctx = makeCtx({ cb: { 'tls-exporter': EXPORTER } });
    const { step } = await exchange(
      new ScramServer('SCRAM-SHA-256-PLUS', ctx),
      new ScramClient({
        hash: 'sha256',
        username: 'user',
        password: 'pencil',
        cbType: 'tls-exporter',
        cbData: Buffer.alloc(32, 8),
      }),
    );
    failure('not-authorized')(step);
  });

  it("fails a 'y' flag when -PLUS was advertised (downgrade)", async () => {
    const client = () =>
      new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil', clientSupportsCbButNotUsed: true });
    const plusCtx = makeCtx({ cb: { 'tls-exporter': EXPORTER } });
    failure('not-authorized')((await exchange(new ScramServer('SCRAM-SHA-256', plusCtx), client())).step);

    const noCbCtx = makeCtx();
    assert.equal((await exchange(new ScramServer('SCRAM-SHA-256', noCbCtx), client())).step.kind, 'success');

    // -PLUS disabled by configuration: not advertised, so 'y' is honest.
    const mech = createMechanism('SCRAM-SHA-256', plusCtx, ['SCRAM-SHA-256']);
    assert.ok(mech);
    assert.equal((await exchange(mech, client())).step.kind, 'success');

    // Through the factory: strict unless the operator allows it (auth.channelBindingDowngrade).
    const all = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'];
    const strict = createMechanism('SCRAM-SHA-256', plusCtx, all);
    assert.ok(strict);
    failure('not-authorized')((await exchange(strict, client())).step);
    const tolerant = createMechanism('SCRAM-SHA-256', { ...plusCtx, channelBindingDowngrade: 'allow' }, all);
    assert.ok(tolerant);
    assert.equal((await exchange(tolerant, client())).step.kind, 'success');
  });

  it('checks the GS2 flag against the mechanism and the connection', async () => {
    const ctx = makeCtx({ cb: { 'tls-exporter': EXPORTER, 'tls-server-end-point': undefined } });
    const first = (mech: ScramMechanismName, msg: string) => new ScramServer(mech, ctx).step(Buffer.from(msg));
    failure('malformed-request')(await first('SCRAM-SHA-256-PLUS', 'n,,n=user,r=abc'));
    failure('malformed-request')(await first('SCRAM-SHA-256-PLUS', 'y,,n=user,r=abc'));
    failure('malformed-request')(await first('SCRAM-SHA-256', 'p=tls-exporter,,n=user,r=abc'));
    failure('not-authorized')(await first('SCRAM-SHA-256-PLUS', 'p=tls-unique,,n=user,r=abc'));
    failure('not-authorized')(await first('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=user,r=abc'));
    assert.equal((await first('SCRAM-SHA-256-PLUS', 'p=tls-exporter,,n=user,r=abc')).kind, 'challenge');
  });

  it('turns a store error into temporary-auth-failure', async () => {
    const ctx = makeCtx({ lookup: () => Promise.reject(new Error('disk on fire')) });
    const step = await new ScramServer('SCRAM-SHA-256', ctx).step(Buffer.from('n,,n=user,r=abc'));
    assert.deepEqual(step, { kind: 'failure', condition: 'temporary-auth-failure' });
  });
});

describe('SCRAM malformed messages', () => {
  const firstCases: [string, Buffer | string, string][] = [
    ['no GS2 header', 'n', 'malformed-request'],
    ['half a GS2 header', 'n,', 'malformed-request'],
    ['unknown GS2 flag', 'x,,n=user,r=abc', 'malformed-request'],
    ['authzid without a=', 'n,user,n=user,r=abc', 'malformed-request'],
    ['empty authzid', 'n,a=,n=user,r=abc', 'malformed-request'],
    ['missing username', 'n,,r=abc', 'malformed-request'],
    ['empty username', 'n,,n=,r=abc', 'malformed-request'],
    ['bad = escape', 'n,,n=us=er,r=abc', 'malformed-request'],
    ['username failing SASLprep', 'n,,n=us\u0007er,r=abc', 'malformed-request'],
    ['missing nonce', 'n,,n=user', 'malformed-request'],
    ['empty nonce', 'n,,n=user,r=', 'malformed-request'],
    ['non-printable nonce', 'n,,n=user,r=a b', 'malformed-request'],
    ['m= before the username', 'n,,m=ext,n=user,r=abc', 'malformed-request'],
    ['m= after the nonce', 'n,,n=user,r=abc,m=ext', 'malformed-request'],
    ['garbage attribute', 'n,,n=user,r=abc,garbage', 'malformed-request'],
    ['NUL', 'n,,n=user\0,r=abc', 'malformed-request'],
    ['invalid UTF-8', Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]), 'incorrect-encoding'],
  ];
  for (const [name, msg, condition] of firstCases) {
    it(`client-first: ${name}`, async () => {
      const server = new ScramServer('SCRAM-SHA-256', makeCtx());
      failure(condition)(await server.step(Buffer.isBuffer(msg) ? msg : Buffer.from(msg)));
      failure('malformed-request')(await server.step(Buffer.from('n,,n=user,r=abc')));
    });
  }

  it('client-first: a second empty message', async () => {
    const server = new ScramServer('SCRAM-SHA-256', makeCtx());
    assert.equal((await server.step(Buffer.alloc(0))).kind, 'challenge');
    failure('malformed-request')(await server.step(Buffer.alloc(0)));
  });

  it('client-first: unknown optional extensions are ignored', async () => {
    const server = new ScramServer('SCRAM-SHA-256', makeCtx());
    assert.equal((await server.step(Buffer.from('n,,n=user,r=abc,x=whatever'))).kind, 'challenge');
  });

  /** Builds a correct client-final, then lets each case break one part of it. */
  async function final(edit: (parts: { c: string; r: string; p: string }) => string): Promise<SaslStep> {
    const server = new ScramServer('SCRAM-SHA-256', makeCtx());
    const client = new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil' });
    const first = await server.step(client.first());
    assert.equal(first.kind, 'challenge');
    const good = client.final(first.kind === 'challenge' ? first.data : Buffer.alloc(0)).toString();
    const [c = '', r = '', p = ''] = good.split(',').map((a) => a.slice(2));
    const step = await server.step(Buffer.from(edit({ c, r, p })));
    failure('malformed-request')(await server.step(Buffer.from(good)));
    return step;
  }

  const finalCases: [string, (x: { c: string; r: string; p: string }) => string, string][] = [
    ['missing proof', ({ c, r }) => `c=${c},r=${r}`, 'malformed-request'],
    ['missing channel binding', ({ r, p }) => `r=${r},p=${p}`, 'malformed-request'],
    ['missing nonce', ({ c, p }) => `c=${c},p=${p}`, 'malformed-request'],
    ['wrong nonce', ({ c, r, p }) => `c=${c},r=${r}x,p=${p}`, 'malformed-request'],
    ['client nonce only', ({ c, r, p }) => `c=${c},r=${r.slice(0, 24)},p=${p}`, 'malformed-request'],
    ['bad base64 channel binding', ({ r, p }) => `c=biws!,r=${r},p=${p}`, 'incorrect-encoding'],
    ['bad base64 proof', ({ c, r, p }) => `c=${c},r=${r},p=${p.slice(1)}`, 'incorrect-encoding'],
    ['short proof', ({ c, r }) => `c=${c},r=${r},p=AAAA`, 'malformed-request'],
    ['m= extension', ({ c, r, p }) => `c=${c},r=${r},m=ext,p=${p}`, 'malformed-request'],
    ['wrong GS2 header in c=', ({ r, p }) => `c=eSws,r=${r},p=${p}`, 'not-authorized'],
    [
      'flipped proof',
      ({ c, r, p }) => `c=${c},r=${r},p=${p.startsWith('A') ? 'B' : 'A'}${p.slice(1)}`,
      'not-authorized',
    ],
  ];
  for (const [name, edit, condition] of finalCases) {
    it(`client-final: ${name}`, async () => {
      failure(condition)(await final(edit));
    });
  }

  it('client-final: invalid UTF-8 bytes', async () => {
    const server = new ScramServer('SCRAM-SHA-256', makeCtx());
    await server.step(Buffer.from('n,,n=user,r=abc'));
    failure('incorrect-encoding')(await server.step(Buffer.from([0x63, 0x3d, 0xc3])));
  });
});

describe('PLAIN', () => {
  const plain = (ctx: SaslContext, msg: string) => new PlainServer(ctx).step(Buffer.from(msg));

  it('is refused without TLS', async () => {
    failure('encryption-required')(await plain(makeCtx({ secure: false }), '\0user\0pencil'));
  });

  it('logs in with the right password', async () => {
    assert.deepEqual(await plain(makeCtx(), '\0User\0pencil'), { kind: 'success', username: 'user' });
  });

  it('accepts an authzid naming the user', async () => {
    const ctx = makeCtx({ domain: 'example.org' });
    assert.deepEqual(await plain(ctx, 'user@example.org\0user\0pencil'), {
      kind: 'success',
      username: 'user',
      authzid: 'user@example.org',
    });
    assert.equal((await plain(ctx, 'user\0user\0pencil')).kind, 'success');
  });

  it('refuses another authzid', async () => {
    failure('invalid-authzid')(await plain(makeCtx({ domain: 'example.org' }), 'admin@example.org\0user\0pencil'));
    failure('invalid-authzid')(await plain(makeCtx(), 'user@example.org\0user\0pencil'));
  });

  it('fails a wrong password and an unknown user alike', async () => {
    const wrong = await plain(makeCtx(), '\0user\0pencils');
    assert.deepEqual(wrong, { kind: 'failure', condition: 'not-authorized' });
    assert.deepEqual(await plain(makeCtx(), '\0nobody\0pencil'), wrong);
  });

  it('falls back to SHA-1 credentials', async () => {
    const ctx = makeCtx({ users: { user: { sha1: deriveScramCredentials('pencil', 'sha1', ITERATIONS) } } });
    assert.equal((await plain(ctx, '\0user\0pencil')).kind, 'success');
  });

  it('rejects malformed messages', async () => {
    for (const msg of ['user\0pencil', '\0user\0pencil\0', '\0\0pencil', '\0user\0']) {
      failure('malformed-request')(await plain(makeCtx(), msg));
    }
    failure('incorrect-encoding')(await new PlainServer(makeCtx()).step(Buffer.from([0, 0x75, 0, 0xff])));
  });

  it('asks for the response when the initial response is empty', async () => {
    const server = new PlainServer(makeCtx());
    assert.equal((await server.step(Buffer.alloc(0))).kind, 'challenge');
    assert.equal((await server.step(Buffer.from('\0user\0pencil'))).kind, 'success');
    failure('malformed-request')(await server.step(Buffer.from('\0user\0pencil')));
  });
});

describe('credentials', () => {
  it('derives with a fresh 16-byte salt and verifies the password', () => {
    const a = deriveScramCredentials('pencil', 'sha256', ITERATIONS);
    const b = deriveScramCredentials('pencil', 'sha256', ITERATIONS);
    assert.equal(a.salt.length, 16);
    assert.notDeepEqual(a.salt, b.salt);
    assert.equal(a.storedKey.length, 32);
    assert.ok(verifyPassword('pencil', a));
    assert.ok(!verifyPassword('Pencil', a));
    assert.ok(!verifyPassword('pen\u0007cil', a), 'a password failing SASLprep never matches');
  });

  it('refuses to derive from a password failing SASLprep', () => {
    assert.throws(() => deriveScramCredentials('pen\u0007cil', 'sha1', ITERATIONS));
  });
});

describe('mechanism registry', () => {
  const all = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'];
  const ctx = (secure: boolean, cb: boolean) => makeCtx({ secure, ...(cb && { cb: { 'tls-exporter': EXPORTER } }) });

  it('offers mechanisms by connection state, strongest first', () => {
    assert.deepEqual(offeredMechanisms(ctx(false, false), all), ['SCRAM-SHA-256', 'SCRAM-SHA-1']);
    assert.deepEqual(offeredMechanisms(ctx(true, false), all), ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
    assert.deepEqual(offeredMechanisms(ctx(true, true), all), all);
    assert.deepEqual(offeredMechanisms(ctx(true, true), ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS']), [
      'SCRAM-SHA-1-PLUS',
      'SCRAM-SHA-1',
      'PLAIN',
    ]);
    assert.deepEqual(offeredMechanisms(ctx(true, true), ['DIGEST-MD5']), []);
  });

  it('creates only offered mechanisms', () => {
    assert.equal(createMechanism('PLAIN', ctx(false, false), all), undefined);
    assert.equal(createMechanism('SCRAM-SHA-256-PLUS', ctx(true, false), all), undefined);
    assert.equal(createMechanism('SCRAM-SHA-1', ctx(true, true), ['SCRAM-SHA-256']), undefined);
    assert.equal(createMechanism('DIGEST-MD5', ctx(true, true), [...all, 'DIGEST-MD5']), undefined);
    assert.ok(createMechanism('PLAIN', ctx(true, false), all) instanceof PlainServer);
    for (const name of all.slice(0, 4)) {
      const mech = createMechanism(name, ctx(true, true), all);
      assert.ok(mech instanceof ScramServer);
      assert.equal(mech.name, name);
    }
  });
});

describe('channel binding over real TLS', () => {
  it('client and server agree on tls-exporter and tls-server-end-point', async () => {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      algorithm: 'sha384',
    });
    const cert = new X509Certificate(pems.cert);
    const server = tls.createServer({ key: pems.private, cert: pems.cert, minVersion: 'TLSv1.3' });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
    const socket = tls.connect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      rejectUnauthorized: false,
    });
    try {
      await once(socket, 'secureConnect');
      const [serverSide] = await accepted;
      const serverCb: Record<ChannelBindingType, Buffer> = {
        'tls-exporter': serverSide.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)),
        'tls-server-end-point': createHash('sha384').update(cert.raw).digest(),
      };
      assert.deepEqual(tlsExporter(socket), serverCb['tls-exporter']);
      assert.deepEqual(tlsServerEndPoint(socket), serverCb['tls-server-end-point']);

      for (const cbType of ['tls-exporter', 'tls-server-end-point'] as const) {
        const cbData = cbType === 'tls-exporter' ? tlsExporter(socket) : tlsServerEndPoint(socket);
        const { step } = await exchange(
          new ScramServer('SCRAM-SHA-256-PLUS', makeCtx({ cb: serverCb })),
          new ScramClient({ hash: 'sha256', username: 'user', password: 'pencil', cbType, cbData }),
        );
        assert.equal(step.kind, 'success');
      }
    } finally {
      socket.destroy();
      // close() waits for open connections; the server side of ours is gone once the client is.
      server.close();
    }
  });
});

describe('@xmpp/client plug-in', () => {
  interface Mech {
    name: string;
    clientFirst: boolean;
    response(cred: object): string | Promise<string>;
    challenge(chal: string): unknown;
    final(data: string): void;
  }
  // The factory @xmpp/client uses (CommonJS, untyped).
  const Factory = createRequire(import.meta.url)('saslmechanisms') as new () => {
    use(mech: unknown): void;
    create(names: string[]): Mech | null;
  };

  it('runs an exchange the way @xmpp/sasl does (btoa/atob binary strings)', async () => {
    const factory = new Factory();
    factory.use(
      xmppJsMechanism({ name: 'SCRAM-SHA-256-PLUS', cbType: 'tls-exporter', channelBinding: () => EXPORTER }),
    );
    const mech = factory.create(['SCRAM-SHA-1', 'SCRAM-SHA-256-PLUS']);
    assert.ok(mech);
    assert.equal(mech.name, 'SCRAM-SHA-256-PLUS');
    assert.ok(mech.clientFirst);

    const ctx = makeCtx({ users: { zoë: 'pâssword' }, cb: { 'tls-exporter': EXPORTER } });
    const server = new ScramServer('SCRAM-SHA-256-PLUS', ctx);
    const creds = { username: 'Zoë', password: 'pâssword', server: 'localhost', serviceType: 'xmpp' };
    const wire = async (resp: string | Promise<string>) => Buffer.from(globalThis.btoa(await resp), 'base64');

    const first = await server.step(await wire(mech.response(creds)));
    assert.equal(first.kind, 'challenge');
    await mech.challenge(globalThis.atob(first.kind === 'challenge' ? first.data.toString('base64') : ''));
    const done = await server.step(await wire(mech.response(creds)));
    assert.equal(done.kind === 'success' && done.username, 'zoë');
    assert.ok(done.kind === 'success' && done.data);
    mech.final(globalThis.atob(done.data.toString('base64')));
    assert.throws(() => mech.final(globalThis.atob(Buffer.from('v=AAAA').toString('base64'))), /signature/);
  });
});
