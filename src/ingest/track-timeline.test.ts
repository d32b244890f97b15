import { describe, expect, it } from 'vitest';
import { decodeG711, encodeG711 } from '../codec/g711.js';
import type { PcmChunk } from '../core/types.js';
import { TrackTimeline } from './track-timeline.js';

/** Deterministic non-silent μ-law audio: a ramp of PCM values encoded to μ-law. */
function mulaw(n: number, seed = 1): Uint8Array {
  const s = new Int16Array(n);
  for (let i = 0; i < n; i++) s[i] = ((i * 97 + seed * 1031) % 16000) - 8000 || 1000;
  return encodeG711('pcmu', s);
}

function zeros(samples: number): Buffer {
  return Buffer.alloc(samples * 2);
}

function concat(chunks: readonly PcmChunk[]): Buffer {
  return Buffer.concat(chunks.map((c) => c.pcm));
}

/** Pushes 20 ms frames cut from `audio` at timestamps start + 20·k; returns the emitted chunks. */
function pushFrames(tl: TrackTimeline, audio: Uint8Array, startMs: number, frameBytes = 160, receivedAt = 1): PcmChunk[] {
  const out: PcmChunk[] = [];
  for (let off = 0, k = 0; off < audio.length; off += frameBytes, k++) {
    out.push(...tl.push(startMs + (k * frameBytes) / 8, audio.subarray(off, off + frameBytes), receivedAt + k));
  }
  return out;
}

describe('TrackTimeline: contiguous frames', () => {
  it('5 × 20 ms frames → exactly one 100 ms chunk (1600 bytes) at 0, decoded exactly', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(800);
    const chunks: PcmChunk[] = [];
    for (let k = 0; k < 5; k++) {
      const got = tl.push(k * 20, audio.subarray(k * 160, k * 160 + 160), 1000 + k);
      if (k < 4) expect(got).toHaveLength(0);
      chunks.push(...got);
    }
    expect(chunks).toHaveLength(1);
    expect(chunks[0]!.pcm).toHaveLength(1600);
    expect(chunks[0]!.startMs).toBe(0);
    expect(chunks[0]!.receivedAt).toBe(1004);
    expect(chunks[0]!.pcm.equals(decodeG711('pcmu', audio))).toBe(true);
    expect(tl.positionMs).toBe(100);
    expect(tl.stats).toMatchObject({ framesIn: 5, framesAccepted: 5, chunksEmitted: 1, gaps: 0, gapFillMs: 0, leadInFillMs: 0 });
  });

  it('2 s of audio → 20 chunks with startMs 0, 100, …, 1900 and no flush tail', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(16000);
    const chunks = pushFrames(tl, audio, 0);
    expect(chunks.map((c) => c.startMs)).toEqual(Array.from({ length: 20 }, (_, i) => i * 100));
    expect(concat(chunks).equals(decodeG711('pcmu', audio))).toBe(true);
    expect(tl.flush()).toBeNull();
  });

  it('emitted chunks are independent buffers (a later push does not overwrite them)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = pushFrames(tl, mulaw(800, 1), 0);
    const copy = Buffer.from(a[0]!.pcm);
    pushFrames(tl, mulaw(800, 2), 100);
    expect(a[0]!.pcm.equals(copy)).toBe(true);
  });

  it('supports other chunk sizes (20 ms → 320 bytes)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu', chunkMs: 20 });
    const chunks = pushFrames(tl, mulaw(480), 0);
    expect(chunks.map((c) => [c.startMs, c.pcm.length])).toEqual([
      [0, 320],
      [20, 320],
      [40, 320],
    ]);
  });
});

describe('TrackTimeline: first-frame offset', () => {
  it('a first frame at 52 ms is preceded by 52 ms of silence (lead-in, not a gap)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(800);
    const chunks = pushFrames(tl, audio, 52);
    expect(tl.positionMs).toBe(152);
    expect(chunks).toHaveLength(1);
    const c = chunks[0]!;
    expect(c.startMs).toBe(0);
    expect(c.pcm.subarray(0, 52 * 16).equals(zeros(416))).toBe(true);
    expect(c.pcm.subarray(52 * 16).equals(decodeG711('pcmu', audio.subarray(0, 800 - 416)))).toBe(true);
    expect(tl.stats).toMatchObject({ leadInFillMs: 52, gaps: 0, gapFillMs: 0 });
  });

  it('a first frame within the threshold (15 ms) is placed at 0 (jitter absorbed)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(800);
    const chunks = pushFrames(tl, audio, 15);
    expect(chunks[0]!.pcm.equals(decodeG711('pcmu', audio))).toBe(true);
    expect(tl.stats).toMatchObject({ leadInFillMs: 0, jitterFrames: 5, lagMs: 15 });
  });
});

describe('TrackTimeline: gaps and jitter', () => {
  it('fills a 60 ms gap with silence up to the timestamp', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(320, 1);
    const b = mulaw(480, 2);
    const out = [...pushFrames(tl, a, 0), ...pushFrames(tl, b, 100)];
    const tail = tl.flush();
    const pcm = Buffer.concat([concat(out), tail?.pcm ?? Buffer.alloc(0)]);
    expect(pcm.equals(Buffer.concat([decodeG711('pcmu', a), zeros(480), decodeG711('pcmu', b)]))).toBe(true);
    expect(tl.stats).toMatchObject({ gaps: 1, gapFillMs: 60 });
    expect(tl.positionMs).toBe(160);
  });

  it('gap exactly at the threshold (20 ms) is absorbed; 21 ms is filled', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    tl.push(0, mulaw(160), 1);
    tl.push(40, mulaw(160), 2); // 20 ms early: absorbed, placed at 20
    expect(tl.positionMs).toBe(40);
    expect(tl.stats).toMatchObject({ gaps: 0, jitterFrames: 1, lagMs: 20 });
    tl.push(81, mulaw(160), 3); // 41 ms after 40: > 20 → filled
    expect(tl.positionMs).toBe(101);
    expect(tl.stats).toMatchObject({ gaps: 1, gapFillMs: 41, lagMs: 0 });
  });

  it('small jitter (5 ms) appends contiguously and never accumulates beyond the threshold', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    // every frame 5 ms late relative to the previous one
    for (let k = 0; k < 10; k++) tl.push(k * 25, mulaw(160, k), k);
    // drift: 5 ms per frame until > 20 ms, then the gap is filled
    expect(tl.stats.gaps).toBeGreaterThan(0);
    expect(225 + 20 - tl.positionMs).toBeLessThanOrEqual(20);
  });

  it('a lost frame followed by another lost frame is filled once the drift exceeds the threshold', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    tl.push(0, mulaw(160), 1);
    tl.push(40, mulaw(160), 2); // one frame lost (20 ms): absorbed
    tl.push(100, mulaw(160), 3); // frames 60 and 80 lost: 60 ms gap incl. the 20 ms absorbed before → filled
    expect(tl.positionMs).toBe(120);
    expect(tl.stats).toMatchObject({ gaps: 1, gapFillMs: 60, jitterFrames: 1, lagMs: 0 });
  });

  it('caps a huge gap: fills maxGapFillMs (rounded up to finish the chunk), then jumps to the timestamp', () => {
    const tl = new TrackTimeline({ codec: 'pcmu', maxGapFillMs: 1000 });
    tl.push(0, mulaw(160), 1); // position 20 ms, 20 ms buffered
    const chunks = tl.push(3_600_000, mulaw(160), 2); // one hour later
    // 1000 ms of silence, rounded up to 1080 ms to complete the 100 ms chunk grid → 11 chunks
    expect(chunks).toHaveLength(11);
    expect(chunks.map((c) => c.startMs)).toEqual(Array.from({ length: 11 }, (_, i) => i * 100));
    expect(chunks.every((c) => c.pcm.length === 1600)).toBe(true);
    expect(concat(chunks).subarray(320).equals(zeros(8640))).toBe(true);
    expect(tl.positionMs).toBe(3_600_020);
    const st = tl.stats;
    expect(st.gapsCapped).toBe(1);
    expect(st.gapFillMs).toBe(1080);
    expect(st.gapSkippedMs).toBe(3_600_000 - 20 - 1080);
    // the next chunk starts at the jump target
    const next = pushFrames(tl, mulaw(640), 3_600_020);
    expect(next[0]!.startMs).toBe(3_600_000);
  });

  it('caps a lead-in too (e.g. a vendor sending absolute timestamps)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu', maxGapFillMs: 200 });
    const chunks = tl.push(1_700_000_000_000, mulaw(160), 1);
    expect(chunks).toHaveLength(2);
    expect(tl.positionMs).toBe(1_700_000_000_020);
    expect(tl.stats).toMatchObject({ gapsCapped: 1, leadInFillMs: 200, gaps: 0 });
  });

  it('fills a gap only slightly above the cap completely (no jump)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu', maxGapFillMs: 1000 });
    tl.push(0, mulaw(160), 1);
    tl.push(1050, mulaw(160), 2); // gap 1030 ms ≤ 1080 (cap rounded up to the chunk)
    expect(tl.stats).toMatchObject({ gapsCapped: 0, gapFillMs: 1030 });
    expect(tl.positionMs).toBe(1070);
  });
});

describe('TrackTimeline: duplicates, late frames, overlaps', () => {
  it('a repeated frame (same timestamp) is a duplicate and is dropped', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(800);
    for (let k = 0; k < 5; k++) {
      const f = a.subarray(k * 160, k * 160 + 160);
      tl.push(k * 20, f, k);
      expect(tl.push(k * 20, f, k)).toHaveLength(0);
    }
    expect(tl.stats).toMatchObject({ duplicateFrames: 5, lateFrames: 0, framesAccepted: 5, chunksEmitted: 1 });
    expect(tl.positionMs).toBe(100);
  });

  it('a reordered old frame is late and dropped; audio is not doubled', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    tl.push(0, mulaw(160, 1), 1);
    tl.push(60, mulaw(160, 2), 2); // 40 ms gap → filled
    expect(tl.push(20, mulaw(160, 3), 3)).toHaveLength(0); // arrives late: dropped
    expect(tl.stats).toMatchObject({ lateFrames: 1, duplicateFrames: 0, gaps: 1 });
    expect(tl.positionMs).toBe(80);
  });

  it('a duplicate of an old frame beyond the recent window counts as late', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    pushFrames(tl, mulaw(160 * 20), 0);
    tl.push(0, mulaw(160), 99);
    expect(tl.stats).toMatchObject({ lateFrames: 1, duplicateFrames: 0 });
  });

  it('an overlapping frame keeps only its new tail', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(160, 1);
    const b = mulaw(160, 2);
    tl.push(0, a, 1);
    tl.push(10, b, 2); // starts 10 ms (80 samples) before the position
    expect(tl.positionMs).toBe(30);
    expect(tl.stats.overlapTrimmedSamples).toBe(80);
    const tail = tl.flush();
    expect(tail!.pcm.equals(Buffer.concat([decodeG711('pcmu', a), decodeG711('pcmu', b.subarray(80))]))).toBe(true);
  });
});

describe('TrackTimeline: odd frame sizes', () => {
  it('10 ms, 30 ms and mixed frames produce the same contiguous PCM', () => {
    const audio = mulaw(2400);
    for (const sizes of [[80], [240], [80, 160, 240, 160]]) {
      const tl = new TrackTimeline({ codec: 'pcmu' });
      const out: PcmChunk[] = [];
      let off = 0;
      for (let k = 0; off < audio.length; k++) {
        const n = Math.min(sizes[k % sizes.length]!, audio.length - off);
        out.push(...tl.push(off / 8, audio.subarray(off, off + n), k));
        off += n;
      }
      expect(out.map((c) => c.startMs)).toEqual([0, 100, 200]);
      expect(concat(out).equals(decodeG711('pcmu', audio))).toBe(true);
      expect(tl.stats).toMatchObject({ gaps: 0, overlapTrimmedSamples: 0, lateFrames: 0 });
    }
  });

  it('7-byte frames (fractional-ms timestamps) straddle chunk boundaries exactly', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(7000);
    const out: PcmChunk[] = [];
    for (let off = 0; off < audio.length; off += 7) out.push(...tl.push(off / 8, audio.subarray(off, off + 7), off));
    expect(out).toHaveLength(8);
    expect(out.map((c) => c.startMs)).toEqual([0, 100, 200, 300, 400, 500, 600, 700]);
    const tail = tl.flush();
    expect(tail!.startMs).toBe(800);
    expect(tail!.pcm).toHaveLength(600 * 2);
    expect(Buffer.concat([concat(out), tail!.pcm]).equals(decodeG711('pcmu', audio))).toBe(true);
    // the frame straddling a boundary stamps both chunks with its receivedAt
    expect(out[0]!.receivedAt).toBe(798);
    expect(tl.positionMs).toBe(875);
  });

  it('7-byte frames with integer-ms timestamps (rounded up) stay contiguous via jitter absorption', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const audio = mulaw(700);
    const out: PcmChunk[] = [];
    for (let off = 0; off < audio.length; off += 7) out.push(...tl.push(Math.ceil(off / 8), audio.subarray(off, off + 7), 0));
    const tail = tl.flush();
    expect(Buffer.concat([concat(out), tail!.pcm]).equals(decodeG711('pcmu', audio))).toBe(true);
    expect(tl.stats.gaps).toBe(0);
  });
});

describe('TrackTimeline: codec', () => {
  it('decodes per frame codec and counts switches', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(400, 1);
    const b = Uint8Array.from({ length: 400 }, (_, i) => (i * 7) & 0xff);
    tl.push(0, a, 1);
    const chunks = tl.push(50, b, 2, 'pcma');
    expect(chunks).toHaveLength(1);
    expect(chunks[0]!.pcm.equals(Buffer.concat([decodeG711('pcmu', a), decodeG711('pcma', b)]))).toBe(true);
    tl.push(100, a.subarray(0, 160), 3); // back to the default codec
    expect(tl.stats.codecSwitches).toBe(2);
    expect(tl.codec).toBe('pcmu');
  });

  it('an A-law timeline decodes A-law', () => {
    const tl = new TrackTimeline({ codec: 'pcma' });
    const b = Uint8Array.from({ length: 800 }, (_, i) => (i * 13) & 0xff);
    const chunks = pushFrames(tl, b, 0);
    expect(chunks[0]!.pcm.equals(decodeG711('pcma', b))).toBe(true);
  });
});

describe('TrackTimeline: flush and padSilence', () => {
  it('flush returns the partial tail (a copy) and the timeline continues from there', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(480);
    pushFrames(tl, a, 0, 160, 7);
    const tail = tl.flush();
    expect(tail).not.toBeNull();
    expect(tail!.startMs).toBe(0);
    expect(tail!.receivedAt).toBe(9);
    expect(tail!.pcm.equals(decodeG711('pcmu', a))).toBe(true);
    expect(tl.flush()).toBeNull();
    expect(tl.positionMs).toBe(60);
    const b = mulaw(800, 3);
    const next = pushFrames(tl, b, 60);
    expect(next).toHaveLength(1);
    expect(next[0]!.startMs).toBe(60);
    expect(next[0]!.pcm.equals(decodeG711('pcmu', b))).toBe(true);
    expect(tail!.pcm.equals(decodeG711('pcmu', a))).toBe(true);
  });

  it('flush on an empty timeline returns null', () => {
    expect(new TrackTimeline({ codec: 'pcmu' }).flush()).toBeNull();
  });

  it('padSilence advances the timeline; real frames for the padded span are then late or trimmed', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    pushFrames(tl, mulaw(800), 0);
    const pad = tl.padSilence(200, 5000);
    expect(pad.map((c) => [c.startMs, c.receivedAt])).toEqual([
      [100, 5000],
      [200, 5000],
    ]);
    expect(concat(pad).equals(zeros(1600))).toBe(true);
    expect(tl.positionMs).toBe(300);
    // the stalled frames 100..280 arrive now: all behind the position → dropped
    for (let ts = 100; ts < 300; ts += 20) expect(tl.push(ts, mulaw(160), 6000)).toHaveLength(0);
    expect(tl.stats.lateFrames).toBe(10);
    // a frame straddling the position keeps its tail
    tl.push(290, mulaw(160), 6001);
    expect(tl.stats.overlapTrimmedSamples).toBe(80);
    expect(tl.positionMs).toBe(310);
    expect(tl.stats.paddedSilenceMs).toBe(200);
  });

  it('padSilence before any frame starts the timeline; the first frame then only fills the rest', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    tl.padSilence(30, 1);
    tl.push(52, mulaw(160), 2);
    expect(tl.stats).toMatchObject({ paddedSilenceMs: 30, gaps: 1, gapFillMs: 22, leadInFillMs: 0 });
    expect(tl.positionMs).toBe(72);
  });

  it('padSilence(0) or negative does nothing', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    expect(tl.padSilence(0, 1)).toHaveLength(0);
    expect(tl.padSilence(-5, 1)).toHaveLength(0);
    expect(tl.positionMs).toBe(0);
  });
});

describe('TrackTimeline: receivedAt and input checks', () => {
  it("a chunk's receivedAt is the newest receivedAt of the frames in it", () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    const a = mulaw(800);
    const arrival = [10, 50, 30, 40, 20];
    const out: PcmChunk[] = [];
    for (let k = 0; k < 5; k++) out.push(...tl.push(k * 20, a.subarray(k * 160, k * 160 + 160), arrival[k]!));
    expect(out[0]!.receivedAt).toBe(50);
  });

  it('ignores empty frames and bad timestamps (counted)', () => {
    const tl = new TrackTimeline({ codec: 'pcmu' });
    expect(tl.push(0, new Uint8Array(0), 1)).toHaveLength(0);
    expect(tl.push(-20, mulaw(160), 1)).toHaveLength(0);
    expect(tl.push(Number.NaN, mulaw(160), 1)).toHaveLength(0);
    expect(tl.push(Number.POSITIVE_INFINITY, mulaw(160), 1)).toHaveLength(0);
    expect(tl.stats).toMatchObject({ framesIn: 4, framesAccepted: 0, emptyFrames: 1, invalidFrames: 3 });
    expect(tl.positionMs).toBe(0);
  });

  it('rejects invalid options', () => {
    expect(() => new TrackTimeline({ codec: 'pcmu', chunkMs: 0 })).toThrow(RangeError);
    expect(() => new TrackTimeline({ codec: 'pcmu', chunkMs: 12.5 })).toThrow(RangeError);
    expect(() => new TrackTimeline({ codec: 'pcmu', gapFillThresholdMs: -1 })).toThrow(RangeError);
    expect(() => new TrackTimeline({ codec: 'pcmu', maxGapFillMs: Number.NaN })).toThrow(RangeError);
  });
});
