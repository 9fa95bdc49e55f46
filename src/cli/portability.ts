import { type Command, Option } from 'commander';
import type { Server } from '../core/server.js';
import { operatorActor } from '../privacy/audit.js';
import { exportUser } from '../privacy/export.js';
import { type ExistingAccounts, importPie } from '../privacy/import.js';
import { acceptOnBehalf } from './consent.js';
import { progress } from './progress.js';

/** `lethe user export` and `lethe import` (GDPR art. 15 and 20; XEP-0227). */

type WithServer = <T>(fn: (server: Server) => Promise<T>) => Promise<T>;

/** Accounts listed by name after an import; a whole server's worth would bury the warnings. */
const LISTED = 50;

const out = (line = '') => process.stdout.write(`${line}\n`);

export function addPortabilityCommands(program: Command, user: Command, withServer: WithServer): void {
  user
    .command('export <jid>')
    .description(
      'write a zip of everything stored about a user: XEP-0227 XML, JSON per data category, messages as CSV and a summary (GDPR art. 15 and 20); recorded in the audit log, and the user is told',
    )
    .requiredOption('--out <file>', 'the archive to write (.zip); it must not exist yet')
    .requiredOption(
      '--reason <text>',
      'why the operator exports it (e.g. "access request of 2026-05-01"), for the audit log and the user',
    )
    .action(async (address: string, opts: { out: string; reason: string }) => {
      if (!opts.out.toLowerCase().endsWith('.zip')) throw new Error('--out must name a .zip file');
      if (opts.reason.trim() === '') throw new Error('--reason must say why');
      await withServer(async (server) => {
        const jid = server.accounts.checkJid(address);
        const bar = progress(`exporting ${jid}`, 'items');
        try {
          const result = await exportUser(server, jid, {
            out: opts.out,
            reason: opts.reason,
            actor: operatorActor(),
            onStart: (total) => bar.start(total),
            onItem: () => bar.add(),
          });
          bar.stop();
          out(`exported ${jid} to ${opts.out} (${result.bytes} bytes):`);
          for (const { category, count } of result.counts) out(`  ${category.id}: ${count} item(s)`);
        } finally {
          bar.stop();
        }
      });
    });

  program
    .command('import <file>')
    .description(
      'import accounts from an XEP-0227 document (Prosody, ejabberd, or a Lethe export .zip) in one transaction; existing accounts are refused unless --merge or --replace',
    )
    .addOption(
      new Option('--merge', "add the document's data to existing accounts (their password stays)").conflicts('replace'),
    )
    .addOption(new Option('--replace', 'erase existing accounts first, then import them from the document'))
    .option('--dry-run', 'check and import everything, then roll it back')
    .option(
      '--accept-terms',
      'record in the consent ledger that the imported users accepted the current terms (the operator vouches for it, e.g. they accepted them before the move); without it they are asked at their first login',
    )
    .action(
      async (file: string, opts: { merge?: boolean; replace?: boolean; dryRun?: boolean; acceptTerms?: boolean }) => {
        const existing: ExistingAccounts = opts.merge ? 'merge' : opts.replace ? 'replace' : 'refuse';
        await withServer(async (server) => {
          const bar = progress(`importing ${file}`, 'bytes');
          let result: Awaited<ReturnType<typeof importPie>>;
          try {
            result = await importPie(server, file, {
              existing,
              dryRun: !!opts.dryRun,
              actor: operatorActor(),
              onStart: (total) => bar.start(total),
              onBytes: (n) => bar.add(n),
            });
          } finally {
            bar.stop();
          }
          for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
          const verb = opts.dryRun ? 'would import' : 'imported';
          out(`${verb} ${result.users.length} account(s)${opts.dryRun ? ' (dry run: nothing was kept)' : ''}:`);
          for (const u of result.users.slice(0, LISTED)) out(`  ${u.jid}: ${u.outcome}`);
          if (result.users.length > LISTED) out(`  and ${result.users.length - LISTED} more`);
          if (!opts.acceptTerms || opts.dryRun) return;
          let version: string | undefined;
          for (const u of result.users) version = await acceptOnBehalf(server, u.jid, 'import');
          out(
            version
              ? `recorded acceptance of terms version ${version} for each`
              : 'no terms are published: nothing to accept',
          );
        });
      },
    );
}
