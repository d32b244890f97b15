/**
 * A fresh, migrated database per test file: callscribe_test_<random> on the server named by
 * TEST_DATABASE_URL (default: the local trust-auth Postgres). `drop()` removes it, closing any
 * connection the test left open (DROP … WITH (FORCE)).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDatabase } from '../../src/db/errors.js';
import { ensureDatabase, runMigrations } from '../../src/db/migrate.js';
import { createDb, type Database } from '../../src/db/client.js';
import { afterAll, beforeAll } from 'vitest';

export const TEST_POSTGRES_URL = process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  /** Database name, e.g. callscribe_test_3f9a0c1b2d4e. */
  readonly name: string;
  /** postgres:// URL of the test database. */
  readonly url: string;
  /** Drops the database (idempotent). */
  drop(): Promise<void>;
}

export function uniqueDatabaseName(tag = 'test'): string {
  return `callscribe_${tag}_${randomBytes(6).toString('hex')}`;
}

/** Drops a database on the test server, terminating its connections. */
export async function dropDatabase(name: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabase(TEST_POSTGRES_URL, 'postgres') });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/** Creates callscribe_test_<random>, applies the migrations, and returns its URL. */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = uniqueDatabaseName();
  const url = withDatabase(TEST_POSTGRES_URL, name);
  await ensureDatabase(url);
  let dropped: Promise<void> | null = null;
  const drop = () => (dropped ??= dropDatabase(name));
  try {
    if (options.migrate !== false) await runMigrations(url);
  } catch (err) {
    await drop();
    throw err;
  }
  return { name, url, drop };
}

export interface TestDatabaseHandle {
  /** The pool + drizzle instance on the suite's database (after beforeAll). */
  readonly database: Database;
  readonly testDb: TestDatabase;
}

/**
 * A fresh migrated database for the calling suite: created in beforeAll, its pool closed and the
 * database dropped in afterAll. Read `database` / `testDb` inside tests and hooks.
 */
export function useTestDatabase(options: { readonly max?: number } = {}): TestDatabaseHandle {
  let testDb: TestDatabase | undefined;
  let database: Database | undefined;
  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = createDb(testDb.url, { max: options.max ?? 4 });
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is used before the suite's beforeAll ran`);
    return value;
  };
  return {
    get database() {
      return ready(database, 'database');
    },
    get testDb() {
      return ready(testDb, 'testDb');
    },
  };
}
