import { access, open, rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ZipArchive } from 'archiver';
import type { Server } from '../core/server.js';
import type { Jid } from '../xml/jid.js';
import type { DataCategory } from './registry.js';
import { ARCHIVE_FILES, renderSummary } from './summary.js';
import { FragmentParser } from './xep0227/fragments.js';
import { pieDocument } from './xep0227/writer.js';

/**
 * A user's data as one zip archive (GDPR art. 15 and 20), from the privacy registry:
 * - `xep0227.xml`: the account as XEP-0227, which Lethe, Prosody and ejabberd import;
 * - `json/<category>.json`: every category's `export()`, including those XEP-0227 has no place for;
 * - `messages.csv`: every stored message, for a spreadsheet;
 * - `summary.md`: each category with its purpose, legal basis, retention, recipients and item count.
 * Zip rather than tar.gz: its entries stream without knowing their size first, so nothing is held in
 * memory or staged on disk, and it opens with a double click on every desktop.
 */

export interface ExportOptions {
  /** Where the archive goes; refused when it exists. Written to `<out>.partial` and renamed at the end. */
  out: string;
  /** Why the operator exported it (recorded in the summary and the audit log); absent for self-service. */
  reason?: string;
  /** Who exported it, for the audit log (the OS user on the command line). */
  actor: string;
  /** Items to expect (for a progress bar) and one call per item written. */
  onStart?: (total: number) => void;
  onItem?: () => void;
}

export interface ExportResult {
  counts: { category: DataCategory; count: number }[];
  bytes: number;
}

export async function exportUser(server: Server, user: Jid, options: ExportOptions): Promise<ExportResult> {
  const account = await server.accounts.get(user);
  if (!account) throw new Error(`${user} does not exist`);
  const categories = server.privacy.all();
  if (options.onStart) {
    // Each item is written once as JSON, messages once more as CSV and container items once more as XML.
    let total = 0;
    for (const { category, count } of await server.privacy.countAll(user))
      total += count * (1 + (category.message ? 1 : 0) + (category.xep0227?.container ? 1 : 0));
    options.onStart(total);
  }
  const tick = options.onItem ?? (() => {});
  const counts = new Map<string, number>();
  const exportedAt = new Date();

  if (await exists(options.out)) throw new Error(`${options.out} exists already; choose another file name`);
  const partial = `${options.out}.partial`;
  // 0600 and exclusive: the archive holds the account's credentials, and must not replace another file.
  const file = await open(partial, 'wx', 0o600);
  // Level 1: an export is mostly text that compresses well at any level, and the fastest one keeps a large export quick.
  const archive = new ZipArchive({ zlib: { level: 1 } });
  const written = pipeline(archive, file.createWriteStream());
  // The archiver pipes each source on its own, so a failing one (a store that cannot be read) must stop it here.
  let failure: unknown;
  const entry = (name: string, lines: AsyncIterable<string>) => {
    const source = Readable.from(batched(lines));
    source.on('error', (err) => {
      failure ??= err;
      archive.destroy(err);
    });
    archive.append(source, { name, date: exportedAt });
  };

  entry(
    ARCHIVE_FILES.xml,
    pieDocument(server.privacy, user, (id) => {
      if (server.privacy.get(id)?.xep0227?.container) tick();
    }),
  );
  const counted: Promise<void>[] = [];
  for (const category of categories) {
    let done!: () => void;
    counted.push(new Promise((resolve) => (done = resolve)));
    entry(
      `json/${category.id}.json`,
      jsonLines(category, user, tick, (n) => {
        counts.set(category.id, n);
        done();
      }),
    );
  }
  entry(ARCHIVE_FILES.csv, csvLines(categories, user, tick));
  entry(
    ARCHIVE_FILES.summary,
    (async function* () {
      // The archiver may start reading an entry before the ones ahead of it are finished.
      await Promise.all(counted);
      yield renderSummary({
        server,
        user,
        exportedAt,
        reason: options.reason,
        counts: categories.map((category) => ({ category, count: counts.get(category.id) ?? 0 })),
      });
    })(),
  );
  try {
    // Errors arrive through `written` (the pipeline); finalize's own promise may never settle after one.
    archive.finalize().catch(() => {});
    await written;
    if (failure) throw failure;
    await rename(partial, options.out);
  } catch (err) {
    archive.destroy();
    await rm(partial, { force: true });
    throw failure ?? err;
  }
  await server.audit.record({
    actor: options.actor,
    action: 'export',
    account: user,
    reason: options.reason,
    details: { file: options.out },
  });
  return {
    counts: categories.map((category) => ({ category, count: counts.get(category.id) ?? 0 })),
    bytes: archive.pointer(),
  };
}

/** Bytes handed to the archiver at a time: one small write per message would cost more than compressing it. */
const CHUNK = 64 * 1024;

async function* batched(lines: AsyncIterable<string>): AsyncGenerator<string> {
  let chunk = '';
  for await (const line of lines) {
    chunk += line;
    if (chunk.length >= CHUNK) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** `{"category": …, "user": …, "items": [ … ]}`, one item per line. */
async function* jsonLines(
  category: DataCategory,
  user: Jid,
  tick: () => void,
  done: (count: number) => void,
): AsyncGenerator<string> {
  yield `{"category":${JSON.stringify(category.id)},"user":${JSON.stringify(user.bareString())},"items":[`;
  let n = 0;
  for await (const record of category.export(user)) {
    yield `${n === 0 ? '\n' : ',\n'}${JSON.stringify(record)}`;
    n++;
    tick();
  }
  yield n === 0 ? ']}\n' : '\n]}\n';
  done(n);
}

const CSV_COLUMNS = ['store', 'time', 'from', 'to', 'type', 'id', 'subject', 'body'];

/** Messages of every category that stores them, one row each. */
async function* csvLines(categories: DataCategory[], user: Jid, tick: () => void): AsyncGenerator<string> {
  yield `${CSV_COLUMNS.join(',')}\r\n`;
  const parser = new FragmentParser();
  for (const category of categories) {
    if (!category.message) continue;
    for await (const record of category.export(user)) {
      const { time, stanza } = category.message(record);
      const message = parser.parse(stanza)[0];
      const row = [
        category.id,
        time,
        message?.attrs.from ?? '',
        message?.attrs.to ?? '',
        message?.attrs.type ?? 'normal',
        message?.attrs.id ?? '',
        message?.getChildText('subject') ?? '',
        message?.getChildText('body') ?? '',
      ];
      yield `${row.map(csvField).join(',')}\r\n`;
      tick();
    }
  }
}

/**
 * RFC 4180 quoting, and a leading quote on text a spreadsheet would run as a formula (a message body
 * starting with `=`), since this file is made to be opened in one.
 */
function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
