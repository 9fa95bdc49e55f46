// Lethe from this repository's build output. Unavailable (and skipped by the
// comparison) until its CLI (package.json "bin".lethe) is built and supports
// `user bulk-add` and `start`.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  type BenchSetup,
  ChildServer,
  type Launch,
  render,
  run,
  SCRAM_ITERATIONS,
  ServerUnavailable,
} from './common.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PKG = JSON.parse(readFileSync(`${REPO}package.json`, 'utf8')) as { version?: string; bin?: { lethe?: string } };
const CLI = `${REPO}${PKG.bin?.lethe ?? 'dist/src/cli/main.js'}`;

export class LetheServer extends ChildServer {
  readonly name = 'lethe';

  private get config(): string {
    return `${this.dir}/lethe.yaml`;
  }

  async prepare(setup: BenchSetup): Promise<number> {
    if (!existsSync(CLI)) throw new ServerUnavailable(`${CLI} does not exist (run npm run build once Lethe has a CLI)`);
    this.domain = setup.domain;
    mkdirSync(`${this.dir}/lethe-data`, { recursive: true });
    writeFileSync(
      this.config,
      render('lethe.yaml.tmpl', {
        DIR: this.dir,
        DOMAIN: setup.domain,
        C2S_PORT: this.port,
        DIRECT_TLS_PORT: this.directTlsPort,
        CERT: setup.certFile,
        KEY: setup.keyFile,
        SCRAM_ITERATIONS,
      }),
    );
    const t0 = performance.now();
    const r = await run(
      process.execPath,
      [
        CLI,
        '--config',
        this.config,
        'user',
        'bulk-add',
        '--prefix',
        setup.userPrefix,
        '--count',
        String(setup.accounts),
        '--password-stdin',
      ],
      { input: `${setup.password}\n`, timeoutMs: 600_000, cwd: REPO },
    );
    if (r.code !== 0) {
      throw new ServerUnavailable(
        `lethe user bulk-add failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-500)}`,
      );
    }
    return (performance.now() - t0) / 1000;
  }

  protected launch(): Launch {
    const logFile = `${this.dir}/lethe.log`;
    return {
      command: process.execPath,
      args: [CLI, '--config', this.config, 'start'],
      cwd: REPO,
      logFile,
      failureDetail: () => {
        const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().slice(-500) : '';
        return tail ? `\n${tail}` : '';
      },
    };
  }

  async version(): Promise<string> {
    return `Lethe ${PKG.version ?? '?'} (node ${process.version})`;
  }
}
