import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

/** The compiled `lethe` command, run as a user would run it. */
export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Writes a config file for a server on ephemeral loopback ports in a fresh directory. */
export function writeConfig(extra: Record<string, unknown> = {}): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lethe-cli-'));
  const path = join(dir, 'lethe.yaml');
  writeFileSync(
    path,
    stringify({
      domain: 'cli.test',
      dataDir: './data',
      c2s: { host: '127.0.0.1', port: 0, directTlsPort: 0 },
      http: { host: '127.0.0.1', port: 0 },
      auth: { scramIterations: 4096 },
      log: { level: 'warn' },
      ...extra,
    }),
  );
  return { path, dir };
}

/** Starts `lethe start` as a child process and resolves with the ports it prints. */
export async function startCli(
  configPath: string,
): Promise<{ child: ChildProcess; port: number; directTlsPort: number; stdout: () => string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CLI, '--config', configPath, 'start'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const deadline = Date.now() + 30_000;
  const banner = /port (\d+) \(STARTTLS[^)]*\), port (\d+) \(direct TLS\)/;
  let m = banner.exec(out);
  while (!m) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`lethe start did not come up: ${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
    m = banner.exec(out);
  }
  return {
    child,
    port: Number(m[1]),
    directTlsPort: Number(m[2]),
    stdout: () => out,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  };
}
