import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from './support/lethe.js';
import {
  tlsExporter,
  tlsServerEndPoint,
  tlsSocketOf,
  type XmppJsScramName,
  xmppJsMechanism,
} from './support/scram-client.js';
import { connect } from './support/xmpp.js';

/** Every SASL mechanism through @xmpp/client over real TLS, with channel binding for the -PLUS variants. */

function withMechanism(name: XmppJsScramName, cbType?: 'tls-exporter' | 'tls-server-end-point') {
  return {
    mechanism: name,
    setup: (xmpp: Parameters<NonNullable<Parameters<typeof connect>[2]>['setup'] & object>[0]) => {
      xmpp.saslFactory.use(
        xmppJsMechanism({
          name,
          cbType,
          channelBinding: cbType
            ? () => (cbType === 'tls-exporter' ? tlsExporter : tlsServerEndPoint)(tlsSocketOf(xmpp))
            : undefined,
        }),
      );
    },
  };
}

describe('SASL mechanisms (defaults)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await server.addUser('alice');
  });
  after(() => server.stop());

  test('SCRAM-SHA-1 (xmpp.js built-in)', async () => {
    const c = await connect(server, 'alice', { mechanism: 'SCRAM-SHA-1' });
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('SCRAM-SHA-256', async () => {
    const c = await connect(server, 'alice', withMechanism('SCRAM-SHA-256'));
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('SCRAM-SHA-1-PLUS with tls-exporter', async () => {
    const c = await connect(server, 'alice', withMechanism('SCRAM-SHA-1-PLUS', 'tls-exporter'));
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('SCRAM-SHA-256-PLUS with tls-exporter', async () => {
    const c = await connect(server, 'alice', withMechanism('SCRAM-SHA-256-PLUS', 'tls-exporter'));
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('SCRAM-SHA-256-PLUS with tls-server-end-point, over direct TLS', async () => {
    const c = await connect(server, 'alice', {
      ...withMechanism('SCRAM-SHA-256-PLUS', 'tls-server-end-point'),
      transport: 'direct',
    });
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('channel binding data from another connection is refused', async () => {
    const other = await connect(server, 'alice', { resource: 'other' });
    const foreign = tlsExporter(tlsSocketOf(other.xmpp));
    await assert.rejects(
      connect(server, 'alice', {
        mechanism: 'SCRAM-SHA-256-PLUS',
        setup: (xmpp) =>
          xmpp.saslFactory.use(
            xmppJsMechanism({ name: 'SCRAM-SHA-256-PLUS', cbType: 'tls-exporter', channelBinding: () => foreign }),
          ),
      }),
      /not-authorized/,
    );
    await other.stop();
  });

  test('PLAIN over TLS', async () => {
    const c = await connect(server, 'alice', { mechanism: 'PLAIN' });
    assert.match(c.jid, /^alice@/);
    await c.stop();
  });

  test('a wrong password is refused with not-authorized, for every mechanism', async () => {
    for (const opts of [{ mechanism: 'SCRAM-SHA-1' }, withMechanism('SCRAM-SHA-256'), { mechanism: 'PLAIN' }])
      await assert.rejects(connect(server, 'alice', { ...opts, password: 'wrong' }), /not-authorized/);
  });

  test('an unknown user looks exactly like a wrong password', async () => {
    await assert.rejects(connect(server, 'nobody', withMechanism('SCRAM-SHA-256')), /not-authorized/);
  });
});

describe('SASL configuration', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ auth: { mechanisms: ['SCRAM-SHA-256'], channelBindingDowngrade: 'refuse' } });
    await server.addUser('alice');
  });
  after(() => server.stop());

  test('only the configured mechanisms are offered', async () => {
    // xmpp.js knows SCRAM-SHA-1 and PLAIN only, neither of which is offered here.
    await assert.rejects(connect(server, 'alice', { mechanism: 'PLAIN' }), /No compatible mechanism available/);
    const c = await connect(server, 'alice', withMechanism('SCRAM-SHA-256'));
    await c.stop();
  });
});
