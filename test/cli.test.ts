import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli, startCli, writeConfig } from './support/cli.js';

const { path, dir } = writeConfig();
after(() => rmSync(dir, { recursive: true, force: true }));
const lethe = (args: string[], input?: string) => runCli(['--config', path, ...args], { input });

test('check-config accepts a valid file and prints what it resolves to', () => {
  const r = lethe(['check-config']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /is valid/);
  assert.match(r.stdout, /domains: cli\.test/);
});

test('a wrong key or value stops with a message naming the key and the fix', () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'domain: cli.test\nc2s:\n  prot: 5222\n  port: "high"\nlog:\n  ip: everything\n');
  const r = runCli(['--config', bad, 'check-config']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /c2s\.prot: unknown key; remove it or check its spelling/);
  assert.match(r.stderr, /c2s\.port: expected number, got string "high"/);
  assert.match(r.stderr, /log\.ip: .*use one of "none", "truncated", "full"/);
  writeFileSync(bad, 'domain: "not a domain@"\n');
  assert.match(runCli(['--config', bad, 'check-config']).stderr, /domain: /);
  writeFileSync(bad, 'domain: [a.test\n');
  assert.match(runCli(['--config', bad, 'check-config']).stderr, /is not valid YAML/);
  assert.match(
    runCli(['--config', join(dir, 'missing.yaml'), 'check-config']).stderr,
    /cannot read .*missing\.yaml: ENOENT/,
  );
});

test('LETHE_CONFIG is honoured when --config is not given', () => {
  const r = runCli(['check-config'], { env: { LETHE_CONFIG: path } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /domains: cli\.test/);
});

test('user add, list, passwd and remove', () => {
  let r = lethe(['user', 'add', 'Alice@cli.test', '--password-stdin'], 'first password\n');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /created alice@cli\.test/);
  r = lethe(['user', 'add', 'alice@cli.test', '--password-stdin'], 'again\n');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /already exists/);
  assert.match(
    lethe(['user', 'add', 'eve@elsewhere.test', '--password-stdin'], 'x\n').stderr,
    /not a domain this server hosts/,
  );
  assert.match(lethe(['user', 'add', 'bad@user@cli.test', '--password-stdin'], 'x\n').stderr, /error: /);
  assert.match(lethe(['user', 'add', 'nopass@cli.test', '--password-stdin'], '').stderr, /must not be empty/);
  assert.match(lethe(['user', 'add', 'tty@cli.test']).stderr, /pass --password-stdin/);
  r = lethe(['user', 'list']);
  assert.match(r.stdout, /^alice@cli\.test\tactive\t/m);
  assert.equal(lethe(['user', 'passwd', 'alice@cli.test', '--password-stdin'], 'second password\n').status, 0);
  assert.match(lethe(['user', 'passwd', 'ghost@cli.test', '--password-stdin'], 'x\n').stderr, /does not exist/);
  assert.match(lethe(['user', 'remove', 'alice@cli.test']).stderr, /required option '--reason/);
  r = lethe(['user', 'remove', 'alice@cli.test', '--reason', 'asked by mail']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /account: 1 item\(s\) deleted/);
  assert.match(r.stdout, /credentials: 2 item\(s\) deleted/);
  assert.doesNotMatch(lethe(['user', 'list']).stdout, /alice/);
});

test('bulk-add creates numbered accounts for load tests', () => {
  const r = lethe(['user', 'bulk-add', '--prefix', 'load', '--count', '3', '--password-stdin'], 'pw\n');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /created 3 accounts/);
  assert.match(lethe(['user', 'list']).stdout, /load1@cli\.test[\s\S]*load3@cli\.test/);
});

test('start prints the domain, the ports and the command to add a user', async () => {
  const server = await startCli(path);
  try {
    const out = server.stdout();
    assert.match(out, /Lethe is running for cli\.test/);
    assert.match(out, /STARTTLS, required/);
    assert.match(out, /Add a user with: npx lethe --config \S+ user add alice@cli\.test/);
  } finally {
    await server.stop();
  }
  assert.equal(server.child.exitCode, 0);
});
