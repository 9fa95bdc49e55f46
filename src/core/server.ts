import { AccountStore } from '../auth/accounts.js';
import { AuditLog } from '../privacy/audit.js';
import { Keys } from '../privacy/keys.js';
import { PrivacyRegistry } from '../privacy/registry.js';
import type { Db } from '../storage/db.js';
import { migrate } from '../storage/migrate.js';
import { SqliteDb } from '../storage/sqlite.js';
import type { Config } from './config.js';
import { Hooks } from './hooks.js';
import { HttpRoutes } from './http-routes.js';
import type { Logger } from './log.js';
import type { LetheModule } from './module.js';
import { Router } from './router.js';
import { SessionManager } from './sessions.js';

/**
 * The services a module may use. Created once per process; `open` prepares storage and loads
 * modules, transports are attached by whoever starts listening (see src/main/start.ts).
 */
export class Server {
  readonly hooks = new Hooks();
  readonly sessions = new SessionManager();
  readonly privacy = new PrivacyRegistry();
  /** Routes of the HTTPS listener; features register theirs in `load`. */
  readonly http = new HttpRoutes();
  readonly hosts: Set<string>;
  readonly router: Router;
  readonly accounts: AccountStore;
  /** Per-user data keys for encryption at rest (crypto-shredding). */
  readonly keys: Keys;
  readonly audit: AuditLog;
  readonly modules: LetheModule[] = [];
  readonly startedAt = new Date();
  private opened = false;

  constructor(
    readonly config: Config,
    readonly db: Db,
    readonly log: Logger,
  ) {
    this.hosts = new Set(config.domains);
    this.router = new Router(this.hosts, this.hooks, this.sessions, log);
    this.accounts = new AccountStore(this);
    this.keys = new Keys(this);
    this.audit = new AuditLog(this);
  }

  static create(config: Config, log: Logger): Server {
    return new Server(config, new SqliteDb(config.databasePath), log);
  }

  /** All XEP-0030 features of the loaded modules. */
  get features(): string[] {
    return this.modules.flatMap((m) => m.features ?? []);
  }

  /** Runs migrations and loads the modules; the server can then serve the CLI or listeners. */
  async open(modules: LetheModule[]): Promise<void> {
    if (this.opened) throw new Error('server already opened');
    this.opened = true;
    await this.keys.open();
    // Keys right after accounts: data keys reference accounts, and every store that seals data needs them.
    const all = [this.accounts.module, this.keys.module, this.audit.module, ...modules];
    const ran = await migrate(
      this.db,
      all.flatMap((m) => m.migrations ?? []),
    );
    if (ran.length) this.log.info({ migrations: ran }, 'database schema updated');
    for (const m of all) {
      await m.load(this);
      this.modules.push(m);
    }
  }

  async close(): Promise<void> {
    for (const m of [...this.modules].reverse()) await m.unload?.(this);
    await this.keys.close();
    await this.db.close();
  }
}
