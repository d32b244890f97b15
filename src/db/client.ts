/**
 * Postgres pool + drizzle instance. One per process; `close()` ends the pool (idempotent).
 * An idle client that loses its connection makes pg.Pool emit 'error': we log it instead of
 * letting the process crash, and the pool replaces the client on the next checkout.
 */
import type { ExtractTablesWithRelations } from 'drizzle-orm';
import { drizzle, type NodePgDatabase, type NodePgQueryResultHKT } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgTransaction } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { errorMessage } from '../core/errors.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { describeDbTarget, scrubSecret } from './errors.js';
import * as schema from './schema.js';

export type Schema = typeof schema;
export type Db = NodePgDatabase<Schema>;
/** A transaction of Db (the `tx` of `db.transaction(async (tx) => …)`). */
export type Tx = PgTransaction<NodePgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Either: repository functions that take it run inside the caller's transaction when given one. */
export type DbExecutor = PgDatabase<NodePgQueryResultHKT, Schema>;

export interface Database {
  readonly pool: pg.Pool;
  readonly db: Db;
  /** Ends the pool; waits for checked-out clients to be released. Idempotent. */
  close(): Promise<void>;
}

export interface CreateDbOptions {
  readonly logger?: Logger;
  /** Pool size bound (default 10). */
  readonly max?: number;
  /** Give up connecting after this long (default 5000 ms). */
  readonly connectionTimeoutMs?: number;
  /** Close idle connections after this long (default 30 000 ms). */
  readonly idleTimeoutMs?: number;
  /** Server-side statement timeout (default 30 000 ms; 0 disables). */
  readonly statementTimeoutMs?: number;
  readonly applicationName?: string;
}

export function createDb(databaseUrl: string, options: CreateDbOptions = {}): Database {
  const logger = options.logger ?? silentLogger;
  const target = describeDbTarget(databaseUrl);
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    application_name: options.applicationName ?? 'callscribe',
  });
  pool.on('error', (err: Error & { code?: string }) => {
    logger.warn(
      { code: 'ERR_DB_IDLE_CLIENT', target, pgCode: err.code, err: scrubSecret(errorMessage(err), databaseUrl) },
      'postgres idle client error',
    );
  });
  const db = drizzle(pool, { schema });
  let closing: Promise<void> | null = null;
  return {
    pool,
    db,
    close() {
      closing ??= pool.end();
      return closing;
    },
  };
}
