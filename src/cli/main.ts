#!/usr/bin/env node
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { type Config, ConfigError, loadConfig } from '../core/config.js';
import { renderConfigReference } from '../core/config-docs.js';
import { StanzaError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { openServer, startLethe } from '../lethe.js';
import { operatorActor } from '../privacy/audit.js';
import { renderCategoryTable } from '../privacy/categories-report.js';
import { type ReportKind, renderReport } from '../privacy/reports.js';
import { type Jid, JidError } from '../xml/jid.js';
import { acceptOnBehalf, addConsentCommands } from './consent.js';
import { addInviteCommands } from './invite.js';
import { addLifecycleCommands } from './lifecycle.js';
import { readPassword } from './password.js';
import { addPolicyCommands } from './policy.js';
import { addPortabilityCommands } from './portability.js';

const program = new Command('lethe')
  .description('Lethe: a federated XMPP server that is privacy-compliant by construction')
  .addOption(new Option('-c, --config <path>', 'configuration file (YAML)').env('LETHE_CONFIG'))
  .showHelpAfterError();

function config(): Config {
  return loadConfig(program.opts<{ config?: string }>().config);
}

/** The command line that reaches this same server, for messages that tell the user what to run next. */
function selfCommand(): string {
  const path = program.opts<{ config?: string }>().config;
  return `npx lethe${path ? ` --config ${path}` : ''}`;
}

async function withServer<T>(fn: (server: Awaited<ReturnType<typeof openServer>>) => Promise<T>): Promise<T> {
  const cfg = config();
  const server = await openServer(cfg, createLogger({ log: { ...cfg.log, level: 'warn' } }));
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

function parseUser(address: string, server: { accounts: { checkJid(a: string): Jid } }): Jid {
  return server.accounts.checkJid(address);
}

program
  .command('start')
  .description('start the server')
  .action(async () => {
    const cfg = config();
    const running = await startLethe(cfg);
    const { ports } = running;
    const lines = [
      `Lethe is running for ${cfg.domains.join(', ')}`,
      `  clients: port ${ports.starttls} (STARTTLS${cfg.c2s.requireEncryption ? ', required' : ''})${
        ports.directTls !== null ? `, port ${ports.directTls} (direct TLS)` : ''
      } on ${cfg.c2s.host}`,
      ...(ports.http !== null
        ? [`  https:   port ${ports.http} on ${cfg.http.host} (links: ${running.server.http.url('/')})`]
        : []),
      `  data:    ${cfg.dataDir}`,
      `  TLS:     ${running.certPath}${running.selfSigned ? ' (self-signed; clients must accept it)' : ''}`,
      `Add a user with: ${selfCommand()} user add alice@${cfg.domains[0]}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const shutdown = async (signal: string) => {
      process.stdout.write(`${signal}: stopping\n`);
      await running.stop();
      process.exit(0);
    };
    process.once('SIGINT', () => void shutdown('SIGINT'));
    process.once('SIGTERM', () => void shutdown('SIGTERM'));
  });

program
  .command('check-config')
  .description('validate the configuration and print what it resolves to')
  .action(() => {
    const cfg = config();
    process.stdout.write(
      `configuration ${cfg.source ?? '(defaults, no file)'} is valid\n` +
        `  domains: ${cfg.domains.join(', ')}\n  data:    ${cfg.dataDir}\n  database: ${cfg.databasePath}\n` +
        `  clients: ${cfg.c2s.host}:${cfg.c2s.port} (STARTTLS)${cfg.c2s.directTlsPort !== null ? `, ${cfg.c2s.directTlsPort} (direct TLS)` : ''}\n`,
    );
  });

program
  .command('config-reference')
  .description('print the reference of every configuration key (Markdown)')
  .action(() => {
    process.stdout.write(renderConfigReference());
  });

program
  .command('privacy')
  .description('what the server stores about people')
  .command('categories')
  .description('print every registered data category: purpose, legal basis, retention, recipients (Markdown)')
  .action(async () => {
    await withServer(async (server) => {
      process.stdout.write(`${renderCategoryTable(server.privacy)}\n`);
    });
  });

const report = program
  .command('report')
  .description("the operator's privacy reports, generated from the privacy registry and the configuration");

for (const [kind, description] of [
  ['ropa', 'the record of processing activities (GDPR art. 30)'],
  ['dpia', 'a starting point for the data protection impact assessment (GDPR art. 35), with sections to complete'],
] as [ReportKind, string][])
  report
    .command(kind)
    .description(description)
    .addOption(new Option('--format <format>', 'output format').choices(['md', 'json']).default('md'))
    .option('--out <file>', 'write the report to this file instead of standard output')
    .action(async (opts: { format: 'md' | 'json'; out?: string }) => {
      await withServer(async (server) => {
        const text = `${await renderReport(server, kind, opts.format)}\n`;
        if (opts.out === undefined) return void process.stdout.write(text);
        writeFileSync(opts.out, text);
        process.stdout.write(`wrote ${opts.out}\n`);
      });
    });

const user = program.command('user').description('manage user accounts');

user
  .command('add <jid>')
  .description('create an account, e.g. alice@localhost')
  .option('--password-stdin', 'read the password from standard input instead of prompting')
  .option(
    '--accept-terms',
    'record in the consent ledger that the user accepted the current terms (the operator vouches for it, e.g. signed on paper); without it they are asked at their first login',
  )
  .action(async (address: string, opts: { passwordStdin?: boolean; acceptTerms?: boolean }) => {
    await withServer(async (server) => {
      const jid = parseUser(address, server);
      if (await server.accounts.get(jid)) throw new StanzaError('conflict', `${jid} already exists`);
      const password = await readPassword({ stdin: !!opts.passwordStdin, confirm: true });
      await server.accounts.create(jid, password);
      process.stdout.write(`created ${jid}\n`);
      if (!opts.acceptTerms) return;
      const version = await acceptOnBehalf(server, jid, 'operator');
      process.stdout.write(
        version
          ? `recorded that ${jid} accepted terms version ${version}\n`
          : 'no terms are published: nothing to accept\n',
      );
    });
  });

user
  .command('bulk-add')
  .description('create <prefix>1 … <prefix><count> with one password (load tests, staging)')
  .requiredOption('--prefix <prefix>', 'user name prefix')
  .requiredOption('--count <n>', 'how many accounts', (v) => Number.parseInt(v, 10))
  .option('--domain <domain>', 'domain (default: the first configured one)')
  .option('--password-stdin', 'read the password from standard input instead of prompting')
  .action(async (opts: { prefix: string; count: number; domain?: string; passwordStdin?: boolean }) => {
    if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 1_000_000)
      throw new Error('--count must be a whole number from 1 to 1000000');
    await withServer(async (server) => {
      const domain = opts.domain ?? (server.config.domains[0] as string);
      const password = await readPassword({ stdin: !!opts.passwordStdin, confirm: true });
      let created = 0;
      for (let i = 1; i <= opts.count; i++) {
        const jid = parseUser(`${opts.prefix}${i}@${domain}`, server);
        if (await server.accounts.get(jid)) continue;
        await server.accounts.create(jid, password);
        created++;
      }
      process.stdout.write(`created ${created} accounts (${opts.count - created} existed already)\n`);
    });
  });

user
  .command('passwd <jid>')
  .description("set a user's password (recorded in the audit log; the user is told)")
  .option('--password-stdin', 'read the password from standard input instead of prompting')
  .option('--reason <text>', 'why (recorded in the audit log and told to the user)')
  .action(async (address: string, opts: { passwordStdin?: boolean; reason?: string }) => {
    await withServer(async (server) => {
      const jid = parseUser(address, server);
      if (!(await server.accounts.get(jid))) throw new StanzaError('item-not-found', `${jid} does not exist`);
      const password = await readPassword({ stdin: !!opts.passwordStdin, confirm: true });
      await server.accounts.setPassword(jid, password);
      await server.audit.record({
        actor: operatorActor(),
        action: 'password-reset',
        account: jid,
        reason: opts.reason,
      });
      process.stdout.write(`password changed for ${jid}\n`);
    });
  });

user
  .command('list')
  .description('list accounts')
  .option('--domain <domain>', 'only this domain')
  .action(async (opts: { domain?: string }) => {
    await withServer(async (server) => {
      for await (const row of server.accounts.list(opts.domain))
        process.stdout.write(`${row.jid}\t${row.status}\t${row.created_at}\n`);
    });
  });

addLifecycleCommands(program, user, withServer, selfCommand);
addPortabilityCommands(program, user, withServer);
addConsentCommands(program, withServer);
addInviteCommands(program, withServer);
addPolicyCommands(program, withServer);

function explain(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  if (err instanceof StanzaError || err instanceof JidError) return `error: ${err.message}`;
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`${explain(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
