/**
 * RTP packet parser and serialiser (RFC 3550 §5.1), sans-I/O, with bounds checks on every field.
 *
 *   byte 0: V(2) P(1) X(1) CC(4)   byte 1: M(1) PT(7)   bytes 2-3: sequence number
 *   bytes 4-7: timestamp           bytes 8-11: SSRC     then CC × 4 bytes of CSRC,
 *   then, if X: 16-bit profile + 16-bit length (in 32-bit words) + length × 4 bytes,
 *   then the payload; if P, the payload's last byte counts the padding bytes (itself included).
 *
 * RTCP multiplexed on the RTP port (RFC 5761 §4) is told apart by its second byte: RTCP packet
 * types 192–223 (SR 200, RR 201, SDES 202, BYE 203, APP 204, …) would be marker + PT 64–95 in
 * RTP, a range RTP must not use when muxing. `isRtcp()` checks that before `parseRtp()`.
 *
 * `parseRtp` never throws on wire input: it returns a stable error code. The payload and the
 * extension data are views into the input (no copy).
 */

export const RTP_ERROR_CODES = [
  /** Shorter than the 12-byte fixed header. */
  'ERR_RTP_TRUNCATED',
  /** Version field is not 2. */
  'ERR_RTP_VERSION',
  /** P set but the padding count is 0 or larger than what follows the headers. */
  'ERR_RTP_BAD_PADDING',
  /** X set but the extension header or its data does not fit. */
  'ERR_RTP_BAD_EXTENSION',
  /** The CSRC list does not fit. */
  'ERR_RTP_BAD_CSRC',
  /** Valid headers, no payload left (after padding). */
  'ERR_RTP_EMPTY',
] as const;
export type RtpErrorCode = (typeof RTP_ERROR_CODES)[number];

export const RTP_HEADER_BYTES = 12;

export interface RtpExtension {
  /** "defined by profile" 16-bit value (0xBEDE for RFC 8285 one-byte headers). */
  readonly profile: number;
  /** Extension data, length × 4 bytes (a view into the packet). */
  readonly data: Uint8Array;
}

export interface RtpPacket {
  readonly version: number;
  readonly padding: boolean;
  readonly extension: RtpExtension | null;
  readonly csrcCount: number;
  readonly marker: boolean;
  readonly payloadType: number;
  readonly sequenceNumber: number;
  /** uint32 */
  readonly timestamp: number;
  /** uint32 */
  readonly ssrc: number;
  readonly csrcs: readonly number[];
  /** Payload with padding stripped (a view into the packet). */
  readonly payload: Uint8Array;
}

export type RtpParseResult = { ok: true; packet: RtpPacket } | { ok: false; code: RtpErrorCode };

const NO_CSRCS: readonly number[] = Object.freeze([]);

/** True when `buf` looks like an RTCP packet multiplexed on the RTP port (RFC 5761 §4). */
export function isRtcp(buf: Uint8Array): boolean {
  if (buf.length < 8 || buf[0]! >> 6 !== 2) return false;
  const pt = buf[1]!;
  return pt >= 192 && pt <= 223;
}

/** Big-endian uint16 / uint32 at `off` (bounds checked by the caller; no DataView allocation). */
function u16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

function u32(b: Uint8Array, off: number): number {
  return b[off]! * 0x1000000 + ((b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!);
}

function fail(code: RtpErrorCode): RtpParseResult {
  return { ok: false, code };
}

/** Parses one RTP packet. Never throws; malformed input yields `{ok:false, code}`. */
export function parseRtp(buf: Uint8Array): RtpParseResult {
  const len = buf.length;
  if (len < RTP_HEADER_BYTES) return fail('ERR_RTP_TRUNCATED');
  const b0 = buf[0]!;
  const version = b0 >> 6;
  if (version !== 2) return fail('ERR_RTP_VERSION');
  const padding = (b0 & 0x20) !== 0;
  const hasExtension = (b0 & 0x10) !== 0;
  const csrcCount = b0 & 0x0f;
  const b1 = buf[1]!;
  let off = RTP_HEADER_BYTES;
  if (off + csrcCount * 4 > len) return fail('ERR_RTP_BAD_CSRC');
  let csrcs = NO_CSRCS;
  if (csrcCount > 0) {
    const list = new Array<number>(csrcCount);
    for (let i = 0; i < csrcCount; i++, off += 4) list[i] = u32(buf, off);
    csrcs = list;
  }
  let extension: RtpExtension | null = null;
  if (hasExtension) {
    if (off + 4 > len) return fail('ERR_RTP_BAD_EXTENSION');
    const profile = u16(buf, off);
    const words = u16(buf, off + 2);
    const dataStart = off + 4;
    off = dataStart + words * 4;
    if (off > len) return fail('ERR_RTP_BAD_EXTENSION');
    extension = { profile, data: buf.subarray(dataStart, off) };
  }
  let end = len;
  if (padding) {
    const count = buf[len - 1]!;
    if (count === 0 || count > len - off) return fail('ERR_RTP_BAD_PADDING');
    end = len - count;
  }
  if (end <= off) return fail('ERR_RTP_EMPTY');
  return {
    ok: true,
    packet: {
      version,
      padding,
      extension,
      csrcCount,
      marker: (b1 & 0x80) !== 0,
      payloadType: b1 & 0x7f,
      sequenceNumber: u16(buf, 2),
      timestamp: u32(buf, 4),
      ssrc: u32(buf, 8),
      csrcs,
      payload: buf.subarray(off, end),
    },
  };
}

export interface RtpPacketFields {
  readonly payloadType: number;
  readonly sequenceNumber: number;
  readonly timestamp: number;
  readonly ssrc: number;
  readonly payload: Uint8Array;
  readonly marker?: boolean;
  readonly csrcs?: readonly number[];
  readonly extension?: { readonly profile: number; readonly data: Uint8Array } | null;
  /** Padding bytes to append (0–255; sets P). Default 0. */
  readonly paddingBytes?: number;
  /** Default 2; other values only to build invalid packets in tests. */
  readonly version?: number;
}

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`RTP ${name} must be an integer in 0..${max}, got ${value}`);
  }
}

/** Builds an RTP packet. Throws RangeError for out-of-range fields (a programming error). */
export function serializeRtp(fields: RtpPacketFields): Buffer {
  const csrcs = fields.csrcs ?? NO_CSRCS;
  const ext = fields.extension ?? null;
  const pad = fields.paddingBytes ?? 0;
  const version = fields.version ?? 2;
  checkUint('version', version, 3);
  checkUint('payloadType', fields.payloadType, 127);
  checkUint('sequenceNumber', fields.sequenceNumber, 0xffff);
  checkUint('timestamp', fields.timestamp, 0xffffffff);
  checkUint('ssrc', fields.ssrc, 0xffffffff);
  checkUint('paddingBytes', pad, 255);
  if (csrcs.length > 15) throw new RangeError(`RTP allows at most 15 CSRCs, got ${csrcs.length}`);
  if (ext !== null) {
    checkUint('extension.profile', ext.profile, 0xffff);
    if (ext.data.length % 4 !== 0 || ext.data.length / 4 > 0xffff) {
      throw new RangeError(`RTP extension data must be a multiple of 4 bytes (≤ 262140), got ${ext.data.length}`);
    }
  }
  const extBytes = ext === null ? 0 : 4 + ext.data.length;
  const headerBytes = RTP_HEADER_BYTES + csrcs.length * 4 + extBytes;
  const out = Buffer.allocUnsafe(headerBytes + fields.payload.length + pad);
  out[0] = (version << 6) | (pad > 0 ? 0x20 : 0) | (ext !== null ? 0x10 : 0) | csrcs.length;
  out[1] = (fields.marker === true ? 0x80 : 0) | fields.payloadType;
  out.writeUInt16BE(fields.sequenceNumber, 2);
  out.writeUInt32BE(fields.timestamp, 4);
  out.writeUInt32BE(fields.ssrc, 8);
  let off = RTP_HEADER_BYTES;
  for (const c of csrcs) {
    checkUint('csrc', c, 0xffffffff);
    out.writeUInt32BE(c, off);
    off += 4;
  }
  if (ext !== null) {
    out.writeUInt16BE(ext.profile, off);
    out.writeUInt16BE(ext.data.length / 4, off + 2);
    out.set(ext.data, off + 4);
    off += extBytes;
  }
  out.set(fields.payload, off);
  off += fields.payload.length;
  if (pad > 0) {
    out.fill(0, off, off + pad - 1);
    out[off + pad - 1] = pad;
  }
  return out;
}
