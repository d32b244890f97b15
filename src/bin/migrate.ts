/** `callscribe migrate`: create the database if missing, apply pending migrations. */
import { loadEnv } from '../config/env.js';
import { ensureDatabase, runMigrations } from '../db/migrate.js';
import { createLogger } from '../observability/logger.js';

export async function runMigrate(): Promise<number> {
  const env = loadEnv();
  const logger = createLogger(env.LOG_LEVEL);
  await ensureDatabase(env.DATABASE_URL);
  await runMigrations(env.DATABASE_URL, logger);
  logger.info('migrations applied');
  return 0;
}
