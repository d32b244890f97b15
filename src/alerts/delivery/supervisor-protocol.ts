/**
 * The supervisor feed's own messages (docs/supervisor.md), pure: client → server messages
 * (zod-validated), server control messages, and where a bearer token may come from on the
 * upgrade request. Live events themselves are the events.ts protocol, forwarded verbatim.
 *
 * Tokens (RFC 6750 §2.1 header; browsers cannot set headers on a WebSocket, so also):
 * - `Sec-WebSocket-Protocol: callscribe.v1, bearer.<token>` (RFC 6455 §4.1 subprotocols; the
 *   server selects `callscribe.v1`, never echoes the token; the token must be an RFC 7230 token);
 * - `?token=<token>` on the URL (ends up in proxy access logs: the weakest option).
 */
import { z } from 'zod';
import { callIdSchema, type EVENT_VERSION } from './events.js';

export const SUPERVISOR_PROTOCOL = 'callscribe.v1';
export const BEARER_PROTOCOL_PREFIX = 'bearer.';

/** Close codes (RFC 6455 §7.4; 4000–4999 are ours). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_TRY_AGAIN_LATER = 1013;
export const CLOSE_BAD_MESSAGES = 4400;

export const clientMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('watch'), callId: callIdSchema }).strict(),
  z.object({ type: z.literal('unwatch'), callId: callIdSchema }).strict(),
  z.object({ type: z.literal('ping'), id: z.union([z.string().max(64), z.number().finite()]).optional() }).strict(),
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;

export type ClientErrorCode =
  | 'ERR_SUPERVISOR_BINARY'
  | 'ERR_SUPERVISOR_BAD_JSON'
  | 'ERR_SUPERVISOR_UNKNOWN_TYPE'
  | 'ERR_SUPERVISOR_BAD_MESSAGE';

export type ParsedClientMessage =
  | { readonly ok: true; readonly message: ClientMessage }
  | { readonly ok: false; readonly code: ClientErrorCode; readonly message: string };

const KNOWN_TYPES = new Set(['watch', 'unwatch', 'ping']);

/** Validates one client frame. Never echoes the frame's content back (it could be anything). */
export function parseClientMessage(data: Buffer | string, isBinary: boolean): ParsedClientMessage {
  if (isBinary) return { ok: false, code: 'ERR_SUPERVISOR_BINARY', message: 'binary frames are not accepted; send JSON text' };
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    return { ok: false, code: 'ERR_SUPERVISOR_BAD_JSON', message: 'message is not valid JSON' };
  }
  const type = typeof value === 'object' && value !== null && 'type' in value ? value.type : undefined;
  if (typeof type !== 'string' || !KNOWN_TYPES.has(type)) {
    return { ok: false, code: 'ERR_SUPERVISOR_UNKNOWN_TYPE', message: 'type must be one of watch, unwatch, ping' };
  }
  const result = clientMessageSchema.safeParse(value);
  if (!result.success) {
    const detail = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
    return { ok: false, code: 'ERR_SUPERVISOR_BAD_MESSAGE', message: `invalid ${type} message: ${detail}` };
  }
  return { ok: true, message: result.data };
}

// ── server control messages ───────────────────────────────────────────────────────────────

export interface HelloMessage {
  readonly v: typeof EVENT_VERSION;
  readonly type: 'hello';
  readonly protocol: typeof SUPERVISOR_PROTOCOL;
  readonly connectionId: string;
  readonly serverTime: string;
  /** How often the server pings (WebSocket ping frames); 0: never. */
  readonly heartbeatMs: number;
  readonly limits: { readonly maxMessageBytes: number; readonly maxWatchedCalls: number };
}

export type ControlMessage =
  | HelloMessage
  | { readonly v: 1; readonly type: 'snapshot.done'; readonly alerts: number }
  | { readonly v: 1; readonly type: 'watching'; readonly callIds: readonly string[] }
  | { readonly v: 1; readonly type: 'pong'; readonly id?: string | number }
  | { readonly v: 1; readonly type: 'dropped'; readonly count: number }
  | { readonly v: 1; readonly type: 'error'; readonly code: string; readonly message: string };

// ── tokens on the upgrade request ─────────────────────────────────────────────────────────

export type TokenSource = 'header' | 'protocol' | 'query';

interface UpgradeRequestLike {
  readonly url?: string | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** The subprotocols offered in Sec-WebSocket-Protocol (comma-separated, trimmed). */
export function offeredProtocols(req: UpgradeRequestLike): string[] {
  const raw = req.headers['sec-websocket-protocol'];
  const text = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  return text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/**
 * The token presented on an upgrade request and where it came from: the Authorization header
 * first, then a `bearer.<token>` subprotocol, then `?token=` (when allowed).
 */
export function presentedToken(
  req: UpgradeRequestLike,
  allowQuery: boolean,
): { readonly token: string; readonly source: TokenSource } | undefined {
  const auth = req.headers['authorization'];
  const header = Array.isArray(auth) ? auth[0] : auth;
  const bearer = header ? /^Bearer[ ]+(\S+)[ ]*$/i.exec(header)?.[1] : undefined;
  if (bearer) return { token: bearer, source: 'header' };
  const proto = offeredProtocols(req).find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX));
  if (proto && proto.length > BEARER_PROTOCOL_PREFIX.length) {
    return { token: proto.slice(BEARER_PROTOCOL_PREFIX.length), source: 'protocol' };
  }
  if (allowQuery && req.url) {
    let token: string | null = null;
    try {
      token = new URL(req.url, 'http://localhost').searchParams.get('token');
    } catch {
      token = null;
    }
    if (token) return { token, source: 'query' };
  }
  return undefined;
}

/** The subprotocol to select: `callscribe.v1` when offered, else none (never a bearer.* one). */
export function selectProtocol(offered: Iterable<string>): string | false {
  for (const p of offered) if (p === SUPERVISOR_PROTOCOL) return p;
  return false;
}
