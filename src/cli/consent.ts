import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import type { Server } from '../core/server.js';
import { operatorActor } from '../privacy/audit.js';
import { consentMethodText } from '../privacy/consent/ledger.js';
import { EVERYONE, queueNotice } from '../privacy/consent/notices.js';
import { consent } from '../privacy/consent/service.js';
import type { Jid } from '../xml/jid.js';

/** `lethe notice send`, `lethe consent show`, and the operator's acceptance on behalf of a user. */

type WithServer = <T>(fn: (server: Server) => Promise<T>) => Promise<T>;

const out = (line = '') => process.stdout.write(`${line}\n`);

/**
 * Records that the user accepted the current terms outside the server (`--accept-terms` of `user add`
 * and `import`): the operator vouches for it, and the ledger says so. Returns the version, or
 * undefined when nothing is published.
 */
export async function acceptOnBehalf(
  server: Server,
  jid: Jid,
  method: 'operator' | 'import',
): Promise<string | undefined> {
  const service = consent(server);
  const version = service.current?.version;
  if (version === undefined) return undefined;
  await service.accept(jid, method, version);
  await server.audit.record({
    actor: operatorActor(),
    action: 'consent-recorded',
    account: jid,
    reason: `accepted terms version ${version} ${consentMethodText[method]}`,
  });
  return version;
}

export function addConsentCommands(program: Command, withServer: WithServer): void {
  const notice = program.command('notice').description('server notices: messages from the server to its users');
  notice
    .command('send [text...]')
    .description(
      'send a notice from the notice sender (notices.sender) to users; a running server delivers it within consent.checkInterval seconds, offline users get it at their next login',
    )
    .addOption(new Option('--to <jid...>', 'the users to tell').conflicts('all'))
    .option('--all', 'every active account')
    .option('--online', 'only users online when it is delivered (no copy is kept for the others)')
    .option('--subject <text>', 'a subject line')
    .option('--stdin', 'read the text from standard input')
    .action(
      async (
        words: string[],
        opts: { to?: string[]; all?: boolean; online?: boolean; subject?: string; stdin?: boolean },
      ) => {
        const body = (opts.stdin ? readFileSync(0, 'utf8') : words.join(' ')).trim();
        if (!body) throw new Error('no text: give it as arguments or with --stdin');
        if (!opts.all && !opts.to?.length) throw new Error('say who to tell: --to <jid> (repeatable) or --all');
        await withServer(async (server) => {
          const recipients: (Jid | typeof EVERYONE)[] = opts.all
            ? [EVERYONE]
            : (opts.to ?? []).map((a) => server.accounts.checkJid(a));
          for (const to of recipients) {
            if (to !== EVERYONE && !(await server.accounts.exists(to)))
              throw new Error(`${to} is not an active account`);
            await queueNotice(server.db, { to, subject: opts.subject, body, onlineOnly: !!opts.online });
          }
          out(
            `queued for ${opts.all ? `every ${opts.online ? 'online ' : ''}user` : recipients.join(', ')}; a running server delivers it within ${server.config.consent.checkInterval} s (or when it next starts)`,
          );
        });
      },
    );

  program
    .command('consent')
    .description('the consent ledger')
    .command('show <jid>')
    .description("a user's consent history and whether they accepted the current terms")
    .action(async (address: string) => {
      await withServer(async (server) => {
        const jid = server.accounts.checkJid(address);
        const service = consent(server);
        for (const e of await service.ledger.history(jid))
          out(
            [
              new Date(e.at).toISOString(),
              e.purpose,
              e.action,
              e.version ?? '',
              consentMethodText[e.method] ?? e.method,
            ].join('\t'),
          );
        const current = service.current;
        if (!current) return out('no terms are published');
        if (!(await service.mustAccept(jid))) return out(`accepted the current version ${current.version}`);
        const deadline = await service.deadline(jid);
        out(
          `has not accepted the current version ${current.version}; ${
            deadline && deadline.getTime() <= Date.now() ? 'held back now' : `held back from ${deadline?.toISOString()}`
          }`,
        );
      });
    });
}
