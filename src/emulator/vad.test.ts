import { describe, expect, it } from 'vitest';
import { appendToTail, EnergyVad, SEGMENT_END, SEGMENT_NONE, SEGMENT_START, SpeechSegmenter, segmentPcm } from './vad.js';

const RATE = 8000;

/** PCM16LE: a 440 Hz tone of `amp` peak (RMS = amp/√2) for `ms`. */
function tone(ms: number, amp: number): Buffer {
  const n = (ms * RATE) / 1000;
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(amp * Math.sin((2 * Math.PI * 440 * i) / RATE)), i * 2);
  return b;
}
const silence = (ms: number): Buffer => Buffer.alloc((ms * RATE * 2) / 1000);

// speech 500..1500, 1800..2500, 3500..3900 (ms)
const PCM = Buffer.concat([silence(500), tone(1000, 3000), silence(300), tone(700, 3000), silence(1000), tone(400, 3000), silence(900)]);

describe('EnergyVad + SpeechSegmenter', () => {
  it('cuts speech at max_sentence_silence and ends a segment at its last voiced window', () => {
    expect(segmentPcm(PCM, { sampleRateHz: RATE, thresholdRms: 300, maxSilenceMs: 800 })).toEqual([
      { startMs: 500, endMs: 2500 },
      { startMs: 3500, endMs: 3900 },
    ]);
    expect(segmentPcm(PCM, { sampleRateHz: RATE, thresholdRms: 300, maxSilenceMs: 200 })).toEqual([
      { startMs: 500, endMs: 1500 },
      { startMs: 1800, endMs: 2500 },
      { startMs: 3500, endMs: 3900 },
    ]);
  });

  it('gives the same windows whatever the chunking (odd sizes, samples split across chunks)', () => {
    const whole: boolean[] = [];
    new EnergyVad({ sampleRateHz: RATE, thresholdRms: 300 }).push(PCM, {
      onVadWindow: (v) => (whole.push(v), true),
    });
    const pieces: boolean[] = [];
    const indexes: number[] = [];
    const vad = new EnergyVad({ sampleRateHz: RATE, thresholdRms: 300 });
    const sizes = [1, 3, 7, 160, 161, 999, 2, 1600, 5];
    for (let off = 0, k = 0; off < PCM.length; k++) {
      const size = sizes[k % sizes.length]!;
      vad.push(PCM.subarray(off, off + size), { onVadWindow: (v, i) => (pieces.push(v), indexes.push(i), true) });
      off += size;
    }
    expect(whole).toHaveLength(PCM.length / 160);
    expect(pieces).toEqual(whole);
    expect(indexes).toEqual(whole.map((_, i) => i));
    expect(vad.windows).toBe(whole.length);
  });

  it('compares the window RMS with the threshold', () => {
    const quiet = Buffer.concat([tone(500, 400), silence(1000)]); // RMS ≈ 283
    const loud = Buffer.concat([tone(500, 450), silence(1000)]); // RMS ≈ 318
    expect(segmentPcm(quiet, { sampleRateHz: RATE, thresholdRms: 300, maxSilenceMs: 800 })).toEqual([]);
    expect(segmentPcm(loud, { sampleRateHz: RATE, thresholdRms: 300, maxSilenceMs: 800 })).toEqual([{ startMs: 0, endMs: 500 }]);
    expect(segmentPcm(loud, { sampleRateHz: RATE, thresholdRms: 400, maxSilenceMs: 800 })).toEqual([]);
  });

  it('uses 10 ms windows at other sample rates', () => {
    const vad = new EnergyVad({ sampleRateHz: 16000, thresholdRms: 300 });
    expect(vad.windowSamples).toBe(160);
    let n = 0;
    vad.push(Buffer.alloc(16000 * 2), { onVadWindow: () => (n++, true) });
    expect(n).toBe(100);
  });

  it('stops mid-chunk when the sink says so', () => {
    const vad = new EnergyVad({ sampleRateHz: RATE, thresholdRms: 300 });
    let n = 0;
    expect(vad.push(silence(100), { onVadWindow: () => ++n < 3 })).toBe(false);
    expect(n).toBe(3);
  });

  it('tracks the silence run and supports a forced end', () => {
    const seg = new SpeechSegmenter(10, 30);
    expect(seg.onWindow(false, 0)).toBe(SEGMENT_NONE);
    expect(seg.silenceRunMs).toBe(10);
    expect(seg.onWindow(true, 1)).toBe(SEGMENT_START);
    expect(seg.segmentStartMs).toBe(10);
    expect(seg.silenceRunMs).toBe(0);
    expect(seg.onWindow(true, 2)).toBe(SEGMENT_NONE);
    seg.forceEnd();
    expect(seg.onWindow(true, 3)).toBe(SEGMENT_START);
    expect(seg.segmentStartMs).toBe(30);
    const events = [4, 5, 6].map((i) => seg.onWindow(false, i));
    expect(events).toEqual([SEGMENT_NONE, SEGMENT_NONE, SEGMENT_END]);
    expect(seg.lastVoicedEndMs).toBe(40);
  });
});

describe('appendToTail', () => {
  it('keeps the last bytes of the stream whatever the chunk sizes', () => {
    const stream = Buffer.from(Array.from({ length: 50 }, (_, i) => i));
    for (const sizes of [[50], [3, 7, 40], [1, 1, 1, 47], [9, 9, 9, 9, 9, 5]]) {
      const tail = Buffer.alloc(8);
      let len = 0;
      let at = 0;
      for (const n of sizes) {
        len = appendToTail(tail, len, stream.subarray(at, at + n));
        at += n;
        expect(tail.subarray(0, len)).toEqual(stream.subarray(Math.max(0, at - 8), at));
      }
    }
  });
});
