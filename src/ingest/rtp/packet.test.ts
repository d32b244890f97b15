import { describe, expect, it } from 'vitest';
import { RTP_ERROR_CODES, isRtcp, parseRtp, serializeRtp, type RtpPacket } from './packet.js';

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function parsed(buf: Uint8Array): RtpPacket {
  const r = parseRtp(buf);
  if (!r.ok) throw new Error(`expected a packet, got ${r.code}`);
  return r.packet;
}

function code(buf: Uint8Array): string {
  const r = parseRtp(buf);
  return r.ok ? 'ok' : r.code;
}

const PAYLOAD = Uint8Array.from({ length: 160 }, (_, i) => (i * 7) & 0xff);

describe('parseRtp', () => {
  it('parses a hand-written header byte by byte', () => {
    // V=2, no P/X, CC=0; M=1, PT=8; seq 0xABCD; ts 0xDEADBEEF; ssrc 0x01020304; payload 3 bytes
    const buf = Uint8Array.from([0x80, 0x88, 0xab, 0xcd, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 9, 8, 7]);
    const p = parsed(buf);
    expect(p).toMatchObject({
      version: 2,
      padding: false,
      extension: null,
      csrcCount: 0,
      marker: true,
      payloadType: 8,
      sequenceNumber: 0xabcd,
      timestamp: 0xdeadbeef,
      ssrc: 0x01020304,
      csrcs: [],
    });
    expect([...p.payload]).toEqual([9, 8, 7]);
  });

  it('round-trips serializeRtp with CSRCs, an extension and padding', () => {
    const ext = { profile: 0xbede, data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) };
    const buf = serializeRtp({
      payloadType: 0,
      sequenceNumber: 65535,
      timestamp: 0xffffffff,
      ssrc: 0xdee0ee8f,
      marker: false,
      csrcs: [0x11111111, 0xfffffffe, 3],
      extension: ext,
      paddingBytes: 7,
      payload: PAYLOAD,
    });
    expect(buf.length).toBe(12 + 12 + 4 + 8 + 160 + 7);
    expect(buf[buf.length - 1]).toBe(7);
    const p = parsed(buf);
    expect(p.padding).toBe(true);
    expect(p.csrcCount).toBe(3);
    expect(p.csrcs).toEqual([0x11111111, 0xfffffffe, 3]);
    expect(p.extension?.profile).toBe(0xbede);
    expect([...(p.extension?.data ?? [])]).toEqual([...ext.data]);
    expect(p.sequenceNumber).toBe(65535);
    expect(p.timestamp).toBe(0xffffffff);
    expect(p.ssrc).toBe(0xdee0ee8f);
    expect(Buffer.from(p.payload).equals(Buffer.from(PAYLOAD))).toBe(true);
  });

  it('accepts an extension with zero data words', () => {
    const p = parsed(serializeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 1, ssrc: 1, extension: { profile: 1, data: new Uint8Array(0) }, payload: PAYLOAD }));
    expect(p.extension?.data.length).toBe(0);
    expect(p.payload.length).toBe(160);
  });

  it('parses a view with a non-zero byteOffset (the payload is a view, not a copy)', () => {
    const pkt = serializeRtp({ payloadType: 8, sequenceNumber: 5, timestamp: 6, ssrc: 7, payload: PAYLOAD });
    const big = new Uint8Array(pkt.length + 5);
    big.set(pkt, 3);
    const view = big.subarray(3, 3 + pkt.length);
    const p = parsed(view);
    expect(p.sequenceNumber).toBe(5);
    expect(p.ssrc).toBe(7);
    expect(p.payload.buffer).toBe(big.buffer);
    expect(p.payload.byteOffset).toBe(3 + 12);
  });

  it.each([
    ['empty datagram', new Uint8Array(0), 'ERR_RTP_TRUNCATED'],
    ['11 bytes', new Uint8Array(11).fill(0x80), 'ERR_RTP_TRUNCATED'],
    ['version 0', Uint8Array.from([0x00, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5]), 'ERR_RTP_VERSION'],
    ['version 1', Uint8Array.from([0x40, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5]), 'ERR_RTP_VERSION'],
    ['version 3', Uint8Array.from([0xc0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5]), 'ERR_RTP_VERSION'],
    ['CC=15 without CSRCs', Uint8Array.from([0x8f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5, 5, 5, 5]), 'ERR_RTP_BAD_CSRC'],
    ['X with 2 bytes of extension header', Uint8Array.from([0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde]), 'ERR_RTP_BAD_EXTENSION'],
    ['X with length past the end', Uint8Array.from([0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 2, 1, 2, 3, 4]), 'ERR_RTP_BAD_EXTENSION'],
    ['P with count 0', Uint8Array.from([0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5, 5, 0]), 'ERR_RTP_BAD_PADDING'],
    ['P with count beyond the payload', Uint8Array.from([0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5, 5, 4]), 'ERR_RTP_BAD_PADDING'],
    ['P with count into the header (13-byte packet, count 13)', Uint8Array.from([0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 13]), 'ERR_RTP_BAD_PADDING'],
    ['header only', Uint8Array.from([0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]), 'ERR_RTP_EMPTY'],
    ['padding only', Uint8Array.from([0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 3]), 'ERR_RTP_EMPTY'],
    ['CSRC only', Uint8Array.from([0x81, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9]), 'ERR_RTP_EMPTY'],
  ])('%s → %s', (_name, buf, expected) => {
    expect(code(buf)).toBe(expected);
  });

  it('strips exactly the padding count (padding count 1 = only the count byte)', () => {
    const p = parsed(Uint8Array.from([0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7, 8, 1]));
    expect([...p.payload]).toEqual([7, 8]);
  });

  it('flags every truncation of a full packet (CSRC + extension + padding) and never throws', () => {
    const full = serializeRtp({
      payloadType: 8,
      sequenceNumber: 9,
      timestamp: 10,
      ssrc: 11,
      csrcs: [1, 2],
      extension: { profile: 0x1000, data: new Uint8Array(8) },
      paddingBytes: 4,
      payload: new Uint8Array(20).fill(0x55),
    });
    expect(code(full)).toBe('ok');
    const seen = new Set<string>();
    for (let n = 0; n < full.length; n++) {
      const c = code(full.subarray(0, n));
      seen.add(c);
      // a cut packet may still parse when the cut lands inside the payload and the new last
      // byte happens to be a plausible padding count; here every payload byte is 0x55 = 85 > rest
      expect(c).not.toBe('ok');
    }
    expect(seen).toEqual(new Set(['ERR_RTP_TRUNCATED', 'ERR_RTP_BAD_CSRC', 'ERR_RTP_BAD_EXTENSION', 'ERR_RTP_BAD_PADDING']));
  });

  it('never throws on thousands of random buffers and keeps every view in bounds', () => {
    const rand = rng(0x5eed);
    const counts = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rand() * 64);
      const buf = new Uint8Array(len);
      for (let j = 0; j < len; j++) buf[j] = Math.floor(rand() * 256);
      // bias half the cases towards version 2 so the deeper checks are reached
      if (len > 0 && i % 2 === 0) buf[0] = (buf[0]! & 0x3f) | 0x80;
      const r = parseRtp(buf);
      const c = r.ok ? 'ok' : r.code;
      counts.set(c, (counts.get(c) ?? 0) + 1);
      if (r.ok) {
        const p = r.packet;
        expect(p.payload.length).toBeGreaterThan(0);
        expect(p.payload.byteOffset + p.payload.length).toBeLessThanOrEqual(buf.byteOffset + buf.length);
        expect(p.payload.byteOffset).toBeGreaterThanOrEqual(12 + p.csrcCount * 4);
        expect(p.csrcs.length).toBe(p.csrcCount);
      } else {
        expect(RTP_ERROR_CODES).toContain(r.code);
      }
    }
    // the generator reached every outcome
    for (const c of ['ok', ...RTP_ERROR_CODES]) expect(counts.get(c) ?? 0, c).toBeGreaterThan(0);
  });

  it('never throws on bit-flipped valid packets', () => {
    const rand = rng(42);
    const base = serializeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3, csrcs: [4], extension: { profile: 5, data: new Uint8Array(4) }, paddingBytes: 2, payload: new Uint8Array(40) });
    for (let i = 0; i < 3000; i++) {
      const buf = Uint8Array.from(base);
      for (let k = 0; k < 3; k++) {
        const at = Math.floor(rand() * buf.length);
        buf[at] = buf[at]! ^ (1 << Math.floor(rand() * 8));
      }
      const cut = buf.subarray(0, Math.floor(rand() * (buf.length + 1)));
      expect(() => parseRtp(cut)).not.toThrow();
    }
  });
});

describe('isRtcp', () => {
  it('recognises RTCP SR/RR/SDES/BYE/APP and not RTP audio', () => {
    for (const pt of [200, 201, 202, 203, 204]) {
      expect(isRtcp(Uint8Array.from([0x81, pt, 0, 6, 0, 0, 0, 1]))).toBe(true);
    }
    expect(isRtcp(serializeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: PAYLOAD }))).toBe(false);
    expect(isRtcp(serializeRtp({ payloadType: 8, marker: true, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: PAYLOAD }))).toBe(false);
    expect(isRtcp(serializeRtp({ payloadType: 101, marker: true, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: PAYLOAD }))).toBe(false);
    // wrong version or too short
    expect(isRtcp(Uint8Array.from([0x41, 200, 0, 6, 0, 0, 0, 1]))).toBe(false);
    expect(isRtcp(Uint8Array.from([0x81, 200, 0, 6]))).toBe(false);
  });
});

describe('serializeRtp', () => {
  it('rejects out-of-range fields', () => {
    const ok = { payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0, payload: PAYLOAD };
    expect(() => serializeRtp({ ...ok, payloadType: 128 })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, sequenceNumber: 65536 })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, timestamp: 2 ** 32 })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, ssrc: -1 })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, paddingBytes: 256 })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, csrcs: new Array<number>(16).fill(1) })).toThrow(RangeError);
    expect(() => serializeRtp({ ...ok, extension: { profile: 1, data: new Uint8Array(3) } })).toThrow(RangeError);
  });

  it('writes the marker and the version', () => {
    const buf = serializeRtp({ payloadType: 8, marker: true, sequenceNumber: 0, timestamp: 0, ssrc: 0, payload: PAYLOAD, version: 1 });
    expect(buf[0]).toBe(0x40);
    expect(buf[1]).toBe(0x88);
    expect(code(buf)).toBe('ERR_RTP_VERSION');
  });
});
