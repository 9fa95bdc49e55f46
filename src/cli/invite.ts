import { type Command, InvalidArgumentError } from 'commander';
import type { Server } from '../core/server.js';
import { invitations } from '../modules/invite/index.js';
import { operatorActor } from '../privacy/audit.js';
import { Jid } from '../xml/jid.js';

/** `lethe invite create|list|revoke`. */

type WithServer = <T>(fn: (server: Server) => Promise<T>) => Promise<T>;

const out = (line = '') => process.stdout.write(`${line}\n`);

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('a whole number of days, at least 1');
  return n;
}

export function addInviteCommands(program: Command, withServer: WithServer): void {
  const invite = program
    .command('invite')
    .description('invitations: single-use links that let someone register although open registration is off');

  invite
    .command('create')
    .description('create an invitation; prints the link for XMPP clients and the web page')
    .option('--user <name>', 'the username it is for, which nobody else can register until it expires')
    .option('--domain <domain>', 'the domain to register on (default: the first of `domain`)')
    .option('--valid-days <n>', 'days it stays valid (default: invites.validDays)', positiveInteger)
    .action(async (opts: { user?: string; domain?: string; validDays?: number }) => {
      await withServer(async (server) => {
        let { user: username, domain } = opts;
        // `--user juliet@example.org` names the domain too.
        if (username?.includes('@')) {
          const jid = Jid.parse(username);
          if (domain !== undefined && Jid.parse(domain).domain !== jid.domain)
            throw new Error(`--user ${username} and --domain ${domain} name different domains`);
          username = jid.local;
          domain = jid.domain;
        }
        if (!server.config.invites.enabled)
          process.stderr.write('warning: invites.enabled is off; the server accepts no invitation until it is on\n');
        const created = await invitations(server).create({
          domain: domain ?? (server.config.domains[0] as string),
          username,
          validDays: opts.validDays,
          by: operatorActor(),
        });
        const target = created.username
          ? `${created.username}@${created.domain}`
          : `a new account on ${created.domain}`;
        out(`invitation ${created.id} for ${target}, valid until ${created.expiresAt.toISOString()}; it works once`);
        out(`  XMPP clients: ${created.xmppUri}`);
        if (created.webUrl) out(`  web page:     ${created.webUrl}`);
        out('The token is shown only now (the server keeps only its hash).');
      });
    });

  invite
    .command('list')
    .description('invitations not used yet and not expired (id, domain, username or -, created, expires, by)')
    .action(async () => {
      await withServer(async (server) => {
        for (const i of await invitations(server).list())
          out(
            [
              i.id,
              i.domain,
              i.username ?? '-',
              i.createdAt.toISOString(),
              i.expiresAt.toISOString(),
              i.createdBy ?? '',
            ].join('\t'),
          );
      });
    });

  invite
    .command('revoke <id>')
    .description('withdraw an unused invitation (ids as `invite list` shows them)')
    .action(async (id: string) => {
      await withServer(async (server) => {
        if (!/^\d+$/.test(id) || !(await invitations(server).revoke(Number(id))))
          throw new Error(`no unused invitation ${id}; see \`lethe invite list\``);
        out(`invitation ${id} revoked`);
      });
    });
}
