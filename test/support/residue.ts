import type { PrivacyRegistry } from '../../src/privacy/registry.js';
import type { Db } from '../../src/storage/db.js';
import type { Jid } from '../../src/xml/jid.js';

/** Tables that hold no personal data at all; anything else must belong to a registered data category. */
export const NON_PERSONAL_TABLES = new Set(['schema_migrations']);

export interface Hit {
  table: string;
  column: string;
  value: string;
  /** Why the hit is allowed, or undefined when it is residue. */
  allowedBecause?: string;
}

/** Tables that exist in the database but are claimed by no data category (a store nobody can erase). */
export async function unregisteredTables(db: Db, registry: PrivacyRegistry): Promise<string[]> {
  const claimed = new Set(registry.all().flatMap((c) => c.tables));
  const plain = registry.nonPersonalTables();
  return (await db.describe())
    .map((t) => t.table)
    .filter((t) => !claimed.has(t) && !NON_PERSONAL_TABLES.has(t) && !plain.has(t));
}

/**
 * Tables in which `user`'s address (or a given string, such as its keyed hash) appears nowhere: used to
 * prove the fill step reached every store.
 */
export async function tablesWithout(db: Db, user: Jid | string): Promise<string[]> {
  const needle = typeof user === 'string' ? user : user.bareString();
  const empty: string[] = [];
  for (const { table } of await db.describe()) {
    if (NON_PERSONAL_TABLES.has(table)) continue;
    if ((await scanTable(db, table, needle)).length === 0) empty.push(table);
  }
  return empty;
}

/** Tables of categories that keep a pseudonymised remainder (`keeps`): the only ones where the erased address's hash may stay. */
export function remainderTables(registry: PrivacyRegistry): Set<string> {
  return new Set(registry.all().flatMap((c) => (c.keeps ? c.tables : [])));
}

/**
 * Every column of every table, scanned for the address in any case, bare or full (a full JID
 * contains the bare one), and for its keyed hash when given. Knows nothing about particular tables,
 * so it covers stores added later. The hash is allowed only in the tables of categories that declare
 * what they keep (`keeps`: the tombstone, pseudonymised audit entries, the erasure receipt).
 */
export async function scanForResidue(db: Db, registry: PrivacyRegistry, erased: Jid, hash?: string): Promise<Hit[]> {
  const hits: Hit[] = [];
  const remainders = remainderTables(registry);
  for (const { table } of await db.describe()) {
    if (NON_PERSONAL_TABLES.has(table)) continue;
    if (hash)
      for (const hit of await scanTable(db, table, hash)) {
        const keeper = registry.all().find((c) => c.keeps && c.tables.includes(table));
        hits.push({
          table,
          column: hit.column,
          value: hit.value,
          ...(remainders.has(table) && {
            allowedBecause: `the keyed hash, kept by ${keeper?.id}: ${keeper?.keeps?.what}`,
          }),
        });
      }
    for (const hit of await scanTable(db, table, erased.bareString())) {
      const mention = registry
        .all()
        .flatMap((c) => c.mentions ?? [])
        .find((m) => m.table === table && m.column === hit.column);
      const owner = mention ? String(hit.row[mention.ownerColumn] ?? '') : '';
      if (mention && owner && owner.toLowerCase() !== erased.bareString().toLowerCase())
        hits.push({
          table,
          column: hit.column,
          value: hit.value,
          allowedBecause: `another user's (${owner}) own copy, declared in mentions`,
        });
      else hits.push({ table, column: hit.column, value: hit.value });
    }
  }
  return hits;
}

async function scanTable(
  db: Db,
  table: string,
  search: string,
): Promise<{ column: string; value: string; row: Record<string, unknown> }[]> {
  const needle = search.toLowerCase();
  const found: { column: string; value: string; row: Record<string, unknown> }[] = [];
  const quoted = `"${table.replace(/"/g, '""')}"`;
  for await (const row of db.iterate<Record<string, unknown>>(`SELECT * FROM ${quoted}`)) {
    for (const [column, value] of Object.entries(row)) {
      const text = Buffer.isBuffer(value) ? value.toString('latin1') : typeof value === 'string' ? value : '';
      if (text.toLowerCase().includes(needle)) found.push({ column, value: text.slice(0, 200), row });
    }
  }
  return found;
}
