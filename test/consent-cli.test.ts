import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli, startCli, writeConfig } from './support/cli.js';
import type { TestServer } from './support/lethe.js';
import { connect, type Element, type TestClient } from './support/xmpp.js';

/**
 * The operator's consent workflow from the command line against a running `lethe start` in another
 * process: publish, accept on a user's behalf, notices queued by `lethe notice send`, and a version
 * published while users are online reaching them within `consent.checkInterval`.
 */

const { path, dir } = writeConfig({ consent: { checkInterval: 1 } });
const lethe = (args: string[], input?: string) => runCli(['--config', path, ...args], { input });
const PASSWORD = 'a long enough password';
let server: Awaited<ReturnType<typeof startCli>> | undefined;
const clients: TestClient[] = [];

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const fromNotices = (el: Element) => el.is('message') && el.attrs.from === 'notices@cli.test';

function publish(version: string, changes: string): void {
  for (const file of ['terms.md', 'privacy.md']) {
    const at = join(dir, 'data', 'policies', file);
    // The starting points carry a note the operator must remove before publishing.
    writeFileSync(at, `${readFileSync(at, 'utf8').replace(/^>.*\n/gm, '')}\n<!-- ${version} -->\n`);
  }
  const r = lethe(['policy', 'publish', '--version', version, '--changes', changes]);
  assert.equal(r.status, 0, r.stderr);
}

test('publish, accept on a user’s behalf, notices and a new version reach a running server', async () => {
  assert.equal(lethe(['policy', 'init']).status, 0);
  publish('1', 'First version.');

  let r = lethe(['user', 'add', 'alice@cli.test', '--password-stdin', '--accept-terms'], `${PASSWORD}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /recorded that alice@cli\.test accepted terms version 1/);
  assert.equal(lethe(['user', 'add', 'bob@cli.test', '--password-stdin'], `${PASSWORD}\n`).status, 0);
  assert.match(lethe(['consent', 'show', 'alice@cli.test']).stdout, /terms\tgiven\t1\trecorded by the operator/);
  assert.match(lethe(['consent', 'show', 'bob@cli.test']).stdout, /has not accepted the current version 1/);
  assert.match(lethe(['audit', '--account', 'alice@cli.test']).stdout, /consent-recorded/);

  server = await startCli(path);
  const target = { port: server.port, directTlsPort: server.directTlsPort, domain: 'cli.test' } as TestServer;
  const alice = await connect(target, 'alice', { password: PASSWORD });
  const bob = await connect(target, 'bob', { password: PASSWORD });
  clients.push(alice, bob);
  await bob.waitFor(fromNotices, 5000, 'bob’s terms notice at login');
  await alice.expectNothing(fromNotices, 500);

  r = lethe(['notice', 'send', '--to', 'alice@cli.test', '--subject', 'Maintenance', 'Down', 'at', 'noon.']);
  assert.equal(r.status, 0, r.stderr);
  const notice = await alice.waitFor((el) => el.getChildText('body') === 'Down at noon.', 5000, 'the notice');
  assert.equal(notice.attrs.from, 'notices@cli.test');
  assert.equal(lethe(['notice', 'send', 'nobody told']).status, 1, 'a notice needs --to or --all');

  publish('2', 'Rule 2 added.');
  const terms = await alice.waitFor(
    (el) => fromNotices(el) && /version 2/.test(el.getChildText('body') ?? ''),
    8000,
    'the notice of version 2',
  );
  assert.match(terms.getChildText('body') ?? '', /What changed: Rule 2 added\./);
});
