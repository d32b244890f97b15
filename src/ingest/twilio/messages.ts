/**
 * Twilio Media Streams: the messages Twilio sends us (spec telephony-ingest.md §1.2), as a
 * discriminated union of normalised wire types plus their runtime validators.
 *
 * - `media` (~50 per second per track) is checked by a hand-written guard: no zod, no regex,
 *   one object allocated. The rare events (`connected`, `start`, `dtmf`, `mark`, `stop`) are
 *   checked with zod.
 * - Counters (`sequenceNumber`, `media.chunk`, `media.timestamp`) are strings of digits on the
 *   wire; numbers are accepted too (Twilio-style vendors), both normalised to number.
 * - `streamSid` is not format-checked (a pre-GA Twilio log shows a UUID), only length-bounded.
 * - Validators return the normalised message, or a string naming the offending field (a
 *   failure detail that never contains values: payloads and parameters may carry PII).
 *
 * State rules (start before media, one start, streamSid match, track and payload checks) live
 * in parser.ts; this module only checks shape.
 */
import { z } from 'zod';
import type { G711Codec } from '../../codec/g711.js';

export const TWILIO_EVENTS = ['connected', 'start', 'media', 'dtmf', 'mark', 'stop'] as const;
export type TwilioEventName = (typeof TWILIO_EVENTS)[number];

export function isTwilioEventName(value: string): value is TwilioEventName {
  return (
    value === 'media' ||
    value === 'start' ||
    value === 'connected' ||
    value === 'stop' ||
    value === 'dtmf' ||
    value === 'mark'
  );
}

export const TWILIO_TRACKS = ['inbound', 'outbound'] as const;
export type TwilioTrack = (typeof TWILIO_TRACKS)[number];

export function isTwilioTrack(value: unknown): value is TwilioTrack {
  return value === 'inbound' || value === 'outbound';
}

/** Longest id (streamSid, callSid, accountSid) accepted; Twilio's are 34 characters. */
export const MAX_SID_LENGTH = 128;
/** At most this many customParameters are kept; the rest are dropped and counted. */
export const MAX_CUSTOM_PARAMETERS = 64;
/** Longest customParameters name / value kept (longer ones are dropped and counted). */
export const MAX_CUSTOM_PARAMETER_NAME_LENGTH = 128;
export const MAX_CUSTOM_PARAMETER_VALUE_LENGTH = 4096;

// ---------------------------------------------------------------------------------------------
// Normalised wire messages (Twilio → us)
// ---------------------------------------------------------------------------------------------

export interface TwilioConnectedMessage {
  readonly event: 'connected';
  /** `"Call"` on Twilio; null when absent or not a string/number. */
  readonly protocol: string | null;
  /** Never validated beyond its type (real logs show "0.2.0" and "1.0.0"). */
  readonly version: string | null;
}

export interface TwilioMediaFormat {
  /** As received (case preserved). */
  readonly encoding: string;
  readonly sampleRate: number;
  readonly channels: number;
}

export interface TwilioStartMessage {
  readonly event: 'start';
  readonly sequenceNumber: number;
  /** Top-level `streamSid`, else `start.streamSid` (they must agree when both are present). */
  readonly streamSid: string;
  readonly accountSid: string | null;
  readonly callSid: string;
  /** Deduplicated, in the order received; `["inbound"]` when `start.tracks` is absent or empty. */
  readonly tracks: readonly TwilioTrack[];
  /** True when `start.tracks` was absent or empty and `["inbound"]` was assumed. */
  readonly tracksDefaulted: boolean;
  /** String values kept; numbers and booleans coerced to strings. */
  readonly customParameters: Readonly<Record<string, string>>;
  /** customParameters entries dropped (non-scalar values, too long, too many, `__proto__`). */
  readonly droppedCustomParameters: number;
  readonly mediaFormat: TwilioMediaFormat;
}

export interface TwilioMediaMessage {
  readonly event: 'media';
  readonly sequenceNumber: number;
  readonly streamSid: string;
  /** As received; parser.ts checks it is `inbound` or `outbound`. */
  readonly track: string;
  readonly chunk: number;
  /** `media.timestamp`: ms since the stream started. */
  readonly timestampMs: number;
  /** Base64 as received; parser.ts checks it strictly and decodes it. */
  readonly payload: string;
}

export interface TwilioDtmfMessage {
  readonly event: 'dtmf';
  readonly sequenceNumber: number;
  readonly streamSid: string;
  /** `"inbound_track"` on Twilio; null when absent. */
  readonly track: string | null;
  readonly digit: string;
}

export interface TwilioMarkMessage {
  readonly event: 'mark';
  readonly sequenceNumber: number;
  readonly streamSid: string;
  readonly name: string;
}

export interface TwilioStopMessage {
  readonly event: 'stop';
  readonly sequenceNumber: number;
  readonly streamSid: string;
  readonly accountSid: string | null;
  readonly callSid: string | null;
}

export type TwilioInboundMessage =
  | TwilioConnectedMessage
  | TwilioStartMessage
  | TwilioMediaMessage
  | TwilioDtmfMessage
  | TwilioMarkMessage
  | TwilioStopMessage;

// ---------------------------------------------------------------------------------------------
// Small guards
// ---------------------------------------------------------------------------------------------

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A non-negative safe integer given as a string of 1..15 ASCII digits or as a number;
 * returns -1 otherwise. Hand-written: this runs three times per media frame.
 */
export function parseUintField(value: unknown): number {
  if (typeof value === 'string') {
    const n = value.length;
    if (n === 0 || n > 15) return -1;
    let x = 0;
    for (let i = 0; i < n; i++) {
      const d = value.charCodeAt(i) - 48;
      if (d < 0 || d > 9) return -1;
      x = x * 10 + d;
    }
    return x;
  }
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : -1;
  return -1;
}

function isSid(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_SID_LENGTH;
}

const BASE64_ALPHABET = (() => {
  const t = new Uint8Array(128);
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  return t;
})();

/**
 * Strict standard base64 (RFC 4648 §4): length a multiple of 4, only `A–Z a–z 0–9 + /`, and
 * at most two `=` at the very end. `Buffer.from(s, 'base64')` silently skips anything else,
 * so the payload is checked with this first. The empty string passes (it is an empty
 * payload, reported separately). Unused trailing bits are not checked (decoders ignore them).
 */
export function isStrictBase64(s: string): boolean {
  const n = s.length;
  if ((n & 3) !== 0) return false;
  let end = n;
  if (n > 0 && s.charCodeAt(n - 1) === 61 /* = */) {
    end--;
    if (s.charCodeAt(n - 2) === 61) end--;
  }
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || BASE64_ALPHABET[c] === 0) return false;
  }
  return true;
}

/** Bytes a strict base64 string decodes to. */
export function base64DecodedLength(s: string): number {
  const n = s.length;
  if (n === 0) return 0;
  let pad = 0;
  if (s.charCodeAt(n - 1) === 61) pad = s.charCodeAt(n - 2) === 61 ? 2 : 1;
  return (n >> 2) * 3 - pad;
}

/**
 * The G.711 codec for a `start.mediaFormat`, or null when unsupported. Twilio always sends
 * `audio/x-mulaw`, 8000, 1; `audio/x-alaw` is accepted for Twilio-style vendors sending PCMA.
 * The encoding is compared case-insensitively (surrounding whitespace ignored).
 */
export function codecForMediaFormat(format: TwilioMediaFormat): G711Codec | null {
  if (format.sampleRate !== 8000 || format.channels !== 1) return null;
  const encoding = format.encoding.trim().toLowerCase();
  if (encoding === 'audio/x-mulaw') return 'pcmu';
  if (encoding === 'audio/x-alaw') return 'pcma';
  return null;
}

// ---------------------------------------------------------------------------------------------
// media: hand-written guard (hot path)
// ---------------------------------------------------------------------------------------------

/**
 * Validates the shape of a parsed `media` message. Returns the normalised message or the name
 * of the first bad field. Does not check the track value or the base64 (see parser.ts).
 */
export function validateMediaMessage(msg: Record<string, unknown>): TwilioMediaMessage | string {
  const sequenceNumber = parseUintField(msg['sequenceNumber']);
  if (sequenceNumber < 0) return 'sequenceNumber';
  const streamSid = msg['streamSid'];
  if (!isSid(streamSid)) return 'streamSid';
  const media = msg['media'];
  if (!isRecord(media)) return 'media';
  const track = media['track'];
  if (typeof track !== 'string') return 'media.track';
  const chunk = parseUintField(media['chunk']);
  if (chunk < 0) return 'media.chunk';
  const timestampMs = parseUintField(media['timestamp']);
  if (timestampMs < 0) return 'media.timestamp';
  const payload = media['payload'];
  if (typeof payload !== 'string') return 'media.payload';
  return { event: 'media', sequenceNumber, streamSid, track, chunk, timestampMs, payload };
}

// ---------------------------------------------------------------------------------------------
// Rare events: zod
// ---------------------------------------------------------------------------------------------

const uintSchema = z.union([
  z.string().regex(/^\d{1,15}$/),
  z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
]).transform((v) => Number(v));

const sidSchema = z.string().min(1).max(MAX_SID_LENGTH);

/** A string, or a number coerced to one; anything else becomes null (never fails). */
const lenientStringSchema = z
  .union([z.string().max(256), z.number().transform((v) => String(v))])
  .nullable()
  .optional()
  .catch(null)
  .transform((v) => v ?? null);

const connectedSchema = z.object({
  protocol: lenientStringSchema,
  version: lenientStringSchema,
});

const startSchema = z.object({
  sequenceNumber: uintSchema,
  streamSid: sidSchema.optional(),
  start: z.object({
    streamSid: sidSchema.optional(),
    accountSid: sidSchema.optional(),
    callSid: sidSchema,
    tracks: z.array(z.enum(TWILIO_TRACKS)).max(8).optional(),
    customParameters: z.unknown().optional(),
    mediaFormat: z.object({
      encoding: z.string().max(128),
      sampleRate: uintSchema,
      channels: uintSchema,
    }),
  }),
});

const dtmfSchema = z.object({
  sequenceNumber: uintSchema,
  streamSid: sidSchema,
  dtmf: z.object({
    track: z.string().max(64).optional(),
    digit: z.string().min(1).max(16),
  }),
});

const markSchema = z.object({
  sequenceNumber: uintSchema,
  streamSid: sidSchema,
  mark: z.object({ name: z.string().max(1024) }),
});

const stopSchema = z.object({
  sequenceNumber: uintSchema,
  streamSid: sidSchema,
  /** Optional: the stop is what matters, its body is informational. */
  stop: z
    .object({ accountSid: sidSchema.optional(), callSid: sidSchema.optional() })
    .optional(),
});

function issuePath(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue || issue.path.length === 0) return '(root)';
  return issue.path.map((p) => String(p)).join('.');
}

/**
 * customParameters → an object of strings. Strings are kept, finite numbers and booleans are
 * coerced; anything else (objects, arrays, null), over-long names/values, entries past
 * MAX_CUSTOM_PARAMETERS and the key `__proto__` are dropped and counted. A customParameters
 * that is not an object counts as one drop.
 */
export function normaliseCustomParameters(value: unknown): {
  params: Record<string, string>;
  dropped: number;
} {
  const params: Record<string, string> = {};
  if (value === undefined || value === null) return { params, dropped: 0 };
  if (!isRecord(value)) return { params, dropped: 1 };
  let kept = 0;
  let dropped = 0;
  for (const key of Object.keys(value)) {
    const v = value[key];
    let s: string | null = null;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number' && Number.isFinite(v)) s = String(v);
    else if (typeof v === 'boolean') s = v ? 'true' : 'false';
    if (
      s === null ||
      key === '__proto__' ||
      key.length > MAX_CUSTOM_PARAMETER_NAME_LENGTH ||
      s.length > MAX_CUSTOM_PARAMETER_VALUE_LENGTH ||
      kept >= MAX_CUSTOM_PARAMETERS
    ) {
      dropped++;
      continue;
    }
    params[key] = s;
    kept++;
  }
  return { params, dropped };
}

export function validateConnectedMessage(
  msg: Record<string, unknown>,
): TwilioConnectedMessage | string {
  const r = connectedSchema.safeParse(msg);
  if (!r.success) return issuePath(r.error);
  return { event: 'connected', protocol: r.data.protocol, version: r.data.version };
}

export function validateStartMessage(msg: Record<string, unknown>): TwilioStartMessage | string {
  const r = startSchema.safeParse(msg);
  if (!r.success) return issuePath(r.error);
  const { start } = r.data;
  const top = r.data.streamSid;
  const inner = start.streamSid;
  if (top !== undefined && inner !== undefined && top !== inner) return 'start.streamSid';
  const streamSid = top ?? inner;
  if (streamSid === undefined) return 'streamSid';
  const listed = start.tracks ?? [];
  const tracks: TwilioTrack[] = [];
  for (const t of listed) if (!tracks.includes(t)) tracks.push(t);
  const tracksDefaulted = tracks.length === 0;
  if (tracksDefaulted) tracks.push('inbound');
  const custom = normaliseCustomParameters(start.customParameters);
  return {
    event: 'start',
    sequenceNumber: r.data.sequenceNumber,
    streamSid,
    accountSid: start.accountSid ?? null,
    callSid: start.callSid,
    tracks,
    tracksDefaulted,
    customParameters: custom.params,
    droppedCustomParameters: custom.dropped,
    mediaFormat: {
      encoding: start.mediaFormat.encoding,
      sampleRate: start.mediaFormat.sampleRate,
      channels: start.mediaFormat.channels,
    },
  };
}

export function validateDtmfMessage(msg: Record<string, unknown>): TwilioDtmfMessage | string {
  const r = dtmfSchema.safeParse(msg);
  if (!r.success) return issuePath(r.error);
  return {
    event: 'dtmf',
    sequenceNumber: r.data.sequenceNumber,
    streamSid: r.data.streamSid,
    track: r.data.dtmf.track ?? null,
    digit: r.data.dtmf.digit,
  };
}

export function validateMarkMessage(msg: Record<string, unknown>): TwilioMarkMessage | string {
  const r = markSchema.safeParse(msg);
  if (!r.success) return issuePath(r.error);
  return {
    event: 'mark',
    sequenceNumber: r.data.sequenceNumber,
    streamSid: r.data.streamSid,
    name: r.data.mark.name,
  };
}

export function validateStopMessage(msg: Record<string, unknown>): TwilioStopMessage | string {
  const r = stopSchema.safeParse(msg);
  if (!r.success) return issuePath(r.error);
  return {
    event: 'stop',
    sequenceNumber: r.data.sequenceNumber,
    streamSid: r.data.streamSid,
    accountSid: r.data.stop?.accountSid ?? null,
    callSid: r.data.stop?.callSid ?? null,
  };
}

/**
 * Validates a parsed message whose `event` is a known name. Returns the normalised message or
 * the path of the first bad field.
 */
export function validateTwilioMessage(
  event: TwilioEventName,
  msg: Record<string, unknown>,
): TwilioInboundMessage | string {
  switch (event) {
    case 'media':
      return validateMediaMessage(msg);
    case 'connected':
      return validateConnectedMessage(msg);
    case 'start':
      return validateStartMessage(msg);
    case 'dtmf':
      return validateDtmfMessage(msg);
    case 'mark':
      return validateMarkMessage(msg);
    case 'stop':
      return validateStopMessage(msg);
  }
}
