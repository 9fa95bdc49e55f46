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
import { STREAM_END, StanzaScanner } from '../bench/loadgen/xml.js';
import { type BenchServer, type BenchSetup, commandExists, freePort, run } from '../bench/servers/common.js';
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
  const cert = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${setup.domain}`,
    '-keyout',
    setup.keyFile,
    '-out',
    setup.certFile,
  ]);
  assert.equal(cert.code, 0, cert.stderr);
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
