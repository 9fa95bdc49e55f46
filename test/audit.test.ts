import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { addressHash } from '../src/privacy/address-hash.js';
import type { AuditEntry } from '../src/privacy/audit.js';
import { sweepErasures } from '../src/privacy/erasure.js';
import { runCli, writeConfig } from './support/cli.js';
import { startTestServer, type TestServer } from './support/lethe.js';
import { connect } from './support/xmpp.js';

/** The audit log (src/privacy/audit.ts): what the operator did, told to the user, pseudonymised on erasure. */

describe('lethe audit and the commands it records', () => {
  const { path, dir } = writeConfig();
  after(() => rmSync(dir, { recursive: true, force: true }));
  const lethe = (args: string[], input?: string) => runCli(['--config', path, ...args], { input });
  const entries = (account?: string): AuditEntry[] =>
    JSON.parse(lethe(['audit', '--json', ...(account ? ['--account', account] : [])]).stdout) as AuditEntry[];

  test('every operator action on an account is recorded with the OS user, the action and the reason', () => {
    for (const name of ['dana', 'eve'])
      assert.equal(lethe(['user', 'add', `${name}@cli.test`, '--password-stdin'], 'a password\n').status, 0);
    assert.equal(
      lethe(
        ['user', 'passwd', 'dana@cli.test', '--password-stdin', '--reason', 'locked out, asked by phone'],
        'new one\n',
      ).status,
      0,
    );
    assert.match(lethe(['user', 'deactivate', 'dana@cli.test']).stderr, /required option '--reason/);
    assert.match(lethe(['user', 'erase', 'dana@cli.test']).stderr, /required option '--reason/);
    assert.equal(lethe(['user', 'deactivate', 'dana@cli.test', '--reason', 'abuse report']).status, 0);
    assert.match(lethe(['user', 'list']).stdout, /^dana@cli\.test\tdeactivated\t/m);
    assert.equal(lethe(['user', 'reactivate', 'dana@cli.test', '--reason', 'report unfounded']).status, 0);

    const erase = lethe(['user', 'erase', 'dana@cli.test', '--reason', 'asked by mail']);
    assert.equal(erase.status, 0, erase.stderr);
    assert.match(erase.stdout, /is locked now and will be erased on \d{4}-\d\d-\d\d/);
    assert.match(erase.stdout, /What will be erased:\n {2}account: 1 item\(s\)\n {2}credentials: 2 item\(s\)/);
    assert.match(erase.stdout, /Tell the user[^\n]*\n {2}Your account dana@cli\.test will be erased on/);
    assert.match(erase.stdout, /Cancel before then with: npx lethe --config \S+ user restore dana@cli\.test/);
    assert.match(lethe(['user', 'erase', 'dana@cli.test', '--reason', 'again']).stderr, /already to be erased/);
    assert.equal(lethe(['user', 'restore', 'dana@cli.test']).status, 0);
    assert.match(lethe(['user', 'restore', 'dana@cli.test']).stderr, /no erasure of dana@cli\.test is pending/);

    const me = userInfo().username;
    assert.deepEqual(
      entries('dana@cli.test').map((e) => [e.actor, e.action, e.account, e.reason]),
      [
        [me, 'password-reset', 'dana@cli.test', 'locked out, asked by phone'],
        [me, 'deactivate', 'dana@cli.test', 'abuse report'],
        [me, 'reactivate', 'dana@cli.test', 'report unfounded'],
        [me, 'erasure-requested', 'dana@cli.test', 'asked by mail'],
        [me, 'restore', 'dana@cli.test', null],
      ],
    );
    assert.match(lethe(['audit']).stdout, new RegExp(`\\t${me}\\tdeactivate\\tdana@cli\\.test\\tabuse report`));
  });

  test('after erasure the entries stay, with the address replaced by its keyed hash', () => {
    const r = lethe(['user', 'remove', 'eve@cli.test', '--reason', 'eve@cli.test asked by mail']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /kept on purpose:\n {2}[\s\S]*tombstone: 1 item\(s\)/);
    assert.match(r.stdout, /audit-log: 1 item\(s\), the audit-log entries about the account/);
    const kept = entries('eve@cli.test');
    assert.deepEqual(
      kept.map((e) => e.action),
      ['erasure-requested', 'erased'],
    );
    assert.doesNotMatch(JSON.stringify(entries()), /eve@/i, 'the address is gone from the whole log');
    const hash = kept[0]?.account as string;
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(kept[0]?.reason, `${hash} asked by mail`);
    assert.match(
      lethe(['user', 'receipt', 'eve@cli.test']).stdout,
      new RegExp(`receipt kept under the tombstone hash ${hash}`),
    );
  });
});

describe('access transparency and retention', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('the user is told what the operator did and why: online at once, otherwise at next login', async () => {
    const jid = await server.addUser('frank');
    const online = await connect(server, 'frank');
    await server.running.server.audit.record({
      actor: 'root',
      action: 'export',
      account: jid,
      reason: 'court order 12',
    });
    const told = await online.waitFor((el) => el.is('message') && el.attrs.from === server.domain, 5000, 'notice');
    assert.match(told.getChildText('body') ?? '', /exported a copy of your data\. Reason given: court order 12\./);
    await online.stop();
    await server.running.server.audit.record({ actor: 'root', action: 'import', account: jid, reason: 'moved here' });
    const later = await connect(server, 'frank');
    await later.waitFor(
      (el) => el.is('message') && /imported data into your account.*moved here/.test(el.getChildText('body') ?? ''),
      5000,
      'the notice kept offline',
    );
    await later.stop();
  });

  test('the user’s own requests are recorded but not echoed to them; old entries expire', async () => {
    const { audit, config } = server.running.server;
    const jid = await server.addUser('gina');
    const c = await connect(server, 'gina');
    await audit.record({ actor: jid.bareString(), action: 'export', account: jid });
    await c.expectNothing((el) => el.is('message'), 300);
    await c.stop();
    assert.equal((await audit.list({ account: jid })).length, 1);
    assert.ok((await audit.list()).length >= 3);
    // The sweeper deletes entries older than audit.retentionDays.
    await sweepErasures(server.running.server, new Date(Date.now() + (config.audit.retentionDays + 1) * 86_400_000));
    assert.deepEqual(await audit.list(), []);
    assert.match(addressHash(config, jid), /^[0-9a-f]{64}$/);
  });
});
