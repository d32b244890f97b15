/**
 * Database bootstrap: create the database if missing, then apply drizzle migrations under a
 * Postgres advisory lock, so that several processes starting together apply each migration
 * once. Failures to connect become ERR_DB_UNAVAILABLE naming host:port/db (never credentials).
 */
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { AppError } from '../core/errors.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import {
  databaseName,
  dbUnavailableError,
  describeDbTarget,
  isDbConnectivityError,
  sqlState,
  withDatabase,
} from './errors.js';

/** migrations/ at the repository root (this file is src/db/migrate.ts or dist/db/migrate.js). */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

/** Key of the advisory lock held while migrating (any stable bigint; "callscribe" in ASCII). */
export const MIGRATION_LOCK_KEY = 0x63616c6c73637269n;

const CONNECT_TIMEOUT_MS = 5000;

async function connect(databaseUrl: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'callscribe-migrate',
  });
  // a connection lost while idle emits 'error' on the client; the next query reports it
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    if (isDbConnectivityError(err)) throw dbUnavailableError(databaseUrl, err);
    throw err;
  }
  return client;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates the database named by `databaseUrl` if it does not exist, connecting to the
 * `postgres` maintenance database with the same credentials. Safe to run concurrently.
 * Returns whether this call created it.
 */
export async function ensureDatabase(databaseUrl: string): Promise<{ created: boolean }> {
  const name = databaseName(databaseUrl);
  if (name.length === 0) {
    throw new AppError('ERR_DB_NO_DATABASE', 'DATABASE_URL names no database', {
      category: 'invalid_request',
    });
  }
  const client = await connect(withDatabase(databaseUrl, 'postgres'));
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if ((found.rowCount ?? 0) > 0) return { created: false };
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      return { created: true };
    } catch (err) {
      // lost the race with another process: 42P04 duplicate_database, or 23505 when both
      // inserts reach pg_database's unique index at the same moment
      const state = sqlState(err);
      if (state === '42P04' || state === '23505') return { created: false };
      throw err;
    }
  } catch (err) {
    if (isDbConnectivityError(err)) throw dbUnavailableError(databaseUrl, err);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface MigrateResult {
  /** Migrations applied by this call (0: the database was up to date). */
  readonly applied: number;
  /** Migrations recorded in the database afterwards. */
  readonly total: number;
}

async function countApplied(client: pg.Client): Promise<number> {
  const exists = await client.query<{ t: string | null }>(
    "SELECT to_regclass('drizzle.__drizzle_migrations')::text AS t",
  );
  if (!exists.rows[0]?.t) return 0;
  const res = await client.query<{ n: string }>('SELECT count(*) AS n FROM drizzle.__drizzle_migrations');
  return Number(res.rows[0]?.n ?? 0);
}

/**
 * Applies pending migrations from migrations/ (drizzle's journal), holding a session-level
 * advisory lock on the same connection, so a concurrent caller waits and then finds nothing
 * left to do.
 */
export async function runMigrations(
  databaseUrl: string,
  logger: Logger = silentLogger,
  options: { migrationsFolder?: string } = {},
): Promise<MigrateResult> {
  const migrationsFolder = options.migrationsFolder ?? MIGRATIONS_FOLDER;
  const target = describeDbTarget(databaseUrl);
  const client = await connect(databaseUrl);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      const before = await countApplied(client);
      await migrate(drizzle(client), { migrationsFolder });
      const total = await countApplied(client);
      const applied = total - before;
      logger.info({ target, applied, total }, 'database migrations checked');
      return { applied, total };
    } finally {
      await client
        .query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()])
        .catch(() => undefined);
    }
  } catch (err) {
    if (isDbConnectivityError(err)) throw dbUnavailableError(databaseUrl, err);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Fails with ERR_DB_UNAVAILABLE unless the database answers `select 1`. */
export async function checkDatabase(databaseUrl: string): Promise<void> {
  const client = await connect(databaseUrl);
  try {
    await drizzle(client).execute(sql`select 1`);
  } catch (err) {
    if (isDbConnectivityError(err)) throw dbUnavailableError(databaseUrl, err);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}
