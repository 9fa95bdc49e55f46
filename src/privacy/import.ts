import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import type { Server } from '../core/server.js';
import { Jid, JidError } from '../xml/jid.js';
import type { AuditRecord } from './audit.js';
import type { DataCategory, Xep0227ImportContext } from './registry.js';
import { ARCHIVE_FILES } from './summary.js';
import { elementKey } from './xep0227/names.js';
import { type PieEvent, type ReaderOptions, readPieFile, readPieStream } from './xep0227/reader.js';

/**
 * Imports XEP-0227 documents (Lethe's, Prosody's, ejabberd's) through the privacy registry: each
 * child of `<user/>` goes to the category that claims it (`xep0227` in the registry).
 *
 * Two passes over the file. The first reads only hosts and users: every host must be served here,
 * every address valid and listed once, and what happens to existing accounts is settled before
 * anything is written; it also collects what Lethe cannot import, for the operator (XEP-0227 §3).
 * The second imports everything in one transaction, so a document that fails halfway leaves nothing.
 */

export type ExistingAccounts = 'refuse' | 'merge' | 'replace';

export interface ImportOptions {
  /** What to do with accounts that exist already: refuse the import (default), merge into them, or erase them first. */
  existing: ExistingAccounts;
  /** Check and import, then roll everything back. */
  dryRun?: boolean;
  /** Who imported, for the audit log (the OS user on the command line). */
  actor: string;
  onStart?: (totalBytes: number) => void;
  onBytes?: (n: number) => void;
}

export interface ImportedUser {
  jid: Jid;
  /** created, merged into an existing account, or replacing one */
  outcome: 'created' | 'merged' | 'replaced';
}

export interface ImportResult {
  users: ImportedUser[];
  /** Data left out, each once: unknown elements by key with how often they occurred, and what categories skipped. */
  warnings: string[];
}

export class ImportError extends Error {}

const DRY_RUN = Symbol('dry run');
/** Conflicts listed in one error before "and N more". */
const MAX_LISTED = 10;

export async function importPie(server: Server, path: string, options: ImportOptions): Promise<ImportResult> {
  const source = await openSource(path);
  options.onStart?.(source.size * 2);
  const routes = routing(server.privacy.all());
  const read = (wanted: ReaderOptions['wanted'], containers: ReaderOptions['containers']) =>
    source.read({ wanted, containers, onBytes: options.onBytes });

  const wanted = new Set(routes.keys());
  const plan = await check(server, read(wanted, routes.containers), options.existing);
  const warnings = [...plan.skipped].map(([key, n]) => `skipped ${n} × ${describeKey(key)}: Lethe has no store for it`);

  const users: ImportedUser[] = [];
  const audit: AuditRecord[] = [];
  try {
    await server.db.transaction(async (tx) => {
      const ctx: Xep0227ImportContext = { tx, merging: false, warn: (m) => warnings.push(m) };
      let host = '';
      let user: Jid | undefined;
      for await (const ev of read(wanted, routes.containers)) {
        if (ev.type === 'host') host = ev.jid;
        else if (ev.type === 'user') {
          user = new Jid(ev.name, host);
          const existed = plan.existing.has(user.bareString());
          ctx.merging = await server.accounts.importUser(user, ev.password, options.existing, tx);
          users.push({ jid: user, outcome: ctx.merging ? 'merged' : existed ? 'replaced' : 'created' });
          const entry: AuditRecord = {
            actor: options.actor,
            action: 'import',
            account: user,
            details: { file: path, outcome: users.at(-1)?.outcome },
          };
          await server.audit.record(entry, tx);
          // Access transparency is about accounts someone already had; a new one is the user's own move.
          if (existed) audit.push(entry);
        } else if (ev.type === 'element' && user) {
          const key = ev.container ? `${ev.container} ${elementKey(ev.el)}` : elementKey(ev.el);
          const category = routes.get(key);
          if (category?.xep0227) await category.xep0227.import(user, ev.el, ctx);
          else warnings.push(`${user}: ${describeKey(key)} skipped: Lethe has no store for it`);
        } else if (ev.type === 'user-end') user = undefined;
      }
      if (options.dryRun) throw DRY_RUN;
    });
  } catch (err) {
    if (err !== DRY_RUN) throw err;
    return { users, warnings };
  }
  // Told only now: the message to each user needs the storage the transaction held.
  for (const entry of audit) await server.audit.tell(entry);
  for (const { jid } of users) {
    const sha256 = await server.accounts.credentials(jid, 'sha256');
    const sha1 = await server.accounts.credentials(jid, 'sha1');
    if (!sha1 && !sha256) warnings.push(`${jid} has no credentials: set a password with \`lethe user passwd ${jid}\``);
    else if (!sha256)
      warnings.push(
        `${jid} has SCRAM-SHA-1 keys only (as Prosody and ejabberd export them): clients that choose SCRAM-SHA-256 cannot log in until the password is set again`,
      );
  }
  return { users, warnings };
}

/** Which category imports which element: `{ns}name`, or `<container key> {ns}name` for a container's items. */
function routing(categories: DataCategory[]): Map<string, DataCategory> & { containers: Set<string> } {
  const routes = Object.assign(new Map<string, DataCategory>(), { containers: new Set<string>() });
  for (const category of categories) {
    const mapping = category.xep0227;
    if (!mapping) continue;
    if (mapping.container) routes.containers.add(mapping.container);
    for (const key of mapping.elements) {
      const route = mapping.container ? `${mapping.container} ${key}` : key;
      const other = routes.get(route);
      if (other) throw new Error(`${route} is claimed by both ${other.id} and ${category.id}`);
      routes.set(route, category);
    }
  }
  return routes;
}

interface Plan {
  /** Bare JIDs of the document's accounts that exist already. */
  existing: Set<string>;
  skipped: Map<string, number>;
}

/** The first pass: hosts, addresses, duplicates and existing accounts, before anything is written. */
async function check(server: Server, events: AsyncIterable<PieEvent>, existing: ExistingAccounts): Promise<Plan> {
  const plan: Plan = { existing: new Set(), skipped: new Map() };
  const seen = new Set<string>();
  let host = '';
  for await (const ev of events) {
    if (ev.type === 'host') {
      host = ev.jid;
      if (!server.hosts.has(host))
        throw new ImportError(
          `the document has accounts on ${host}, which this server does not serve (it serves ${[...server.hosts].join(', ')}): add ${host} to \`domains\` in the configuration, or remove that <host/> from the document`,
        );
    } else if (ev.type === 'user') {
      let jid: Jid;
      try {
        jid = new Jid(ev.name, host);
      } catch (err) {
        if (!(err instanceof JidError)) throw err;
        throw new ImportError(
          `<user name=${JSON.stringify(ev.name)}/> on ${host} is not a valid address: ${err.message}`,
        );
      }
      const bare = jid.bareString();
      if (seen.has(bare)) throw new ImportError(`${bare} is in the document twice`);
      seen.add(bare);
      if (await server.accounts.get(jid)) plan.existing.add(bare);
      // Handlers refuse addresses that may not be registered again (the tombstone of an erased account).
      else await server.hooks.notify('account/creating', { jid });
    } else if (ev.type === 'skipped') plan.skipped.set(ev.key, (plan.skipped.get(ev.key) ?? 0) + 1);
  }
  if (seen.size === 0) throw new ImportError('the document holds no <user/>');
  if (existing === 'refuse' && plan.existing.size > 0) {
    const list = [...plan.existing];
    throw new ImportError(
      `${list.length} of the document's accounts exist already: ${list.slice(0, MAX_LISTED).join(', ')}${
        list.length > MAX_LISTED ? ` and ${list.length - MAX_LISTED} more` : ''
      }. Use --merge to add the document's data to them, or --replace to erase them first; nothing was imported`,
    );
  }
  return plan;
}

function describeKey(key: string): string {
  return key
    .split(' ')
    .map((k) =>
      k.replace(/^\{([^}]*)\}(.*)$/, (_m, ns: string, name: string) => (ns ? `<${name} xmlns='${ns}'>` : `<${name}>`)),
    )
    .join(' in ');
}

interface Source {
  size: number;
  read(options: ReaderOptions): AsyncGenerator<PieEvent>;
}

/** A document, or a Lethe export archive (its `xep0227.xml`), read anew for each pass. */
async function openSource(path: string): Promise<Source> {
  const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new ImportError(`cannot read ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const magic = Buffer.alloc(4);
  const { size } = await handle.stat();
  await handle.read(magic, 0, 4, 0);
  await handle.close();
  if (magic.readUInt32LE(0) !== 0x04034b50) return { size, read: (options) => readPieFile(path, options) };
  const openEntry = async () => {
    const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.open(path, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z))),
    );
    return { zip, entry: await zipEntry(zip, ARCHIVE_FILES.xml, path) };
  };
  const first = await openEntry();
  first.zip.close();
  return {
    // Progress counts the document's bytes, not the compressed ones.
    size: first.entry.uncompressedSize,
    async *read(options) {
      const { zip, entry } = await openEntry();
      try {
        const stream = await new Promise<Readable>((resolve, reject) =>
          zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s))),
        );
        yield* readPieStream(stream, `${path}:${ARCHIVE_FILES.xml}`, options);
      } finally {
        zip.close();
      }
    },
  };
}

function zipEntry(zip: yauzl.ZipFile, name: string, path: string): Promise<yauzl.Entry> {
  return new Promise((resolve, reject) => {
    zip.on('entry', (entry: yauzl.Entry) => (entry.fileName === name ? resolve(entry) : zip.readEntry()));
    zip.on('end', () => reject(new ImportError(`${path} is a zip archive without ${name}: not a Lethe export`)));
    zip.on('error', reject);
    zip.readEntry();
  });
}
