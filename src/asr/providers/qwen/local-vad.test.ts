import { describe, expect, it } from 'vitest';
import { LocalTurnDetector, type LocalVadOptions } from './local-vad.js';

const RATE = 8000;
const BYTES_PER_MS = 16;

/** PCM16LE at 8 kHz: `ms` of a square wave of the given amplitude (RMS = amplitude). */
function tone(ms: number, amplitude = 2000): Buffer {
  const b = Buffer.alloc(ms * BYTES_PER_MS);
  for (let i = 0; i < b.length / 2; i++) b.writeInt16LE(i % 2 === 0 ? amplitude : -amplitude, i * 2);
  return b;
}
const silence = (ms: number) => Buffer.alloc(ms * BYTES_PER_MS);

interface End {
  startMs: number;
  endMs: number;
  /** Absolute stream position of the turn end, bytes. */
  at: number;
}

/** Pushes the chunks in order; returns the turn ends with absolute byte positions. */
function run(chunks: Buffer[], opts: Partial<LocalVadOptions> = {}): { ends: End[]; vad: LocalTurnDetector } {
  const vad = new LocalTurnDetector({ sampleRateHz: RATE, thresholdRms: 300, maxSilenceMs: 400, ...opts });
  const ends: End[] = [];
  let base = 0;
  for (const c of chunks) {
    vad.push(c, { onTurnEnd: (startMs, endMs, byteOffset) => ends.push({ startMs, endMs, at: base + byteOffset }) });
    base += c.length;
  }
  return { ends, vad };
}

/** The same audio cut into chunks of `size` bytes. */
function rechunk(audio: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < audio.length; i += size) out.push(audio.subarray(i, i + size));
  return out;
}

describe('LocalTurnDetector', () => {
  it('finds each sentence: first voiced window to end of last, ended after maxSilenceMs', () => {
    const audio = Buffer.concat([silence(300), tone(1000), silence(500), tone(700), silence(1000)]);
    const { ends, vad } = run(rechunk(audio, 1600));
    expect(ends).toEqual([
      { startMs: 300, endMs: 1300, at: (1300 + 400) * BYTES_PER_MS },
      { startMs: 1800, endMs: 2500, at: (2500 + 400) * BYTES_PER_MS },
    ]);
    expect(vad.inTurn).toBe(false);
    expect(vad.elapsedMs).toBe(3500);
    expect(vad.forcedEnds).toBe(0);
  });

  it('a pause shorter than maxSilenceMs does not end the turn', () => {
    const audio = Buffer.concat([tone(500), silence(390), tone(500), silence(400)]);
    expect(run([audio]).ends).toEqual([{ startMs: 0, endMs: 1390, at: 1790 * BYTES_PER_MS }]);
    // the same with a longer silence threshold: still one turn, ended later
    expect(run([audio, silence(400)], { maxSilenceMs: 800 }).ends).toEqual([{ startMs: 0, endMs: 1390, at: 2190 * BYTES_PER_MS }]);
  });

  it('silence alone, or quiet noise under the threshold, never makes a turn (no empty commits)', () => {
    const { ends, vad } = run([silence(5000), tone(3000, 250), silence(1000)]);
    expect(ends).toEqual([]);
    expect(vad.inTurn).toBe(false);
    expect(vad.flush()).toBeNull();
  });

  it('does not depend on how the audio is chunked (odd sizes, samples split across chunks)', () => {
    const audio = Buffer.concat([silence(120), tone(830), silence(610), tone(250), silence(450)]);
    const whole = run([audio]).ends;
    expect(whole).toHaveLength(2);
    for (const size of [1, 3, 161, 1599, 1600, 3201]) expect(run(rechunk(audio, size)).ends).toEqual(whole);
  });

  it('caps a turn at maxTurnMs of continuous speech and starts the next one right after', () => {
    const { ends, vad } = run(rechunk(Buffer.concat([silence(100), tone(2500), silence(500)]), 1600), { maxTurnMs: 1000 });
    expect(ends).toEqual([
      { startMs: 100, endMs: 1100, at: 1100 * BYTES_PER_MS },
      { startMs: 1100, endMs: 2100, at: 2100 * BYTES_PER_MS },
      { startMs: 2100, endMs: 2600, at: 3000 * BYTES_PER_MS },
    ]);
    expect(vad.forcedEnds).toBe(2);
  });

  it('the cap counts from the turn start, trailing silence included', () => {
    // 800 ms speech + 300 ms pause: the pause would not end the turn, the 1000 ms cap does
    const { ends } = run([tone(800), silence(300), tone(100), silence(500)], { maxTurnMs: 1000 });
    expect(ends[0]).toEqual({ startMs: 0, endMs: 800, at: 1000 * BYTES_PER_MS });
    expect(ends[1]).toEqual({ startMs: 1100, endMs: 1200, at: 1600 * BYTES_PER_MS });
  });

  it('60 s cap by default', () => {
    const { ends } = run(rechunk(tone(61_000), 1600));
    expect(ends).toEqual([{ startMs: 0, endMs: 60_000, at: 60_000 * BYTES_PER_MS }]);
  });

  it('flush() ends the open turn at its last voiced window, once', () => {
    const { ends, vad } = run([silence(200), tone(600), silence(100)]);
    expect(ends).toEqual([]);
    expect(vad.inTurn).toBe(true);
    expect(vad.flush()).toEqual({ startMs: 200, endMs: 800 });
    expect(vad.inTurn).toBe(false);
    expect(vad.flush()).toBeNull();
  });

  it('handles 16 kHz (160-sample windows)', () => {
    const b = Buffer.alloc(32 * 1500);
    for (let i = 32 * 500; i < 32 * 1000; i += 2) b.writeInt16LE(i % 4 === 0 ? 1500 : -1500, i);
    const vad = new LocalTurnDetector({ sampleRateHz: 16_000, thresholdRms: 300, maxSilenceMs: 400 });
    const ends: number[][] = [];
    vad.push(b, { onTurnEnd: (s, e, o) => ends.push([s, e, o]) });
    expect(ends).toEqual([[500, 1000, 32 * 1400]]);
  });
});
