import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../src/core/config.js';
import { CAPS_NODE, capsString, capsVer } from '../src/modules/caps.js';
import { discoInfo, infoOf, probes } from './support/conformance.js';
import { PASSWORD, startTestServer, type TestServer } from './support/lethe.js';
import { RawClient } from './support/raw.js';
import { connect, type Element, type TestClient } from './support/xmpp.js';

/** Data policy (XEP-0504): the form in the server's disco#info, derived from configuration and registry. */

const FORM_TYPE = 'urn:xmpp:data-policy:0';

async function policyOf(c: TestClient, domain: string): Promise<{ fields: Record<string, string[]>; form: Element }> {
  const query = await discoInfo(c, domain);
  const forms = query
    .getChildren('x', 'jabber:x:data')
    .filter((f) => f.getChildren('field').some((field) => field.getChildText('value') === FORM_TYPE));
  assert.equal(forms.length, 1, 'one data-policy form');
  const form = forms[0] as Element;
  return {
    form,
    fields: Object.fromEntries(
      form.getChildren('field').map((f) => [f.attrs.var, f.getChildren('value').map((v) => v.text())]),
    ),
  };
}

/** The caps hash the server puts in its stream features once a client has authenticated. */
async function advertisedVer(server: TestServer, user: string): Promise<string | undefined> {
  const raw = await RawClient.connect(server.port);
  await raw.startTls(server.domain);
  await raw.write(
    `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`,
  );
  await raw.waitFor('<success');
  raw.buffer = '';
  const features = await raw.open(server.domain);
  raw.destroy();
  return /ver="([^"]+)"/.exec(features)?.[1];
}

async function withServer(
  overrides: ConfigInput,
  fn: (server: TestServer, alice: TestClient) => Promise<void>,
): Promise<void> {
  const server = await startTestServer(overrides);
  await server.addUser('alice');
  const alice = await connect(server, 'alice');
  try {
    await fn(server, alice);
  } finally {
    await alice.stop();
    await server.stop();
  }
}

describe('with the default configuration', () => {
  let server: TestServer;
  let alice: TestClient;
  before(async () => {
    server = await startTestServer();
    await server.addUser('alice');
    alice = await connect(server, 'alice');
  });
  after(async () => {
    await alice.stop();
    await server.stop();
  });

  test('the form states what the defaults do', async () => {
    const { form, fields } = await policyOf(alice, server.domain);
    assert.equal(form.attrs.type, 'result');
    assert.equal(form.getChildren('field').find((f) => f.attrs.var === 'FORM_TYPE')?.attrs.type, 'hidden');
    const { extra_info: extra, ...rest } = fields;
    assert.deepEqual(rest, {
      FORM_TYPE: [FORM_TYPE],
      // PLAIN is offered by default (over TLS only), so the server can see a password.
      auth_data: ['plain'],
      // Offline messages and the archive (for those who opt in): 30 days.
      data_retention: ['720'],
      data_deletion: ['true'],
      // Offline messages and the archive are sealed with per-user keys; users can download their data.
      encryption_at_rest: ['true'],
      data_export: ['true'],
      access_policy: ['admins'],
      full_erasure: ['true'],
      backup_retention: ['unknown'],
    });
    assert.match(extra?.join('\n') ?? '', /Registration is closed/);
    assert.match(extra?.join('\n') ?? '', /at most 30 days/);
    assert.match(extra?.join('\n') ?? '', /IP addresses are never stored; they are not logged/);
    const types = Object.fromEntries(form.getChildren('field').map((f) => [f.attrs.var, f.attrs.type]));
    assert.equal(types.auth_data, 'list-single');
    assert.equal(types.data_retention, 'text-single');
    assert.equal(types.full_erasure, 'boolean');
    assert.equal(types.access_policy, 'list-multi');
    assert.equal(types.extra_info, 'text-multi');
  });

  test('caps: the hash covers the form, in the stream features and the caps node', async () => {
    const info = infoOf(await discoInfo(alice, server.domain));
    assert.match(capsString(info), /urn:xmpp:data-policy:0<access_policy<admins<auth_data<plain</);
    assert.equal(await advertisedVer(server, 'alice'), capsVer(info));
    await (probes['http://jabber.org/protocol/caps'] as NonNullable<(typeof probes)[string]>)(alice, {
      domain: server.domain,
      self: 'alice@lethe.test',
      server,
    });
    const byNode = await discoInfo(alice, server.domain, `${CAPS_NODE}#${capsVer(info)}`);
    assert.deepEqual(infoOf(byNode), info);
  });
});

test('the form follows the configuration', async () => {
  let defaultVer = '';
  await withServer({}, async (_server, alice) => {
    defaultVer = capsVer(infoOf(await discoInfo(alice, _server.domain)));
  });
  await withServer(
    {
      auth: { mechanisms: ['SCRAM-SHA-256', 'SCRAM-SHA-1'] },
      offline: { retentionDays: 7 },
      mam: { maxAgeDays: 7 },
      register: { enabled: true, allowRemove: false },
      log: { ip: 'truncated' },
      dataPolicy: { backupFrequencyHours: 24, backupRetentionHours: 720 },
    },
    async (server, alice) => {
      const { fields } = await policyOf(alice, server.domain);
      assert.deepEqual(fields.auth_data, ['hidden']);
      assert.deepEqual(fields.data_retention, ['168']);
      assert.deepEqual(fields.full_erasure, ['false']);
      assert.deepEqual(fields.data_deletion, ['false']);
      assert.deepEqual(fields.backup_frequency, ['24']);
      assert.deepEqual(fields.backup_retention, ['720']);
      const extra = fields.extra_info?.join('\n') ?? '';
      assert.match(extra, /Registration is open/);
      assert.match(extra, /at most 7 days/);
      assert.match(extra, /logged truncated/);
      const info = infoOf(await discoInfo(alice, server.domain));
      assert.notEqual(capsVer(info), defaultVer, 'another policy, another hash');
      // PLAIN is off here, so the client checks the hash through the caps node the server derives from it.
      const byNode = await discoInfo(alice, server.domain, `${CAPS_NODE}#${capsVer(info)}`);
      assert.deepEqual(infoOf(byNode), info);
    },
  );
  await withServer(
    {
      offline: { maxPerUser: 0 },
      mam: { maxAgeDays: 1 },
      dataPolicy: { backupFrequencyHours: 0, backupRetentionHours: 'infinite' },
    },
    async (server, alice) => {
      const { fields } = await policyOf(alice, server.domain);
      assert.deepEqual(fields.data_retention, ['24'], 'offline storage off: only the archive keeps messages, a day');
      assert.deepEqual(fields.backup_frequency, ['0']);
      assert.deepEqual(fields.backup_retention, ['0'], 'no backups, nothing kept in them');
    },
  );
});
