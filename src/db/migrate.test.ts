/** Needs the local Postgres (trust auth); every database it creates is dropped afterwards. */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_POSTGRES_URL, dropDatabase, uniqueDatabaseName } from '../../test/support/postgres.js';
import { withDatabase } from './errors.js';
import { ensureDatabase, runMigrations } from './migrate.js';

const created: string[] = [];
function newDbUrl(): string {
  const name = uniqueDatabaseName('migtest');
  created.push(name);
  return withDatabase(TEST_POSTGRES_URL, name);
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

afterAll(async () => {
  for (const name of created) await dropDatabase(name);
});

describe('ensureDatabase', () => {
  it('creates a missing database once', async () => {
    const url = newDbUrl();
    expect(await ensureDatabase(url)).toEqual({ created: true });
    expect(await ensureDatabase(url)).toEqual({ created: false });
    expect(await query<{ one: number }>(url, 'select 1 as one')).toEqual([{ one: 1 }]);
  });

  it('tolerates concurrent creation', async () => {
    const url = newDbUrl();
    const results = await Promise.all([1, 2, 3, 4].map(() => ensureDatabase(url)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });

  it('fails with ERR_DB_UNAVAILABLE naming host:port, not the password, when Postgres is down', async () => {
    const err: unknown = await ensureDatabase('postgres://app:hunter2@127.0.0.1:1/x').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DB_UNAVAILABLE' });
    expect(String((err as Error).message)).toContain('127.0.0.1:1');
    expect(String((err as Error).message)).not.toContain('hunter2');
  });
});

describe('runMigrations', () => {
  it('applies the migrations, and a second run is a no-op', async () => {
    const url = newDbUrl();
    await ensureDatabase(url);
    const first = await runMigrations(url);
    expect(first.applied).toBeGreaterThan(0);
    expect(first.total).toBe(first.applied);
    const tables = await query<{ table_name: string }>(
      url,
      "select table_name from information_schema.tables where table_schema = 'public' order by 1",
    );
    expect(tables.map((t) => t.table_name)).toEqual(['call_streams', 'calls', 'utterances']);
    expect(await runMigrations(url)).toEqual({ applied: 0, total: first.total });
  });

  it('applies each migration once when processes start together', async () => {
    const url = newDbUrl();
    await ensureDatabase(url);
    const results = await Promise.all([1, 2, 3].map(() => runMigrations(url)));
    const total = results[0]?.total ?? 0;
    expect(total).toBeGreaterThan(0);
    expect(results.reduce((sum, r) => sum + r.applied, 0)).toBe(total);
    const rows = await query<{ n: number }>(url, 'select count(*)::int as n from drizzle.__drizzle_migrations');
    expect(rows[0]?.n).toBe(total);
  });

  it('fails with ERR_DB_UNAVAILABLE when Postgres is down', async () => {
    await expect(runMigrations('postgres://postgres@127.0.0.1:1/x')).rejects.toMatchObject({ code: 'ERR_DB_UNAVAILABLE' });
  });
});
