/**
 * Errors with stable codes and a category (pipecat's ErrorCategory, ws's WS_ERR_* codes).
 * Codes follow ERR_<AREA>_<WHAT>; they appear in logs, metrics labels and the database, so
 * they are a public contract: add codes, never rename them.
 */
export type ErrorCategory =
  | 'authentication'
  | 'authorization'
  | 'invalid_request'
  | 'rate_limit'
  | 'quota'
  | 'connectivity'
  | 'server'
  | 'protocol'
  | 'application'
  | 'unknown';

const PERMANENT: ReadonlySet<ErrorCategory> = new Set([
  'authentication',
  'authorization',
  'invalid_request',
  'quota',
]);

/** True when retrying cannot help (a rejected key is never fixed by backoff). */
export function isPermanentCategory(category: ErrorCategory): boolean {
  return PERMANENT.has(category);
}

export interface AppErrorOptions {
  category: ErrorCategory;
  /** Defaults to !isPermanentCategory(category). */
  retryable?: boolean;
  cause?: unknown;
  /** Structured, non-PII details for logs. */
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: string;
  readonly category: ErrorCategory;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: AppErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.category = options.category;
    this.retryable = options.retryable ?? !isPermanentCategory(options.category);
    this.details = options.details ?? {};
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A message safe to log for any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
