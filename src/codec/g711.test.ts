import alawmulaw from 'alawmulaw';
import { describe, expect, it } from 'vitest';
import {
  ALAW_TABLE,
  MULAW_TABLE,
  decodeG711,
  decodeG711Into,
  encodeG711,
  pcmToSamples,
} from './g711.js';

describe('G.711 μ-law', () => {
  // ITU-T G.711 / Sun g711.c reference values
  it.each([
    [0xff, 0],
    [0x7f, 0],
    [0x00, -32124],
    [0x80, 32124],
    [0xfe, 8],
    [0x7e, -8],
    [0xef, 132],
    [0x6f, -132],
    [0xcf, 924],
  ])('decodes 0x%s to %i', (code, pcm) => {
    expect(MULAW_TABLE[code]).toBe(pcm);
  });

  it('matches alawmulaw for every codeword', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(pcmToSamples(decodeG711('pcmu', all)))).toEqual(
      Array.from(alawmulaw.mulaw.decode(all)),
    );
  });

  it('round-trips encode(decode(x)) for every codeword except the negative zero', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const back = encodeG711('pcmu', pcmToSamples(decodeG711('pcmu', all)));
    for (let i = 0; i < 256; i++) {
      if (i === 0x7f) continue; // -0 encodes to +0 (0xff)
      expect(back[i]).toBe(i);
    }
  });
});

describe('G.711 A-law', () => {
  it.each([
    [0xd5, 8],
    [0x55, -8],
    [0x2a, -32256],
    [0xaa, 32256],
    [0x80, 5504],
    [0x00, -5504],
  ])('decodes 0x%s to %i', (code, pcm) => {
    expect(ALAW_TABLE[code]).toBe(pcm);
  });

  it('matches alawmulaw for every codeword', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(pcmToSamples(decodeG711('pcma', all)))).toEqual(
      Array.from(alawmulaw.alaw.decode(all)),
    );
  });
});

describe('decodeG711Into', () => {
  it('writes little-endian PCM at an offset and returns the byte count', () => {
    const dst = Buffer.alloc(8, 0xaa);
    const n = decodeG711Into('pcmu', Uint8Array.from([0x80, 0x00]), dst, 2);
    expect(n).toBe(4);
    expect(dst.readInt16LE(2)).toBe(32124);
    expect(dst.readInt16LE(4)).toBe(-32124);
    expect(dst[0]).toBe(0xaa);
    expect(dst[7]).toBe(0xaa);
  });

  it('writes the same bytes through the unaligned path', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const aligned = Buffer.alloc(512);
    const unaligned = Buffer.alloc(513).subarray(1);
    expect(unaligned.byteOffset & 1).toBe(1);
    decodeG711Into('pcma', all, aligned);
    decodeG711Into('pcma', all, unaligned);
    expect(unaligned.equals(aligned)).toBe(true);
    expect(aligned.readInt16LE(0xd5 * 2)).toBe(8);
  });

  it('refuses to overrun the destination', () => {
    expect(() => decodeG711Into('pcmu', new Uint8Array(5), Buffer.alloc(8))).toThrow(RangeError);
  });
});
