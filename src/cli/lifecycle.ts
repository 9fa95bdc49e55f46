import type { Command } from 'commander';
import type { Server } from '../core/server.js';
import { type AuditEntry, operatorActor } from '../privacy/audit.js';
import {
  deactivateAccount,
  type ErasureReceipt,
  erasureReceipt,
  pendingHolds,
  reactivateAccount,
  requestErasure,
  restoreAccount,
} from '../privacy/erasure.js';
import { Jid } from '../xml/jid.js';

/** `lethe user erase|restore|deactivate|reactivate|remove|pending|receipt` and `lethe audit`. */

type WithServer = <T>(fn: (server: Server) => Promise<T>) => Promise<T>;

const out = (line = '') => process.stdout.write(`${line}\n`);

function printReceipt(jid: Jid | string, receipt: ErasureReceipt): void {
  out(`erased ${jid}:`);
  for (const line of receipt.erased) out(`  ${line.category}: ${line.removed} item(s) deleted`);
  out('kept on purpose:');
  for (const k of receipt.kept) out(`  ${k.category}: ${k.items} item(s), ${k.what}; why: ${k.why}; kept ${k.howLong}`);
  out(`receipt kept under the tombstone hash ${receipt.tombstone}`);
}

function printAudit(entries: AuditEntry[]): void {
  for (const e of entries)
    out([e.at, e.actor, e.action, e.account, e.reason ?? '', e.details ? JSON.stringify(e.details) : ''].join('\t'));
}

export function addLifecycleCommands(
  program: Command,
  user: Command,
  withServer: WithServer,
  selfCommand: () => string,
): void {
  const parse = (server: Server, address: string) => server.accounts.checkJid(address);

  user
    .command('erase <jid>')
    .description(
      'erase an account and all its data through the privacy registry, after the grace period (erasure.graceDays); locks it at once',
    )
    .requiredOption('--reason <text>', 'why (recorded in the audit log and the receipt)')
    .option('--now', 'erase at once instead of after the grace period')
    .action(async (address: string, opts: { reason: string; now?: boolean }) => {
      await withServer(async (server) => {
        const jid = parse(server, address);
        const request = await requestErasure(server, jid, {
          by: operatorActor(),
          reason: opts.reason,
          now: !!opts.now,
        });
        if (request.receipt) return printReceipt(jid, request.receipt);
        out(`${jid} is locked now and will be erased on ${request.eraseAt.toISOString().slice(0, 10)} (UTC).`);
        out('What will be erased:');
        for (const c of request.willErase) out(`  ${c.category}: ${c.count} item(s)`);
        out('Tell the user (the account is locked, so the server cannot reach them once their sessions end):');
        out(`  ${request.notice}`);
        out(`Cancel before then with: ${selfCommand()} user restore ${jid}`);
      });
    });

  user
    .command('remove <jid>')
    .description('erase an account and all its data now: the same as `user erase --now`')
    .requiredOption('--reason <text>', 'why (recorded in the audit log and the receipt)')
    .action(async (address: string, opts: { reason: string }) => {
      await withServer(async (server) => {
        const jid = parse(server, address);
        const request = await requestErasure(server, jid, { by: operatorActor(), reason: opts.reason, now: true });
        printReceipt(jid, request.receipt as ErasureReceipt);
      });
    });

  user
    .command('restore <jid>')
    .description('cancel a pending erasure: the account is active again, nothing was lost')
    .option('--reason <text>', 'why (recorded in the audit log and told to the user)')
    .action(async (address: string, opts: { reason?: string }) => {
      await withServer(async (server) => {
        const jid = parse(server, address);
        await restoreAccount(server, jid, { by: operatorActor(), reason: opts.reason });
        out(`${jid} restored: the erasure is cancelled and the account is active`);
      });
    });

  user
    .command('deactivate <jid>')
    .description('lock and hide an account without deleting anything (no login, no delivery); reversible')
    .requiredOption('--reason <text>', 'why (recorded in the audit log and told to the user)')
    .action(async (address: string, opts: { reason: string }) => {
      await withServer(async (server) => {
        const jid = parse(server, address);
        await deactivateAccount(server, jid, { by: operatorActor(), reason: opts.reason });
        out(`${jid} deactivated; undo with: ${selfCommand()} user reactivate ${jid}`);
      });
    });

  user
    .command('reactivate <jid>')
    .description('undo `user deactivate`')
    .option('--reason <text>', 'why (recorded in the audit log and told to the user)')
    .action(async (address: string, opts: { reason?: string }) => {
      await withServer(async (server) => {
        const jid = parse(server, address);
        await reactivateAccount(server, jid, { by: operatorActor(), reason: opts.reason });
        out(`${jid} reactivated`);
      });
    });

  user
    .command('pending')
    .description('accounts locked pending erasure or deactivated, with dates and reasons')
    .action(async () => {
      await withServer(async (server) => {
        for (const h of await pendingHolds(server))
          out(
            [
              h.account,
              h.kind,
              h.since,
              h.eraseAt ?? '',
              h.requestedBy,
              h.reason ?? '',
              h.reminderDue ? 'reminder due: tell the user' : '',
            ].join('\t'),
          );
      });
    });

  user
    .command('receipt <jid>')
    .description('the erasure receipt of an erased address (found by its keyed hash)')
    .action(async (address: string) => {
      await withServer(async (server) => {
        const jid = Jid.parse(address).bare;
        const receipt = await erasureReceipt(server, jid);
        if (!receipt) throw new Error(`no erasure receipt for ${jid}`);
        printReceipt(jid, receipt);
        out(`requested by ${receipt.requestedBy} on ${receipt.requestedAt}, completed ${receipt.completedAt}`);
        if (receipt.reason) out(`reason: ${receipt.reason}`);
      });
    });

  program
    .command('audit')
    .description('the audit log of operator actions on personal data, oldest first')
    .option('--account <jid>', 'only entries about this account (also after its erasure, by its keyed hash)')
    .option('--json', 'print JSON')
    .action(async (opts: { account?: string; json?: boolean }) => {
      await withServer(async (server) => {
        const entries = await server.audit.list(
          opts.account === undefined ? {} : { account: Jid.parse(opts.account).bare },
        );
        if (opts.json) out(JSON.stringify(entries, null, 2));
        else printAudit(entries);
      });
    });
}
