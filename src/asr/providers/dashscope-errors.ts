/**
 * What both DashScope protocols (paraformer's duplex inference, qwen's realtime) share about
 * errors: the stable error classes, the mapping of a refused WebSocket upgrade (same gateway,
 * same HTTP statuses), and the field paths of a failed schema check for logs (no values).
 */
import type { z } from 'zod';
import { AppError, type ErrorCategory } from '../../core/errors.js';

export interface ErrorClass {
  readonly code: string;
  readonly category: ErrorCategory;
  readonly retryable: boolean;
}

export const THROTTLED: ErrorClass = { code: 'ERR_ASR_THROTTLED', category: 'rate_limit', retryable: true };
export const BAD_REQUEST: ErrorClass = { code: 'ERR_ASR_BAD_REQUEST', category: 'invalid_request', retryable: false };
export const AUTH: ErrorClass = { code: 'ERR_ASR_AUTH', category: 'authentication', retryable: false };
export const QUOTA: ErrorClass = { code: 'ERR_ASR_QUOTA', category: 'quota', retryable: false };
export const TASK_FAILED: ErrorClass = { code: 'ERR_ASR_TASK_FAILED', category: 'server', retryable: true };

/**
 * A refused upgrade: 401/403 → auth (permanent); 429 → throttled (retryable); other 4xx
 * except 408/499 → bad request (permanent); everything else → connect (retryable).
 */
export function handshakeError(status: number): AppError {
  const details = { httpStatus: status };
  if (status === 401 || status === 403) {
    return new AppError(AUTH.code, 'recogniser refused the API key', { category: AUTH.category, retryable: false, details });
  }
  if (status === 429) {
    return new AppError(THROTTLED.code, 'recogniser throttled the connection', { category: 'rate_limit', retryable: true, details });
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 499) {
    return new AppError(BAD_REQUEST.code, 'recogniser refused the upgrade request', { category: 'invalid_request', retryable: false, details });
  }
  return new AppError('ERR_ASR_CONNECT', 'recogniser upgrade failed', { category: 'connectivity', retryable: true, details });
}

/** Failing field paths of a schema check, for logs (never values). */
export function issuePaths(error: z.ZodError): string[] {
  return error.issues.slice(0, 8).map((i) => i.path.map(String).join('.') || '(root)');
}
