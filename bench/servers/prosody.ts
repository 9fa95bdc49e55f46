// Prosody (Debian package) in a directory of its own, started in the foreground.

import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { scramCredentials } from '../loadgen/scram.js';
import {
  type BenchSetup,
  ChildServer,
  commandExists,
  debVersion,
  type Launch,
  render,
  SCRAM_ITERATIONS,
  ServerUnavailable,
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

export class ProsodyServer extends ChildServer {
  readonly name = 'prosody';

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

  protected launch(): Launch {
    return {
      command: 'prosody',
      args: ['--config', this.config],
      logFile: `${this.dir}/stdout.log`,
      failureDetail: () => ` (see ${this.dir}/prosody.log)`,
    };
  }

  async version(): Promise<string> {
    return `Prosody ${await debVersion('prosody')}`;
  }
}
