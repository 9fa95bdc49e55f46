// The benchmark's load generator must not be able to silently measure
// nothing: run each scenario at tiny sizes against a real server and check
// that what it counts was really delivered. The server is Lethe itself, driven
// through the same BenchServer wrapper the comparison uses (bulk-add, start by PID).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { XmppConn } from '../bench/loadgen/connection.js';
import { attr, STREAM_END, StanzaScanner } from '../bench/loadgen/xml.js';
import { type BenchServer, type BenchSetup, commandExists, freePort, selfSignedCert } from '../bench/servers/common.js';
import { LetheServer } from '../bench/servers/lethe.js';

const LOADGEN = fileURLToPath(new URL('../bench/loadgen/main.js', import.meta.url));

const missing = !(await commandExists('openssl')) ? 'openssl is not installed' : undefined;

let dir = '';
let server: BenchServer | undefined;
let serverPid = 0;
let setup: BenchSetup;

async function makeServer(): Promise<BenchServer> {
  return new LetheServer(dir, await freePort(), await freePort());
}

before(async () => {
  if (missing) return;
  dir = mkdtempSync(`${os.tmpdir()}/lethe-loadgen-test-`);
  setup = {
    domain: 'bench.localhost',
    userPrefix: 'lgtest',
    password: 'loadgen-test-pass',
    accounts: 10,
    certFile: `${dir}/cert.pem`,
    keyFile: `${dir}/key.pem`,
  };
  await selfSignedCert(setup.domain, setup.certFile, setup.keyFile, 1);
  server = await makeServer();
  await server.prepare(setup);
  serverPid = await server.start();
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function skipIfMissing(t: { skip: (msg: string) => void }): boolean {
  if (!missing) return false;
  console.warn(`SKIPPED bench load generator test: ${missing}`);
  t.skip(missing);
  return true;
}

/** Runs the CLI (later flags override the defaults); stdout must be exactly one JSON line. */
async function loadgen(args: string[]): Promise<{ code: number | null; result: Record<string, unknown> }> {
  const srv = server as BenchServer;
  const [scenario, ...rest] = args;
  const all = [
    LOADGEN,
    scenario as string,
    '--port',
    String(srv.port),
    '--domain',
    setup.domain,
    '--user-prefix',
    setup.userPrefix,
    '--password',
    setup.password,
    '--timeout',
    '60',
    ...rest,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, all, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const lines = out.split('\n').filter((l) => l.length > 0);
      assert.equal(lines.length, 1, `expected one JSON line, got: ${out}`);
      resolve({ code, result: JSON.parse(lines[0] as string) as Record<string, unknown> });
    });
  });
}

test('scanner yields whole top-level elements however the input is split', () => {
  const input =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'><stream:features><bind xmlns='x'/></stream:features>" +
    "<message from='a@b/c' to='d@e/f'><body>1 2 3 &lt;x&gt;</body></message><iq type='result' id='x'/></stream:stream>";
  const expected = [
    "<stream:features><bind xmlns='x'/></stream:features>",
    "<message from='a@b/c' to='d@e/f'><body>1 2 3 &lt;x&gt;</body></message>",
    "<iq type='result' id='x'/>",
    STREAM_END,
  ];
  for (let cut = 0; cut <= input.length; cut++) {
    const got: string[] = [];
    const s = new StanzaScanner();
    s.push(input.slice(0, cut), (el) => got.push(el));
    s.push(input.slice(cut), (el) => got.push(el));
    assert.deepEqual(got, expected, `split at ${cut}`);
  }
});

test('logins: SCRAM-SHA-1 without TLS and PLAIN over STARTTLS really log in', async (t) => {
  if (skipIfMissing(t)) return;
  for (const args of [
    ['--mech', 'SCRAM-SHA-1', '--tls', 'none'],
    ['--mech', 'PLAIN', '--tls', 'starttls'],
  ]) {
    const { code, result } = await loadgen(['logins', '--count', '5', '--concurrency', '2', ...args]);
    assert.equal(code, 0, JSON.stringify(result));
    assert.equal(result.scenario, 'logins');
    assert.equal(result.ok, true);
    assert.equal(result.succeeded, 5);
    assert.equal(result.errors, 0);
    assert.ok((result.loginsPerSec as number) > 0);
    const lat = result.latencyMs as { count: number; p50: number; p99: number };
    assert.equal(lat.count, 5);
    assert.ok(lat.p50 > 0 && lat.p99 >= lat.p50);
    if (args.includes('starttls')) assert.match(String(result.tlsProtocol), /^TLSv1\.[23]$/);
  }
});

test('logins: a wrong password is counted as errors, not as logins', async (t) => {
  if (skipIfMissing(t)) return;
  const { code, result } = await loadgen(['logins', '--count', '2', '--warmup', '0', '--password', 'wrong']);
  assert.equal(code, 1);
  assert.equal(result.ok, false);
  assert.equal(result.succeeded, 0);
  assert.equal(result.errors, 2);
  assert.match(String((result.errorSamples as string[])[0]), /SASL failed/);
});

test('throughput: every counted message reached the right receiver, none lost', async (t) => {
  if (skipIfMissing(t)) return;
  const { code, result } = await loadgen([
    'throughput',
    '--pairs',
    '2',
    '--window',
    '4',
    '--duration',
    '2',
    '--warmup-time',
    '0.5',
  ]);
  assert.equal(code, 0, JSON.stringify(result));
  assert.equal(result.scenario, 'throughput');
  assert.equal(result.ok, true);
  assert.equal(result.activePairs, 2);
  assert.ok((result.delivered as number) > 0);
  assert.equal(result.lost, 0);
  assert.equal(result.duplicates, 0);
  assert.equal(result.misrouted, 0);
  assert.equal(result.received, result.sent);
  assert.ok((result.msgsPerSec as number) > 0);
  const lat = result.latencyMs as { count: number; p50: number; p99: number };
  assert.equal(lat.count, result.delivered);
  assert.ok(lat.p99 >= lat.p50);
});

test('idle: connections are held and answer, server memory is sampled', async (t) => {
  if (skipIfMissing(t)) return;
  const { code, result } = await loadgen([
    'idle',
    '--count',
    '5',
    '--duration',
    '0.5',
    '--tls',
    'starttls',
    '--server-pid',
    String(serverPid),
    '--source-addrs',
    '127.0.0.2-127.0.0.3',
  ]);
  assert.equal(code, 0, JSON.stringify(result));
  assert.equal(result.ok, true);
  assert.equal(result.alive, 5);
  assert.equal(result.errors, 0);
  assert.equal(result.sourceAddrs, 2);
  assert.ok((result.serverRssAfterKiB as number) > 0);
  assert.equal(typeof result.kibPerConn, 'number');
});

/** Logs in one of the test accounts with a resource of its own (not the load generator's `lg<n>`). */
async function connectAccount(n: number): Promise<XmppConn> {
  const conn = new XmppConn();
  await conn.login({
    host: '127.0.0.1',
    port: (server as BenchServer).port,
    domain: setup.domain,
    username: `${setup.userPrefix}${n}`,
    password: setup.password,
    resource: 'filler',
    tls: 'none',
    mech: 'SCRAM-SHA-1',
    timeoutMs: 10_000,
  });
  return conn;
}

test('mam: every page holds what the archive holds, and the counts match what was sent', async (t) => {
  if (skipIfMissing(t)) return;
  // Account 9 turns archiving on; 10 sends it 120 messages, 8 sends 80, it sends 50 to 10.
  const owner = await connectAccount(9);
  const a = await connectAccount(10);
  const b = await connectAccount(8);
  try {
    const prefs = await owner.iq("<iq type='set' id='ID'><prefs xmlns='urn:xmpp:mam:2' default='always'/></iq>");
    assert.equal(attr(prefs, 'type'), 'result', prefs);
    let toOwner = 0;
    let toA = 0;
    owner.onStanza = (el) => {
      if (el.startsWith('<message') && el.includes('<body>')) toOwner++;
    };
    a.onStanza = (el) => {
      if (el.startsWith('<message') && el.includes('<body>')) toA++;
    };
    b.onStanza = () => {};
    const chat = (to: string, i: number) =>
      `<message to='${to}@${setup.domain}' type='chat'><body>m ${i}</body></message>`;
    const ownerName = `${setup.userPrefix}9`;
    for (let i = 0; i < 120; i++) a.send(chat(ownerName, i));
    for (let i = 0; i < 80; i++) b.send(chat(ownerName, i));
    for (let i = 0; i < 50; i++) owner.send(chat(`${setup.userPrefix}10`, i));
    const end = Date.now() + 20_000;
    while ((toOwner < 200 || toA < 50) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(toOwner, 200);
    assert.equal(toA, 50);
  } finally {
    for (const c of [owner, a, b]) c.close();
  }

  const peerA = `${setup.userPrefix}10@${setup.domain}`;
  const { code, result } = await loadgen(['mam', '--account', '9', '--count', '5', '--warmup', '1', '--with', peerA]);
  assert.equal(code, 0, JSON.stringify(result));
  assert.equal(result.scenario, 'mam');
  assert.equal(result.ok, true);
  assert.equal(result.archiveCount, 250);
  assert.equal(result.mismatches, 0);
  assert.equal(result.errors, 0);
  type Kind = { pages: number; lastCount: number; completePages: number; resultsPerPage: { min: number; max: number } };
  const latest = result.latest as Kind;
  const withA = result.with as Kind;
  assert.equal(latest.pages, 5);
  assert.equal(latest.lastCount, 250);
  assert.deepEqual([latest.resultsPerPage.min, latest.resultsPerPage.max], [50, 50]);
  assert.equal(withA.pages, 5);
  assert.equal(withA.lastCount, 170);
  assert.equal((result.range as Kind).pages, 5);

  // Peers discovered from the pages; a window as long as the archive finds all of it; a page of 100 of 80 is complete.
  const second = await loadgen(['mam', '--account', '9', '--count', '3', '--page', '100', '--range-window', '3600']);
  assert.equal(second.code, 0, JSON.stringify(second.result));
  assert.equal(second.result.peers, 2);
  const range = second.result.range as Kind;
  assert.equal(range.lastCount, 250);
  assert.deepEqual([range.resultsPerPage.min, range.resultsPerPage.max], [100, 100]);
  const withAny = second.result.with as Kind;
  assert.ok(withAny.lastCount === 170 || withAny.lastCount === 80, JSON.stringify(withAny));
  assert.equal((second.result.with as Kind).pages, 3);
});

test('mam: a page that does not match its fin is a mismatch', async () => {
  const { checkPage } = await import('../bench/loadgen/scenarios/mam.js');
  const item = (id: string, stamp: number) => ({ id, stamp, peer: 'p@x' });
  const good = { items: [item('a', 1), item('b', 2)], complete: true, count: 2, first: 'a', last: 'b' };
  assert.equal(checkPage(good, { latest: true }, 50), undefined);
  assert.match(String(checkPage({ ...good, last: 'a' }, { latest: true }, 50)), /first\/last/);
  assert.match(String(checkPage({ ...good, count: 3 }, { latest: true }, 50)), /count 3/);
  assert.match(String(checkPage({ ...good, complete: false }, { latest: true }, 50)), /not marked complete/);
  assert.match(String(checkPage(good, { latest: true, with: 'q@x' }, 50)), /not q@x/);
  assert.match(String(checkPage(good, { latest: false, start: 1500, end: 9000 }, 50)), /before the window/);
});
