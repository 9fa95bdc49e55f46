import type { Db, Migration } from './db.js';

/**
 * Applies the migrations not yet recorded, in the order given, each in its own transaction.
 * Refuses to run against a database written by a newer Lethe, rather than guessing.
 */
export async function migrate(db: Db, migrations: Migration[]): Promise<string[]> {
  await db.run(
    `CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))`,
  );
  const applied = await db.all<{ component: string; version: number }>(
    'SELECT component, version FROM schema_migrations',
  );
  const done = new Set(applied.map((r) => `${r.component}:${r.version}`));
  const known = new Map<string, number>();
  for (const m of migrations) known.set(m.component, Math.max(known.get(m.component) ?? 0, m.version));
  for (const r of applied) {
    const max = known.get(r.component);
    if (max !== undefined && r.version > max)
      throw new Error(
        `database schema for ${r.component} is at version ${r.version}, newer than this Lethe knows (${max}); run a newer Lethe or restore a backup`,
      );
  }
  // In the order given: modules are loaded after the ones whose tables they reference.
  const pending = migrations.filter((m) => !done.has(`${m.component}:${m.version}`));
  const ran: string[] = [];
  for (const m of pending) {
    await db.transaction(async (tx) => {
      for (const statement of splitStatements(m.sql)) await tx.run(statement);
      await tx.run('INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)', [
        m.component,
        m.version,
        new Date().toISOString(),
      ]);
    });
    ran.push(`${m.component}:${m.version}`);
  }
  return ran;
}

/** Migrations hold several statements; none of ours contain semicolons inside literals, triggers come as lists. */
function splitStatements(sql: string | string[]): string[] {
  if (Array.isArray(sql)) return sql;
  return sql
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
}
