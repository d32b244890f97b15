/**
 * HTTP Digest authentication for SIP (RFC 3261 §22.4, RFC 2617 / RFC 7616), MD5 with qop=auth.
 *
 * - HA1 = MD5(username:realm:password), HA2 = MD5(method:digest-uri),
 *   response = MD5(HA1:nonce:nc:cnonce:qop:HA2) (RFC 2617 §3.2.2.1);
 * - the nonce is stateless: `<issued-ms hex>.<base64url HMAC-SHA256(secret, issued-ms)>`; it is
 *   valid for `nonceTtlMs` and an expired but authentic nonce yields `stale=true` (RFC 2617 §3.2.1);
 * - comparisons are constant-time.
 * Limitation: a stateless nonce does not track nonce-count, so a captured Authorization can be
 * replayed (same method, URI, body) within the TTL.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { quote, unquote } from './message.js';

export interface DigestOptions {
  readonly realm: string;
  /** Secret for nonce HMACs (at least 16 bytes of entropy). */
  readonly secret: string;
  /** Password for a username, or undefined when unknown. Never logged. */
  readonly lookupPassword: (username: string) => string | undefined;
  readonly nonceTtlMs?: number;
  readonly now: () => number;
}

export type DigestResult =
  | { readonly ok: true; readonly username: string }
  | { readonly ok: false; readonly reason: 'missing' | 'malformed' | 'stale' | 'bad-nonce' | 'unknown-user' | 'bad-response' };

export interface DigestAuth {
  /** WWW-Authenticate value for a 401. */
  challenge(stale?: boolean): string;
  /** Checks an Authorization value against a request's method and Request-URI. */
  verify(authorization: string | undefined, method: string, requestUri: string): DigestResult;
}

const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  // compare equal-length buffers only; a length mismatch still costs one comparison
  return ab.length === bb.length ? timingSafeEqual(ab, bb) : (timingSafeEqual(ab, ab), false);
}

/** `Digest a=b, c="d"` → lower-cased keys, unquoted values; null when not a Digest credential. */
export function parseDigestCredentials(value: string): Map<string, string> | null {
  const m = /^Digest\s+(.*)$/is.exec(value.trim());
  if (!m) return null;
  const out = new Map<string, string>();
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)/gy;
  const rest = m[1]!;
  let match: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (match = re.exec(rest)) !== null) {
    out.set(match[1]!.toLowerCase(), unquote(match[2]!));
  }
  if (re.lastIndex < rest.length && rest.slice(re.lastIndex).trim() !== '') return null;
  return out;
}

export function digestResponse(p: {
  username: string; realm: string; password: string; method: string; uri: string;
  nonce: string; nc: string; cnonce: string; qop: string;
}): string {
  const ha1 = md5(`${p.username}:${p.realm}:${p.password}`);
  const ha2 = md5(`${p.method}:${p.uri}`);
  return md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`);
}

export function createDigestAuth(options: DigestOptions): DigestAuth {
  const ttl = options.nonceTtlMs ?? 300_000;
  if (Buffer.byteLength(options.secret) < 16) throw new Error('digest secret must be at least 16 bytes');
  const sign = (issued: string): string => createHmac('sha256', options.secret).update(issued).digest('base64url');
  const makeNonce = (): string => {
    const issued = Math.floor(options.now()).toString(16);
    return `${issued}.${sign(issued)}`;
  };
  const checkNonce = (nonce: string): 'ok' | 'stale' | 'bad' => {
    const m = /^([0-9a-f]{1,13})\.([A-Za-z0-9_-]{43})$/.exec(nonce);
    if (!m || !safeEqual(sign(m[1]!), m[2]!)) return 'bad';
    const age = options.now() - parseInt(m[1]!, 16);
    return age < 0 || age > ttl ? 'stale' : 'ok';
  };
  return {
    challenge(stale = false) {
      return `Digest realm=${quote(options.realm)}, nonce="${makeNonce()}", algorithm=MD5, qop="auth"${stale ? ', stale=true' : ''}`;
    },
    verify(authorization, method, requestUri) {
      if (authorization === undefined) return { ok: false, reason: 'missing' };
      const c = parseDigestCredentials(authorization);
      if (!c) return { ok: false, reason: 'malformed' };
      const username = c.get('username');
      const nonce = c.get('nonce');
      const uri = c.get('uri');
      const response = c.get('response');
      const nc = c.get('nc');
      const cnonce = c.get('cnonce');
      const algorithm = c.get('algorithm') ?? 'MD5';
      if (!username || !nonce || !uri || !response || !nc || !cnonce || c.get('qop') !== 'auth'
        || algorithm.toUpperCase() !== 'MD5' || !/^[0-9a-fA-F]{8}$/.test(nc)) {
        return { ok: false, reason: 'malformed' };
      }
      if (c.get('realm') !== options.realm || uri !== requestUri) return { ok: false, reason: 'bad-response' };
      const nonceState = checkNonce(nonce);
      if (nonceState === 'bad') return { ok: false, reason: 'bad-nonce' };
      const password = options.lookupPassword(username);
      if (password === undefined) return { ok: false, reason: 'unknown-user' };
      const expected = digestResponse({ username, realm: options.realm, password, method, uri, nonce, nc, cnonce, qop: 'auth' });
      if (!safeEqual(expected, response.toLowerCase())) return { ok: false, reason: 'bad-response' };
      // credentials are right but the nonce is old: ask again without a new password prompt
      if (nonceState === 'stale') return { ok: false, reason: 'stale' };
      return { ok: true, username };
    },
  };
}
