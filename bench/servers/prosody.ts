// Prosody (Debian package) in a directory of its own, started in the foreground.

import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { scramCredentials } from '../loadgen/scram.js';
import {
  type BenchServer,
  type BenchSetup,
  commandExists,
  debVersion,
  processAlive,
  render,
  SCRAM_ITERATIONS,
  ServerUnavailable,
  spawnServer,
  terminate,
  waitForStream,
} from './common.js';

/** util.datamanager's path encoding: every non-alphanumeric byte becomes %xx. */
export function prosodyPathEncode(s: string): string {
  return Array.from(Buffer.from(s, 'utf8'), (b) =>
    /[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`,
  ).join('');
}

function luaString(s: string): string {
  return JSON.stringify(s); // ASCII-only values here; JSON escapes are valid Lua escapes for them
}

export class ProsodyServer implements BenchServer {
  readonly name = 'prosody';
  private pid: number | undefined;
  private exited = true;
  private domain = '';

  constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly directTlsPort: number,
  ) {}

  private get config(): string {
    return `${this.dir}/prosody.cfg.lua`;
  }

  async prepare(setup: BenchSetup): Promise<number> {
    if (!(await commandExists('prosody')))
      throw new ServerUnavailable('prosody is not installed (apt-get install -y prosody)');
    this.domain = setup.domain;
    mkdirSync(`${this.dir}/data`, { recursive: true });
    writeFileSync(
      this.config,
      render('prosody.cfg.lua.tmpl', {
        DIR: this.dir,
        C2S_PORT: this.port,
        DIRECT_TLS_PORT: this.directTlsPort,
        CERT: setup.certFile,
        KEY: setup.keyFile,
        DOMAIN: setup.domain,
      }),
    );
    // Writing internal_hashed account files directly is what `prosodyctl register`
    // does, minus a Lua start-up and a PBKDF2 per account. One salt for the
    // batch keeps it to one PBKDF2; the server's work per login is the same.
    const t0 = performance.now();
    const dir = `${this.dir}/data/${prosodyPathEncode(setup.domain)}/accounts`;
    mkdirSync(dir, { recursive: true });
    const salt = randomUUID();
    const { storedKey, serverKey } = await scramCredentials(setup.password, Buffer.from(salt), SCRAM_ITERATIONS);
    const body = [
      'return {',
      `\t["iteration_count"] = ${SCRAM_ITERATIONS};`,
      `\t["salt"] = ${luaString(salt)};`,
      `\t["server_key"] = ${luaString(serverKey.toString('hex'))};`,
      `\t["stored_key"] = ${luaString(storedKey.toString('hex'))};`,
      '};',
      '',
    ].join('\n');
    for (let i = 1; i <= setup.accounts; i++) {
      writeFileSync(`${dir}/${prosodyPathEncode(`${setup.userPrefix}${i}`)}.dat`, body);
    }
    return (performance.now() - t0) / 1000;
  }

  async start(): Promise<number> {
    const logFd = openSync(`${this.dir}/stdout.log`, 'a');
    const child = spawnServer('prosody', ['--config', this.config], logFd);
    closeSync(logFd);
    this.exited = false;
    child.on('exit', () => {
      this.exited = true;
    });
    if (child.pid === undefined) throw new ServerUnavailable('prosody failed to spawn');
    this.pid = child.pid;
    try {
      await waitForStream(this.port, this.domain, 30_000, () => !this.exited);
    } catch (err) {
      await this.stop();
      throw new ServerUnavailable(`prosody did not start: ${(err as Error).message} (see ${this.dir}/prosody.log)`);
    }
    return this.pid;
  }

  async stop(): Promise<void> {
    if (this.pid !== undefined && !this.exited && processAlive(this.pid)) await terminate(this.pid);
    this.pid = undefined;
  }

  async version(): Promise<string> {
    return `Prosody ${await debVersion('prosody')}`;
  }
}
