/**
 * SIP message parser and serializer (RFC 3261 §7, §18.3, §20), sans-I/O.
 *
 * Protocol facts relied on:
 * - start line: `Method SP Request-URI SP SIP/2.0` or `SIP/2.0 SP 3DIGIT SP Reason-Phrase` (§7.1, §7.2);
 * - header names are case-insensitive and have compact forms (§7.3.3, §20; `x` from RFC 4028);
 * - a header whose grammar is a comma list may be split over several lines or combined on one
 *   (§7.3.1): such headers are split into one field per value here, outside quotes and <>;
 * - a line starting with SP/HT continues the previous header (LWS folding, §7.3.1): unfolded;
 * - Content-Length is mandatory on stream transports; on UDP a body shorter than Content-Length
 *   is an error (400 for requests), a longer datagram is truncated (§18.3).
 * Leniency: bare LF line ends are accepted (common in hand-written tools). Control characters
 * other than HT in the header section are rejected.
 */
import { AppError } from '../../core/errors.js';

export type SipErrorCode =
  | 'ERR_SIP_MALFORMED'
  | 'ERR_SIP_MISSING_HEADER'
  | 'ERR_SIP_BAD_HEADER'
  | 'ERR_SIP_TOO_LARGE'
  | 'ERR_SIP_BODY_LENGTH'
  | 'ERR_SIP_VERSION'
  | 'ERR_SIP_URI_SCHEME';

/** A parse/validation failure with the response status a UAS should send for it. */
export class SipError extends AppError {
  readonly status: number;
  readonly header: string | undefined;
  /** The request as far as it was parsed (start line + headers), to answer it with a 4xx. */
  readonly partial: SipRequest | undefined;
  readonly sipCode: SipErrorCode;

  constructor(
    code: SipErrorCode,
    message: string,
    opts: { status?: number; header?: string; partial?: SipRequest } = {},
  ) {
    super(code, message, { category: 'protocol', details: opts.header ? { header: opts.header } : {} });
    this.name = 'SipError';
    this.status = opts.status ?? 400;
    this.header = opts.header;
    this.partial = opts.partial;
    this.sipCode = code;
  }

  /** The same error, answerable with the request parsed elsewhere (TCP framing errors). */
  withPartial(partial: SipRequest): SipError {
    return new SipError(this.sipCode, this.message, { status: this.status, partial, ...(this.header ? { header: this.header } : {}) });
  }
}

export interface SipLimits {
  /** Whole message (UDP datagrams cannot exceed 65,507 bytes anyway). */
  readonly maxMessageBytes: number;
  readonly maxHeaderBytes: number;
  readonly maxHeaderCount: number;
  readonly maxBodyBytes: number;
}

export const DEFAULT_SIP_LIMITS: SipLimits = {
  maxMessageBytes: 65_535,
  maxHeaderBytes: 16_384,
  maxHeaderCount: 128,
  maxBodyBytes: 32_768,
};

const COMPACT: Readonly<Record<string, string>> = {
  i: 'call-id', m: 'contact', f: 'from', t: 'to', v: 'via', l: 'content-length', c: 'content-type',
  k: 'supported', s: 'subject', e: 'content-encoding', x: 'session-expires', o: 'event',
  u: 'allow-events', r: 'refer-to', b: 'referred-by', a: 'accept-contact', j: 'reject-contact',
  d: 'request-disposition', y: 'identity', n: 'identity-info',
};

/** Headers whose grammar is a comma-separated list (§7.3.1): stored one field per value. */
const LIST_HEADERS: ReadonlySet<string> = new Set([
  'via', 'route', 'record-route', 'contact', 'allow', 'supported', 'require', 'proxy-require',
  'unsupported', 'accept', 'accept-encoding', 'accept-language', 'content-encoding',
  'content-language', 'allow-events', 'warning', 'reason',
]);

const DISPLAY: Readonly<Record<string, string>> = {
  'call-id': 'Call-ID', cseq: 'CSeq', 'www-authenticate': 'WWW-Authenticate', 'min-se': 'Min-SE',
  'mime-version': 'MIME-Version', 'rack': 'RAck', 'rseq': 'RSeq',
};

/** The lower-case long form of a header name. */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return COMPACT[lower] ?? lower;
}

function displayName(lower: string): string {
  return DISPLAY[lower] ?? lower.replace(/(^|-)([a-z])/g, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
}

export interface SipHeaderField {
  /** Lower-case long form. */
  readonly name: string;
  readonly value: string;
}

/** Ordered header fields; names are case-insensitive and compact forms are expanded. */
export class SipHeaders {
  private readonly fields: SipHeaderField[] = [];

  constructor(init: Iterable<readonly [string, string]> = []) {
    for (const [name, value] of init) this.append(name, value);
  }

  get(name: string): string | undefined {
    const key = canonicalHeaderName(name);
    return this.fields.find((f) => f.name === key)?.value;
  }

  getAll(name: string): string[] {
    const key = canonicalHeaderName(name);
    return this.fields.filter((f) => f.name === key).map((f) => f.value);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  append(name: string, value: string): this {
    this.fields.push({ name: canonicalHeaderName(name), value });
    return this;
  }

  /** Replaces every field of that name with one value (at the first one's position). */
  set(name: string, value: string): this {
    const key = canonicalHeaderName(name);
    const at = this.fields.findIndex((f) => f.name === key);
    this.delete(key);
    if (at < 0) this.fields.push({ name: key, value });
    else this.fields.splice(at, 0, { name: key, value });
    return this;
  }

  /** Replaces the value of the first field of that name (e.g. the top Via). */
  setFirst(name: string, value: string): this {
    const key = canonicalHeaderName(name);
    const at = this.fields.findIndex((f) => f.name === key);
    if (at < 0) this.fields.push({ name: key, value });
    else this.fields[at] = { name: key, value };
    return this;
  }

  delete(name: string): this {
    const key = canonicalHeaderName(name);
    for (let i = this.fields.length - 1; i >= 0; i--) if (this.fields[i]!.name === key) this.fields.splice(i, 1);
    return this;
  }

  entries(): readonly SipHeaderField[] {
    return this.fields;
  }

  get size(): number {
    return this.fields.length;
  }
}

export interface SipRequest {
  readonly kind: 'request';
  readonly method: string;
  readonly uri: string;
  readonly headers: SipHeaders;
  readonly body: Buffer;
}

export interface SipResponse {
  readonly kind: 'response';
  readonly status: number;
  readonly reason: string;
  readonly headers: SipHeaders;
  readonly body: Buffer;
}

export type SipMessage = SipRequest | SipResponse;

export interface ParseOptions {
  readonly limits?: SipLimits;
  /** Stream transports (TCP): Content-Length must be present (§18.3). */
  readonly requireContentLength?: boolean;
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
// eslint-disable-next-line no-control-regex
const BAD_CHARS = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Splits a header value on commas outside quoted strings and <…> (§7.3.1). */
export function splitHeaderList(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted) {
      if (ch === '\\') i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '<') depth++;
    else if (ch === '>' && depth > 0) depth--;
    else if (ch === ',' && depth === 0) {
      out.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(value.slice(start).trim());
  return out.filter((v) => v.length > 0);
}

/**
 * Parses one SIP message. Throws SipError. Mandatory-header checks are separate
 * (`validateRequest`) so that a request missing one can still be answered with 400.
 */
export function parseSipMessage(input: Buffer, options: ParseOptions = {}): SipMessage {
  const limits = options.limits ?? DEFAULT_SIP_LIMITS;
  // the header section is bounded on its own; the total size is checked once it is parsed, so
  // that an oversized request can still be answered 513
  // header section: lines up to the first empty line
  const lines: string[] = [];
  let pos = 0;
  let bodyStart = -1;
  while (pos < input.length) {
    const nl = input.indexOf(0x0a, pos);
    if (nl < 0) break;
    if (nl > limits.maxHeaderBytes) throw new SipError('ERR_SIP_TOO_LARGE', 'header section too large', { status: 513 });
    const end = nl > pos && input[nl - 1] === 0x0d ? nl - 1 : nl;
    const line = input.toString('utf8', pos, end);
    pos = nl + 1;
    if (line.length === 0) {
      if (lines.length === 0) continue; // leading CRLFs (keep-alive residue) before the start line
      bodyStart = pos;
      break;
    }
    lines.push(line);
  }
  if (bodyStart < 0) {
    if (pos > limits.maxHeaderBytes) throw new SipError('ERR_SIP_TOO_LARGE', 'header section too large', { status: 513 });
    throw new SipError('ERR_SIP_MALFORMED', 'no end of header section');
  }
  const startLine = lines.shift();
  if (startLine === undefined) throw new SipError('ERR_SIP_MALFORMED', 'empty message');
  if (BAD_CHARS.test(startLine)) throw new SipError('ERR_SIP_MALFORMED', 'control character in start line');

  const headers = parseHeaderLines(lines, limits);
  let message: SipMessage;
  if (startLine.startsWith('SIP/')) {
    const m = /^SIP\/2\.0 ([1-6]\d\d) ([^\r\n]*)$/.exec(startLine);
    if (!m) throw new SipError('ERR_SIP_MALFORMED', 'bad status line');
    message = { kind: 'response', status: Number(m[1]), reason: m[2]!, headers, body: Buffer.alloc(0) };
  } else {
    const parts = startLine.split(' ');
    if (parts.length !== 3) throw new SipError('ERR_SIP_MALFORMED', 'bad request line');
    const [method = '', uri = '', version = ''] = parts;
    if (!TOKEN.test(method) || uri.length === 0) throw new SipError('ERR_SIP_MALFORMED', 'bad request line');
    const partial: SipRequest = { kind: 'request', method, uri, headers, body: Buffer.alloc(0) };
    if (version !== 'SIP/2.0') {
      throw new SipError('ERR_SIP_VERSION', 'unsupported SIP version', { status: 505, partial });
    }
    message = partial;
  }
  const partial = message.kind === 'request' ? message : undefined;
  if (input.length > limits.maxMessageBytes) {
    throw new SipError('ERR_SIP_TOO_LARGE', 'message too large', { status: 513, partial });
  }

  // body (§18.3)
  const available = input.length - bodyStart;
  const lengths = headers.getAll('content-length');
  let body: Buffer;
  if (lengths.length === 0) {
    if (options.requireContentLength) {
      throw new SipError('ERR_SIP_MISSING_HEADER', 'Content-Length is required on stream transports', {
        header: 'content-length', partial,
      });
    }
    body = input.subarray(bodyStart);
  } else {
    const first = lengths[0]!;
    if (!/^\d{1,9}$/.test(first) || lengths.some((v) => v !== first)) {
      throw new SipError('ERR_SIP_BAD_HEADER', 'bad Content-Length', { header: 'content-length', partial });
    }
    const length = Number(first);
    if (length > available) {
      throw new SipError('ERR_SIP_BODY_LENGTH', 'body shorter than Content-Length', { header: 'content-length', partial });
    }
    body = input.subarray(bodyStart, bodyStart + length);
  }
  if (body.length > limits.maxBodyBytes) {
    throw new SipError('ERR_SIP_TOO_LARGE', 'body too large', { status: 413, partial });
  }
  return { ...message, body: Buffer.from(body) };
}

function parseHeaderLines(lines: readonly string[], limits: SipLimits): SipHeaders {
  // unfold continuation lines (§7.3.1)
  const unfolded: string[] = [];
  for (const line of lines) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      const last = unfolded.pop();
      if (last === undefined) throw new SipError('ERR_SIP_MALFORMED', 'continuation line without a header');
      unfolded.push(`${last} ${line.trim()}`);
    } else unfolded.push(line);
  }
  if (unfolded.length > limits.maxHeaderCount) throw new SipError('ERR_SIP_TOO_LARGE', 'too many headers', { status: 513 });
  const headers = new SipHeaders();
  for (const line of unfolded) {
    if (BAD_CHARS.test(line)) throw new SipError('ERR_SIP_MALFORMED', 'control character in header');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new SipError('ERR_SIP_MALFORMED', 'header without a colon');
    const name = line.slice(0, colon).trimEnd();
    if (!TOKEN.test(name)) throw new SipError('ERR_SIP_MALFORMED', 'bad header name');
    const value = line.slice(colon + 1).trim();
    const key = canonicalHeaderName(name);
    if (LIST_HEADERS.has(key) && !(key === 'contact' && value === '*')) {
      for (const item of splitHeaderList(value)) headers.append(key, item);
    } else headers.append(key, value);
  }
  if (headers.size > limits.maxHeaderCount) throw new SipError('ERR_SIP_TOO_LARGE', 'too many headers', { status: 513 });
  return headers;
}

/** Serializes a message; Content-Length is always written from the body. */
export function serializeSipMessage(msg: SipMessage): Buffer {
  const lines: string[] = [msg.kind === 'request' ? `${msg.method} ${msg.uri} SIP/2.0` : `SIP/2.0 ${msg.status} ${msg.reason}`];
  for (const f of msg.headers.entries()) {
    if (f.name !== 'content-length') lines.push(`${displayName(f.name)}: ${f.value}`);
  }
  lines.push(`Content-Length: ${msg.body.length}`, '', '');
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'utf8'), msg.body]);
}

// ---------------------------------------------------------------------------------------------
// Header value grammar

/** `;name=value` parameters; names lower-cased, values unquoted; a valueless param maps to null. */
export function parseParams(text: string): Map<string, string | null> {
  const params = new Map<string, string | null>();
  for (const raw of splitOutsideQuotes(text, ';')) {
    const item = raw.trim();
    if (!item) continue;
    const eq = item.indexOf('=');
    if (eq < 0) params.set(item.toLowerCase(), null);
    else params.set(item.slice(0, eq).trim().toLowerCase(), unquote(item.slice(eq + 1).trim()));
  }
  return params;
}

function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === '\\') i++;
    else if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === sep) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

export function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    return value.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  return value;
}

export function quote(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function formatParams(params: ReadonlyMap<string, string | null>): string {
  let out = '';
  for (const [k, v] of params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}

export interface HostPort {
  /** IPv6 addresses without brackets. */
  readonly host: string;
  readonly port: number | null;
}

/** `host[:port]`, `[v6][:port]`. */
export function parseHostPort(text: string): HostPort | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9\-.]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) return null;
  const port = m[3] === undefined ? null : Number(m[3]);
  if (port !== null && (port < 1 || port > 65535)) return null;
  return { host: m[1] ?? m[2]!, port };
}

export function formatHostPort(host: string, port: number | null): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === null ? h : `${h}:${port}`;
}

export interface ViaHeader {
  readonly transport: string;
  readonly host: string;
  readonly port: number | null;
  readonly params: Map<string, string | null>;
}

/** One Via value: `SIP/2.0/UDP host:port;branch=…;rport` (§20.42). */
export function parseVia(value: string): ViaHeader | null {
  const m = /^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$/i.exec(value.trim());
  if (!m) return null;
  const hp = parseHostPort(m[2]!);
  if (!hp) return null;
  return { transport: m[1]!.toUpperCase(), host: hp.host, port: hp.port, params: parseParams(m[3] ?? '') };
}

export function formatVia(via: ViaHeader): string {
  return `SIP/2.0/${via.transport} ${formatHostPort(via.host, via.port)}${formatParams(via.params)}`;
}

export interface NameAddr {
  readonly displayName: string | null;
  readonly uri: string;
  /** Header parameters (after the URI), e.g. tag. */
  readonly params: Map<string, string | null>;
}

/** name-addr / addr-spec with header params (From, To, Contact, Route, §20.10). */
export function parseNameAddr(value: string): NameAddr | null {
  const v = value.trim();
  const lt = findUnquoted(v, '<');
  if (lt >= 0) {
    const gt = v.indexOf('>', lt);
    if (gt < 0) return null;
    const dn = v.slice(0, lt).trim();
    const uri = v.slice(lt + 1, gt).trim();
    if (!uri || /\s/.test(uri)) return null;
    return { displayName: dn ? unquote(dn) : null, uri, params: parseParams(v.slice(gt + 1)) };
  }
  // addr-spec: parameters after the URI belong to the header (§20.10)
  const semi = v.indexOf(';');
  const uri = semi < 0 ? v : v.slice(0, semi);
  if (!uri || /\s/.test(uri) || !uri.includes(':')) return null;
  return { displayName: null, uri, params: parseParams(semi < 0 ? '' : v.slice(semi)) };
}

function findUnquoted(text: string, ch: string): number {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === ch) return i;
  }
  return -1;
}

export function formatNameAddr(na: NameAddr): string {
  const dn = na.displayName === null ? '' : `${quote(na.displayName)} `;
  return `${dn}<${na.uri}>${formatParams(na.params)}`;
}

export interface SipUri {
  readonly scheme: 'sip' | 'sips' | 'tel';
  readonly user: string | null;
  readonly host: string;
  readonly port: number | null;
  readonly params: Map<string, string | null>;
}

/** sip:/sips: URIs (§19.1) and tel: (RFC 3966, host empty). */
export function parseUri(uri: string): SipUri | null {
  const m = /^(sips?|tel):(.*)$/i.exec(uri.trim());
  if (!m) return null;
  const lower = m[1]!.toLowerCase();
  const scheme = lower === 'tel' ? 'tel' : lower === 'sips' ? 'sips' : 'sip';
  let rest = m[2]!;
  const q = rest.indexOf('?');
  if (q >= 0) rest = rest.slice(0, q);
  if (scheme === 'tel') {
    const [num, ...params] = rest.split(';');
    if (!num) return null;
    return { scheme, user: num, host: '', port: null, params: parseParams(params.join(';')) };
  }
  // '@' cannot appear in host or URI parameters, but ';' can appear in the user part
  const at = rest.lastIndexOf('@');
  let user: string | null = null;
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    user = userinfo.split(':')[0] ?? null;
    rest = rest.slice(at + 1);
  }
  const semi = rest.indexOf(';');
  const hp = parseHostPort(semi < 0 ? rest : rest.slice(0, semi));
  if (!hp) return null;
  let decodedUser = user;
  if (user !== null) {
    try {
      decodedUser = decodeURIComponent(user);
    } catch {
      return null;
    }
  }
  return { scheme, user: decodedUser || null, host: hp.host, port: hp.port, params: parseParams(semi < 0 ? '' : rest.slice(semi)) };
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

export function parseCSeq(value: string): CSeq | null {
  const m = /^(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)$/.exec(value.trim());
  if (!m) return null;
  const seq = Number(m[1]);
  if (seq >= 2 ** 31) return null;
  return { seq, method: m[2]! };
}

/** Option tags of Require / Supported / Proxy-Require (already split per value). */
export function optionTags(headers: SipHeaders, name: string): string[] {
  return headers.getAll(name).map((t) => t.trim().toLowerCase()).filter(Boolean);
}

// ---------------------------------------------------------------------------------------------
// Request validation and response building

/** The mandatory request headers (§8.1.1); Max-Forwards is tolerated when missing. */
export interface ValidatedRequest {
  readonly request: SipRequest;
  readonly topVia: ViaHeader;
  readonly from: NameAddr;
  readonly to: NameAddr;
  readonly callId: string;
  readonly cseq: CSeq;
  readonly maxForwards: number | null;
}

/** Checks Via, From, To, Call-ID, CSeq (and their grammar); returns a SipError for a 400. */
export function validateRequest(req: SipRequest): ValidatedRequest | SipError {
  const fail = (code: SipErrorCode, header: string, message: string): SipError =>
    new SipError(code, message, { header, partial: req });
  for (const h of ['via', 'from', 'to', 'call-id', 'cseq']) {
    if (!req.headers.has(h)) return fail('ERR_SIP_MISSING_HEADER', h, `missing ${h}`);
  }
  const topVia = parseVia(req.headers.get('via')!);
  if (!topVia) return fail('ERR_SIP_BAD_HEADER', 'via', 'bad Via');
  const from = parseNameAddr(req.headers.get('from')!);
  if (!from) return fail('ERR_SIP_BAD_HEADER', 'from', 'bad From');
  const to = parseNameAddr(req.headers.get('to')!);
  if (!to) return fail('ERR_SIP_BAD_HEADER', 'to', 'bad To');
  const callId = req.headers.get('call-id')!;
  if (!/^[!-~]{1,256}$/.test(callId)) return fail('ERR_SIP_BAD_HEADER', 'call-id', 'bad Call-ID');
  if (req.headers.getAll('call-id').length > 1 || req.headers.getAll('cseq').length > 1) {
    return fail('ERR_SIP_BAD_HEADER', 'cseq', 'duplicate Call-ID or CSeq');
  }
  const cseq = parseCSeq(req.headers.get('cseq')!);
  if (!cseq) return fail('ERR_SIP_BAD_HEADER', 'cseq', 'bad CSeq');
  if (cseq.method !== req.method && !(req.method === 'ACK' && cseq.method === 'ACK')) {
    return fail('ERR_SIP_BAD_HEADER', 'cseq', 'CSeq method does not match the request');
  }
  const mf = req.headers.get('max-forwards');
  let maxForwards: number | null = null;
  if (mf !== undefined) {
    if (!/^\d{1,3}$/.test(mf) || Number(mf) > 255) return fail('ERR_SIP_BAD_HEADER', 'max-forwards', 'bad Max-Forwards');
    maxForwards = Number(mf);
  }
  return { request: req, topVia, from, to, callId, cseq, maxForwards };
}

export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying', 180: 'Ringing', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  406: 'Not Acceptable', 408: 'Request Timeout', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme', 420: 'Bad Extension', 422: 'Session Interval Too Small',
  480: 'Temporarily Unavailable', 481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected',
  483: 'Too Many Hops', 486: 'Busy Here', 487: 'Request Terminated', 488: 'Not Acceptable Here',
  491: 'Request Pending', 500: 'Server Internal Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  505: 'Version Not Supported', 513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline',
  606: 'Not Acceptable',
};

export interface ResponseOptions {
  readonly reason?: string;
  /** Added to To when it has no tag (not on 100). */
  readonly toTag?: string;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: Buffer;
  readonly contentType?: string;
}

/**
 * A response to `req` (§8.2.6.2): Via (all, in order), From, To (+ our tag), Call-ID, CSeq copied;
 * Record-Route copied on dialog-creating responses (§12.1.1); Timestamp echoed on 100.
 */
export function createResponse(req: SipRequest, status: number, opts: ResponseOptions = {}): SipResponse {
  const h = new SipHeaders();
  for (const via of req.headers.getAll('via')) h.append('via', via);
  const from = req.headers.get('from');
  if (from !== undefined) h.append('from', from);
  const to = req.headers.get('to');
  if (to !== undefined) {
    const parsed = parseNameAddr(to);
    if (status > 100 && opts.toTag !== undefined && parsed && !parsed.params.has('tag')) {
      h.append('to', `${to};tag=${opts.toTag}`);
    } else h.append('to', to);
  }
  const callId = req.headers.get('call-id');
  if (callId !== undefined) h.append('call-id', callId);
  const cseq = req.headers.get('cseq');
  if (cseq !== undefined) h.append('cseq', cseq);
  if (status === 100 && req.headers.has('timestamp')) h.append('timestamp', req.headers.get('timestamp')!);
  if (req.method === 'INVITE' && status > 100 && status < 300) {
    for (const rr of req.headers.getAll('record-route')) h.append('record-route', rr);
  }
  for (const [name, value] of opts.headers ?? []) h.append(name, value);
  const body = opts.body ?? Buffer.alloc(0);
  if (body.length > 0 && opts.contentType) h.set('content-type', opts.contentType);
  return { kind: 'response', status, reason: opts.reason ?? REASON_PHRASES[status] ?? 'Unknown', headers: h, body };
}

/** The `tag` parameter of a From/To value, or null. */
export function tagOf(na: NameAddr): string | null {
  return na.params.get('tag') ?? null;
}
