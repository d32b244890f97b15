/**
 * G.711 (ITU-T) μ-law and A-law → 16-bit linear PCM, little-endian.
 *
 * The sample values come from `alawmulaw` (the reference implementation we depend on); the
 * hot path decodes through 256-entry lookup tables built from it once, into a caller-owned
 * buffer, so decoding a telephony frame allocates nothing (see `npm run bench:codec`).
 * Input: one byte per sample. Output: two bytes per sample, range -32124..32124 (μ-law) and
 * -32256..32256 (A-law).
 */
import { endianness } from 'node:os';
import alawmulaw from 'alawmulaw';

const LITTLE_ENDIAN = endianness() === 'LE';

export type G711Codec = 'pcmu' | 'pcma';

/** The codeword for digital silence (decodes to 0 for μ-law, to ±8 for A-law). */
export const MULAW_SILENCE = 0xff;
export const ALAW_SILENCE = 0xd5;

function buildTable(decodeSample: (sample: number) => number): Int16Array {
  const table = new Int16Array(256);
  for (let i = 0; i < 256; i++) table[i] = decodeSample(i);
  return table;
}

/** μ-law codeword → PCM sample. */
export const MULAW_TABLE: Int16Array = buildTable(alawmulaw.mulaw.decodeSample);
/** A-law codeword → PCM sample. */
export const ALAW_TABLE: Int16Array = buildTable(alawmulaw.alaw.decodeSample);

export function tableFor(codec: G711Codec): Int16Array {
  return codec === 'pcmu' ? MULAW_TABLE : ALAW_TABLE;
}

export function silenceByte(codec: G711Codec): number {
  return codec === 'pcmu' ? MULAW_SILENCE : ALAW_SILENCE;
}

/**
 * Decodes `src` into `dst` at byte offset `dstOffset` (PCM16LE) and returns the number of
 * bytes written (2 × src.length). Throws RangeError if `dst` is too small.
 */
export function decodeG711Into(
  codec: G711Codec,
  src: Uint8Array,
  dst: Buffer,
  dstOffset = 0,
): number {
  const bytes = src.length * 2;
  if (dstOffset < 0 || dstOffset + bytes > dst.length) {
    throw new RangeError(`G.711 decode needs ${bytes} bytes at offset ${dstOffset}, buffer has ${dst.length}`);
  }
  const table = codec === 'pcmu' ? MULAW_TABLE : ALAW_TABLE;
  const start = dst.byteOffset + dstOffset;
  if (LITTLE_ENDIAN && (start & 1) === 0) {
    // aligned fast path: store samples through an Int16Array view of the destination
    const view = new Int16Array(dst.buffer, start, src.length);
    for (let i = 0; i < src.length; i++) view[i] = table[src[i]!]!;
    return bytes;
  }
  let o = dstOffset;
  for (let i = 0; i < src.length; i++) {
    const v = table[src[i]!]!;
    dst[o++] = v & 0xff;
    dst[o++] = (v >> 8) & 0xff;
  }
  return bytes;
}

/** Decodes into a new Buffer (convenience for tools and tests; the ingest path uses decodeG711Into). */
export function decodeG711(codec: G711Codec, src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(src.length * 2);
  decodeG711Into(codec, src, out, 0);
  return out;
}

/** Encodes PCM16 samples to G.711 (used by the simulator and tests, not on the ingest path). */
export function encodeG711(codec: G711Codec, samples: Int16Array): Uint8Array {
  const encode = codec === 'pcmu' ? alawmulaw.mulaw.encodeSample : alawmulaw.alaw.encodeSample;
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = encode(samples[i]!) & 0xff;
  return out;
}

/** PCM16LE bytes → Int16Array view copy (handles odd byteOffsets). */
export function pcmToSamples(pcm: Buffer): Int16Array {
  const out = new Int16Array(pcm.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = pcm.readInt16LE(i * 2);
  return out;
}
