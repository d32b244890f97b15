/**
 * A byte-level recogniser for the one message that makes up 99.9 % of a Twilio stream: the
 * `media` frame exactly as Twilio lays it out,
 *
 *   {"event":"media","sequenceNumber":"N","media":{"track":"inbound|outbound","chunk":"N",
 *    "timestamp":"N","payload":"<base64>"},"streamSid":"<sid>"}
 *
 * with no whitespace. It checks every byte of that layout, validates the digits and the
 * base64 (strict, as isStrictBase64) while decoding the payload straight into a caller-owned
 * buffer, so the frame never becomes a string or a JSON object. Anything else — other key
 * orders, escapes, whitespace, numbers instead of strings, vendor variants — is not
 * recognised (returns false) and takes the general JSON path, which gives the same result for
 * every frame this accepts (a differential test pins that). Pure: no I/O, no allocation.
 */

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const HEAD = enc('{"event":"media","sequenceNumber":"');
const AFTER_SEQ = enc('","media":{"track":"');
const INBOUND = enc('inbound');
const OUTBOUND = enc('outbound');
const AFTER_TRACK = enc('","chunk":"');
const AFTER_CHUNK = enc('","timestamp":"');
const AFTER_TS = enc('","payload":"');
const AFTER_PAYLOAD = enc('"},"streamSid":"');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const CLOSE_BRACE = 0x7d;
const EQUALS = 0x3d;
const MAX_DIGITS = 15;
const MAX_SID_LENGTH = 128;

/** base64 character → 6-bit value, or -1. */
const B64 = (() => {
  const t = new Int8Array(256).fill(-1);
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = i;
  return t;
})();

/** What the scan found; reused by the caller (no allocation per frame). */
export interface FastMediaFields {
  sequenceNumber: number;
  track: 'inbound' | 'outbound';
  chunk: number;
  timestampMs: number;
  /** Byte range of the streamSid inside the frame. */
  sidStart: number;
  sidEnd: number;
  /** Payload bytes decoded into `dst`. */
  payloadBytes: number;
}

export function newFastMediaFields(): FastMediaFields {
  return { sequenceNumber: 0, track: 'inbound', chunk: 0, timestampMs: 0, sidStart: 0, sidEnd: 0, payloadBytes: 0 };
}

function matchAt(buf: Uint8Array, at: number, lit: Uint8Array): boolean {
  if (at + lit.length > buf.length) return false;
  for (let i = 0; i < lit.length; i++) if (buf[at + i] !== lit[i]) return false;
  return true;
}

/** Value of the digits read by the last readDigits() call (module scratch: no allocation). */
let digitsValue = 0;

/** Reads 1..15 ASCII digits at `p`; returns the position after them, or -1. */
function readDigits(buf: Uint8Array, p: number): number {
  const n = buf.length;
  const start = p;
  let v = 0;
  while (p < n && buf[p]! >= 0x30 && buf[p]! <= 0x39) v = v * 10 + (buf[p++]! - 0x30);
  if (p === start || p - start > MAX_DIGITS) return -1;
  digitsValue = v;
  return p;
}

/**
 * Scans `buf`; on success fills `out`, decodes the payload into `dst` (which must hold at least
 * `buf.length` bytes, an upper bound of the decoded size) and returns true.
 */
export function scanTwilioMedia(buf: Uint8Array, dst: Uint8Array, out: FastMediaFields): boolean {
  const n = buf.length;
  if (!matchAt(buf, 0, HEAD)) return false;
  let p = HEAD.length;

  p = readDigits(buf, p);
  if (p < 0) return false;
  out.sequenceNumber = digitsValue;
  if (!matchAt(buf, p, AFTER_SEQ)) return false;
  p += AFTER_SEQ.length;

  // track
  if (matchAt(buf, p, INBOUND)) {
    out.track = 'inbound';
    p += INBOUND.length;
  } else if (matchAt(buf, p, OUTBOUND)) {
    out.track = 'outbound';
    p += OUTBOUND.length;
  } else return false;
  if (!matchAt(buf, p, AFTER_TRACK)) return false;
  p += AFTER_TRACK.length;

  p = readDigits(buf, p);
  if (p < 0) return false;
  out.chunk = digitsValue;
  if (!matchAt(buf, p, AFTER_CHUNK)) return false;
  p += AFTER_CHUNK.length;

  p = readDigits(buf, p);
  if (p < 0) return false;
  out.timestampMs = digitsValue;
  if (!matchAt(buf, p, AFTER_TS)) return false;
  p += AFTER_TS.length;

  // payload: strict base64, decoded on the fly; an empty payload goes the general way
  let start = p;
  while (p < n && buf[p] !== QUOTE) p++;
  const end = p;
  const len = end - start;
  if (p >= n || len === 0 || (len & 3) !== 0) return false;
  let pad = 0;
  if (buf[end - 1] === EQUALS) pad = buf[end - 2] === EQUALS ? 2 : 1;
  let o = 0;
  const full = end - (pad > 0 ? 4 : 0);
  let i = start;
  for (; i < full; i += 4) {
    const a = B64[buf[i]!]!;
    const b = B64[buf[i + 1]!]!;
    const c = B64[buf[i + 2]!]!;
    const d = B64[buf[i + 3]!]!;
    if ((a | b | c | d) < 0) return false;
    dst[o++] = (a << 2) | (b >> 4);
    dst[o++] = ((b & 15) << 4) | (c >> 2);
    dst[o++] = ((c & 3) << 6) | d;
  }
  if (pad > 0) {
    const a = B64[buf[i]!]!;
    const b = B64[buf[i + 1]!]!;
    if ((a | b) < 0) return false;
    dst[o++] = (a << 2) | (b >> 4);
    if (pad === 1) {
      const c = B64[buf[i + 2]!]!;
      if (c < 0) return false;
      dst[o++] = ((b & 15) << 4) | (c >> 2);
    }
  }
  out.payloadBytes = o;
  p = end;
  if (!matchAt(buf, p, AFTER_PAYLOAD)) return false;
  p += AFTER_PAYLOAD.length;

  // streamSid: plain printable ASCII, no escapes
  start = p;
  while (p < n) {
    const c = buf[p]!;
    if (c === QUOTE) break;
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return false;
    p++;
  }
  if (p >= n || p === start || p - start > MAX_SID_LENGTH) return false;
  out.sidStart = start;
  out.sidEnd = p;
  // closing `"}` and nothing after it
  return p + 2 === n && buf[p + 1] === CLOSE_BRACE;
}
