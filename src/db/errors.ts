/**
 * Postgres error classification and credential-free descriptions of the target.
 */
import { AppError, errorMessage } from '../core/errors.js';

/** "host:port/database" of a postgres:// URL, never the user or password. */
export function describeDbTarget(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    const host = u.hostname || 'localhost';
    const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
    return `${host}:${u.port || '5432'}${db ? `/${db}` : ''}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

/** The database name of a postgres:// URL (empty when the URL names none). */
export function databaseName(databaseUrl: string): string {
  return decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
}

/** The same URL pointing at another database on the same server, same credentials. */
export function withDatabase(databaseUrl: string, database: string): string {
  const u = new URL(databaseUrl);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** SQLSTATEs worth retrying: the server is restarting or overloaded, or a transient conflict. */
const UNAVAILABLE_SQLSTATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up / recovery)
  '53300', // too_many_connections
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code: unknown = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** True for errors where retrying later can succeed: network, restart, overload. */
export function isDbConnectivityError(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(isDbConnectivityError);
  const code = codeOf(err);
  if (code !== undefined) {
    if (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code)) return true;
    if (code.startsWith('08')) return true; // connection_exception class
  }
  const msg = errorMessage(err);
  if (
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|server closed the connection/i.test(
      msg,
    )
  ) {
    return true;
  }
  // drizzle wraps driver errors ("Failed query: …") and keeps the driver error as `cause`
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  return cause !== undefined && cause !== err && isDbConnectivityError(cause);
}

/**
 * True for errors where the same statement will fail again: data exceptions (class 22) and
 * integrity violations (class 23), e.g. a CHECK violation or a unique-key clash.
 */
export function isDbDataError(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && /^2[23][0-9A-Z]{3}$/.test(code)) return true;
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  return cause !== undefined && cause !== err && isDbDataError(cause);
}

/** The SQLSTATE of a (possibly wrapped) driver error. */
export function sqlState(err: unknown): string | undefined {
  const code = codeOf(err);
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return code;
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  return cause !== undefined && cause !== err ? sqlState(cause) : undefined;
}

/** The constraint named by a (possibly wrapped) driver error, e.g. for a 23505 unique violation. */
export function dbConstraint(err: unknown): string | undefined {
  const inner = innermost(err);
  const constraint: unknown = typeof inner === 'object' && inner !== null ? (inner as { constraint?: unknown }).constraint : undefined;
  return typeof constraint === 'string' ? constraint : undefined;
}

/** The innermost error of a wrapped chain (drizzle's DrizzleQueryError → the pg error). */
function innermost(err: unknown): unknown {
  let e = err;
  for (let i = 0; i < 10 && e instanceof Error && e.cause !== undefined && e.cause !== e; i++) e = e.cause;
  return e;
}

/**
 * A description of a database error that is safe for logs and for job failure reasons stored
 * in Redis: drizzle's own message carries the query parameters (transcript text), and data
 * errors (SQLSTATE classes 22, 23) quote row values, so those are reduced to code + constraint.
 */
export function safeDbErrorMessage(err: unknown): string {
  const inner = innermost(err);
  const code = codeOf(inner);
  const message = errorMessage(inner);
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) {
    const constraint: unknown = (inner as { constraint?: unknown }).constraint;
    const where = typeof constraint === 'string' ? ` (constraint ${constraint})` : '';
    return /^2[23]/.test(code) ? `SQLSTATE ${code}${where}` : `SQLSTATE ${code}${where}: ${message}`;
  }
  if (/^Failed query:/.test(message)) return 'query failed (details withheld)';
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message;
}

/** Removes the URL's password from a message, should a driver ever echo it. */
export function scrubSecret(message: string, databaseUrl: string): string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(databaseUrl).password);
  } catch {
    return message;
  }
  return password.length > 0 ? message.split(password).join('***') : message;
}

/** ERR_DB_UNAVAILABLE naming host:port/db (never credentials). */
export function dbUnavailableError(databaseUrl: string, cause: unknown): AppError {
  const target = describeDbTarget(databaseUrl);
  const reason = scrubSecret(codeOf(cause) ?? errorMessage(cause), databaseUrl);
  return new AppError('ERR_DB_UNAVAILABLE', `Postgres is not reachable at ${target} (${reason})`, {
    category: 'connectivity',
    retryable: true,
    cause,
    details: { target },
  });
}
