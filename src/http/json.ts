/**
 * Small JSON-over-HTTP helpers shared by the REST routes: read a JSON body under a byte limit,
 * send JSON, JSON errors with stable codes, and bearer-token checks (RFC 6750 §2.1) compared
 * in constant time. Plain node:http, no framework.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { z } from 'zod';

/** An error that maps to an HTTP response `{ error: { code, message, issues? } }`. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly issues: readonly JsonIssue[] | undefined;
  readonly headers: Readonly<Record<string, string>>;
  /** Extra non-PII fields of the error object (e.g. the current status on a 409). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    status: number,
    code: string,
    message: string,
    extra: { issues?: readonly JsonIssue[]; headers?: Record<string, string>; details?: Record<string, unknown> } = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.issues = extra.issues;
    this.headers = extra.headers ?? {};
    this.details = extra.details ?? {};
  }
}

export interface JsonIssue {
  /** Dotted path into the body, '' for the root. */
  readonly path: string;
  readonly message: string;
}

export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Sends `{ error: { code, message, issues?, …details } }` with the error's status and headers. */
export function sendHttpError(res: http.ServerResponse, err: HttpError): void {
  const error: Record<string, unknown> = { ...err.details, code: err.code, message: err.message };
  if (err.issues) error['issues'] = err.issues;
  sendJson(res, err.status, { error }, err.headers);
}

export interface ReadJsonOptions {
  /** Largest accepted body in bytes (default 16 KiB). */
  readonly maxBytes?: number;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads and parses a JSON request body. Throws HttpError: 415 ERR_HTTP_UNSUPPORTED_MEDIA_TYPE
 * (Content-Type not application/json), 413 ERR_HTTP_BODY_TOO_LARGE (checked on Content-Length
 * first, then while reading; the connection is closed after the reply), 400 ERR_HTTP_BAD_JSON
 * (invalid UTF-8 or JSON). An empty body parses as `{}`.
 */
export async function readJsonBody(req: http.IncomingMessage, options: ReadJsonOptions = {}): Promise<unknown> {
  const maxBytes = options.maxBytes ?? 16 * 1024;
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const declared = Number(req.headers['content-length'] ?? '0');
  const tooLarge = () =>
    new HttpError(413, 'ERR_HTTP_BODY_TOO_LARGE', `body exceeds ${maxBytes} bytes`, { headers: { connection: 'close' } });
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  if (declared > 0 || req.headers['transfer-encoding'] !== undefined) {
    if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
      throw new HttpError(415, 'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json', {
        headers: { connection: 'close' },
      });
    }
  }
  // listeners rather than for-await: leaving an async iterator early destroys the socket, and
  // the 413 reply would never reach the client
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        req.resume(); // discard the rest; the reply closes the connection
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new HttpError(400, 'ERR_HTTP_BODY_ABORTED', `request body could not be read: ${err.message}`));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  if (size === 0) return {};
  let text: string;
  try {
    text = decoder.decode(Buffer.concat(chunks, size));
  } catch {
    throw new HttpError(400, 'ERR_HTTP_BAD_JSON', 'body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'ERR_HTTP_BAD_JSON', 'body is not valid JSON');
  }
}

/** zod issues as `{ path, message }` (never the offending values: they may be PII). */
export function zodIssues(error: z.ZodError): JsonIssue[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/** Parses `value` with `schema` or throws 400 `code` (default ERR_HTTP_VALIDATION) with the issues. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown, code = 'ERR_HTTP_VALIDATION'): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new HttpError(400, code, 'request body is invalid', { issues: zodIssues(result.error) });
}

/**
 * Constant-time string equality: both sides are hashed first, so neither the content nor the
 * length of the expected secret leaks through timing.
 */
export function tokensEqual(expected: string, presented: string): boolean {
  const a = createHash('sha256').update(expected, 'utf8').digest();
  const b = createHash('sha256').update(presented, 'utf8').digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(req: Pick<http.IncomingMessage, 'headers'>): string | undefined {
  const header = req.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  return match?.[1];
}

/** True when the request carries `Authorization: Bearer <expected>`. */
export function hasBearer(req: Pick<http.IncomingMessage, 'headers'>, expected: string): boolean {
  const presented = bearerToken(req);
  return presented !== undefined && tokensEqual(expected, presented);
}

/** Throws 401 ERR_HTTP_UNAUTHORIZED (with WWW-Authenticate) unless the bearer token matches. */
export function requireBearer(req: Pick<http.IncomingMessage, 'headers'>, expected: string): void {
  if (hasBearer(req, expected)) return;
  const present = req.headers.authorization !== undefined;
  throw new HttpError(401, 'ERR_HTTP_UNAUTHORIZED', present ? 'invalid bearer token' : 'bearer token required', {
    headers: { 'www-authenticate': present ? 'Bearer error="invalid_token"' : 'Bearer' },
  });
}
