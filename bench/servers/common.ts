// What the benchmark needs from a server under test, plus shared helpers for
// starting real servers in their own directories on loopback.

import { type SpawnOptions, spawn } from 'node:child_process';
import { chmodSync, closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** Settings every server gets, so the comparison is like for like. */
export interface BenchSetup {
  domain: string;
  userPrefix: string;
  password: string;
  /** Accounts prefix1..prefixN are created once per run. */
  accounts: number;
  /** Same self-signed RSA certificate for all servers. */
  certFile: string;
  keyFile: string;
}

/** PBKDF2 iterations for accounts we create ourselves (ejabberd's default; SCRAM minimum of RFC 5802). */
export const SCRAM_ITERATIONS = 4096;

export interface BenchServer {
  readonly name: string;
  /** c2s port offering STARTTLS (TLS optional so plain scenarios work). */
  readonly port: number;
  /** Writes config and creates the accounts; returns seconds spent creating accounts. */
  prepare(setup: BenchSetup): Promise<number>;
  /** Starts the server and waits until it answers a stream header; returns the PID whose RSS is the server's memory. */
  start(): Promise<number>;
  stop(): Promise<void>;
  version(): Promise<string>;
}

/** Thrown when a server cannot take part (not installed, not built, fails to start). */
export class ServerUnavailable extends Error {}

const TEMPLATE_DIR = fileURLToPath(new URL('../../../bench/servers/', import.meta.url));

/** Fills {{NAME}} placeholders of a template in bench/servers/. */
export function render(template: string, vars: Record<string, string | number>): string {
  const text = readFileSync(`${TEMPLATE_DIR}${template}`, 'utf8');
  return text.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_m, key: string) => {
    const v = vars[key];
    if (v === undefined) throw new Error(`template ${template}: no value for {{${key}}}`);
    return String(v);
  });
}

export interface CmdResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, with a time limit. */
export function run(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { input?: string; timeoutMs?: number } = {},
): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      stderr += `\n[killed after ${opts.timeoutMs} ms]`;
    }, opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {}); // a child that exits without reading its input is not our failure
      child.stdin?.end(opts.input);
    }
  });
}

/** Installed version of a Debian package ("prosody\t0.12.3-1" from dpkg-query --show). */
export async function debVersion(pkg: string): Promise<string> {
  const r = await run('dpkg-query', ['--show', pkg]);
  return (r.code === 0 && r.stdout.trim().split('\t')[1]) || 'version unknown';
}

export async function commandExists(cmd: string): Promise<boolean> {
  const r = await run('sh', ['-c', `command -v ${cmd}`]);
  return r.code === 0;
}

/** True if something already accepts connections on 127.0.0.1:port. */
export function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A currently free loopback port (for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until the server answers a stream header with stream features. */
export async function waitForStream(
  port: number,
  domain: string,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let lastError = 'no answer';
  while (Date.now() < end) {
    if (!alive()) throw new Error('server process exited during startup');
    try {
      await probe(port, domain);
      return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no XMPP stream on 127.0.0.1:${port} after ${timeoutMs} ms (${lastError})`);
}

function probe(port: number, domain: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, 2000);
    s.setEncoding('utf8');
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('connect', () => {
      s.write(
        `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`,
      );
    });
    s.on('data', (d: string) => {
      data += d;
      if (data.includes('features')) {
        clearTimeout(timer);
        s.end('</stream:stream>');
        resolve();
      }
    });
  });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL if still there after `graceMs`. Only ever called with PIDs we started. */
export async function terminate(pid: number, graceMs = 10_000): Promise<void> {
  if (!processAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const end = Date.now() + graceMs;
  while (Date.now() < end) {
    if (!processAlive(pid)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (processAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** Spawns a long-running server process detached from our stdio, logging to a file descriptor. */
export function spawnServer(cmd: string, args: string[], logFd: number, opts: SpawnOptions = {}) {
  return spawn(cmd, args, { ...opts, stdio: ['ignore', logFd, logFd] });
}

/** How a server that runs as our child process is started, and what to tell when it does not come up. */
export interface Launch {
  command: string;
  args: string[];
  cwd?: string;
  /** Where its standard output and error go. */
  logFile: string;
  /** Appended to the error when it does not answer (where to look). */
  failureDetail(): string;
}

/**
 * A server run as our own child process (Lethe, Prosody; ejabberd has its own control tool): start
 * it, wait until it answers a stream header on its port, and stop it.
 */
export abstract class ChildServer implements BenchServer {
  abstract readonly name: string;
  private pid: number | undefined;
  private exited = true;
  protected domain = '';

  constructor(
    protected readonly dir: string,
    readonly port: number,
    protected readonly directTlsPort: number,
  ) {}

  abstract prepare(setup: BenchSetup): Promise<number>;
  abstract version(): Promise<string>;
  protected abstract launch(): Launch;

  async start(): Promise<number> {
    const launch = this.launch();
    const logFd = openSync(launch.logFile, 'a');
    const child = spawnServer(launch.command, launch.args, logFd, launch.cwd ? { cwd: launch.cwd } : {});
    closeSync(logFd);
    this.exited = false;
    child.on('exit', () => {
      this.exited = true;
    });
    if (child.pid === undefined) throw new ServerUnavailable(`${this.name} failed to spawn`);
    this.pid = child.pid;
    try {
      await waitForStream(this.port, this.domain, 30_000, () => !this.exited);
    } catch (err) {
      await this.stop();
      throw new ServerUnavailable(`${this.name} did not start: ${(err as Error).message}${launch.failureDetail()}`);
    }
    return this.pid;
  }

  async stop(): Promise<void> {
    if (this.pid !== undefined && !this.exited && processAlive(this.pid)) await terminate(this.pid);
    this.pid = undefined;
  }
}

/**
 * A throwaway self-signed certificate for `domain` (RSA 2048, SHA-256, with the name as SAN), its
 * key readable by every user: servers that run as their own user (ejabberd, Prosody) must read it.
 */
export async function selfSignedCert(domain: string, certFile: string, keyFile: string, days = 7): Promise<void> {
  const r = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-sha256',
    '-nodes',
    '-days',
    String(days),
    '-subj',
    `/CN=${domain}`,
    '-addext',
    `subjectAltName=DNS:${domain}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  chmodSync(keyFile, 0o644);
}
