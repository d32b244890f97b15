import { describe, expect, it } from 'vitest';
import { PCM_BYTES_PER_MS, type PcmChunk } from '../core/types.js';
import { chunkEndMs, ReceivedMarks, ReplayBuffer, toSendFrames } from './replay-buffer.js';
import { TaskTimeline } from './task-timeline.js';
import { QuickFailureTracker } from './quick-failure.js';

/** PCM whose every sample encodes its call-timeline sample index (unique below 65 536). */
function signal(startMs: number, ms: number): Buffer {
  const n = ms * (PCM_BYTES_PER_MS / 2);
  const first = startMs * (PCM_BYTES_PER_MS / 2);
  const buf = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) buf.writeInt16LE((((first + i) * 7919) % 65536) - 32768, i * 2);
  return buf;
}

function chunk(startMs: number, ms: number, receivedAt = 0): PcmChunk {
  return { pcm: signal(startMs, ms), startMs, receivedAt };
}

function concat(chunks: readonly PcmChunk[]): Buffer {
  return Buffer.concat(chunks.map((c) => c.pcm));
}

describe('ReplayBuffer', () => {
  it('keeps everything under the bound', () => {
    const rb = new ReplayBuffer(1000);
    for (let t = 0; t < 1000; t += 100) expect(rb.push(chunk(t, 100))).toEqual([]);
    expect(rb.durationMs).toBe(1000);
    expect(rb.startMs).toBe(0);
  });

  it('drops the oldest audio over the bound, slicing inside a chunk, and reports it', () => {
    const rb = new ReplayBuffer(1000);
    for (let t = 0; t < 1000; t += 100) rb.push(chunk(t, 100));
    const dropped = rb.push(chunk(1000, 150));
    expect(dropped).toEqual([
      { startMs: 0, durationMs: 100 },
      { startMs: 100, durationMs: 50 },
    ]);
    expect(rb.durationMs).toBe(1000);
    expect(rb.startMs).toBe(150);
    expect(concat(rb.snapshot()).equals(signal(150, 1000))).toBe(true);
  });

  it('trims to start exactly at a position inside a chunk (sample aligned)', () => {
    const rb = new ReplayBuffer(10_000);
    for (let t = 0; t < 1000; t += 100) rb.push(chunk(t, 100));
    expect(rb.trimBefore(437)).toBe(437);
    expect(rb.startMs).toBe(437);
    const snap = rb.snapshot();
    expect(snap[0]?.pcm.length).toBe(63 * PCM_BYTES_PER_MS);
    expect(concat(snap).equals(signal(437, 563))).toBe(true);
  });

  it('trims whole chunks on a boundary and empties when trimmed past the end', () => {
    const rb = new ReplayBuffer(10_000);
    for (let t = 0; t < 500; t += 100) rb.push(chunk(t, 100));
    rb.trimBefore(300);
    expect(rb.startMs).toBe(300);
    expect(rb.snapshot()).toHaveLength(2);
    rb.trimBefore(900);
    expect(rb.isEmpty).toBe(true);
    expect(rb.durationMs).toBe(0);
  });

  it('keeps 2-byte alignment for fractional positions', () => {
    const rb = new ReplayBuffer(10_000);
    rb.push(chunk(0, 100));
    rb.trimBefore(10.06); // nearest sample: 10.0 ms (80 samples)
    expect(rb.snapshot()[0]!.pcm.length % 2).toBe(0);
    expect(rb.startMs).toBe(10);
  });
});

describe('toSendFrames', () => {
  it('merges contiguous 20 ms chunks into 100 ms frames in order', () => {
    const chunks = [0, 20, 40, 60, 80, 100, 120].map((t) => chunk(t, 20));
    const frames = toSendFrames(chunks, 1600);
    expect(frames.map((f) => [f.startMs, f.pcm.length])).toEqual([
      [0, 1600],
      [100, 640],
    ]);
    expect(Buffer.concat(frames.map((f) => f.pcm)).equals(signal(0, 140))).toBe(true);
  });

  it('splits large chunks and never merges across a gap', () => {
    const frames = toSendFrames([chunk(0, 250), chunk(400, 50)], 1600);
    expect(frames.map((f) => [f.startMs, f.pcm.length / PCM_BYTES_PER_MS])).toEqual([
      [0, 100],
      [100, 100],
      [200, 50],
      [400, 50],
    ]);
  });
});

describe('ReceivedMarks', () => {
  it('finds the chunk holding the audio just before a position', () => {
    const marks = new ReceivedMarks(100);
    for (let t = 0; t < 500; t += 100) marks.add(chunk(t, 100, 10_000 + t));
    expect(marks.lookup(250)).toBe(10_200);
    expect(marks.lookup(300)).toBe(10_200); // audio ending at 300 is in [200, 300)
    expect(marks.lookup(301)).toBe(10_300);
    expect(marks.lookup(900)).toBe(10_400); // past the newest audio: newest mark
  });

  it('is bounded and prunes old marks', () => {
    const marks = new ReceivedMarks(3);
    for (let t = 0; t < 500; t += 100) marks.add(chunk(t, 100, t));
    expect(marks.size).toBe(3);
    expect(marks.lookup(50)).toBeNull();
    marks.pruneBefore(400);
    expect(marks.size).toBe(1);
    expect(marks.lookup(450)).toBe(400);
  });
});

describe('TaskTimeline', () => {
  it('is a single offset for contiguous audio', () => {
    const tl = new TaskTimeline();
    expect(tl.toCallMs(0, 'start')).toBeNull();
    tl.noteSent(1000, 100);
    tl.noteSent(1100, 100);
    expect(tl.offsetMs).toBe(1000);
    expect(tl.sentMs).toBe(200);
    expect(tl.toCallMs(150, 'start')).toBe(1150);
    expect(tl.toCallMs(200, 'end')).toBe(1200);
  });

  it('maps times after a gap with a breakpoint', () => {
    const tl = new TaskTimeline();
    tl.noteSent(0, 100);
    tl.noteSent(500, 100); // 400 ms gap on the call timeline
    expect(tl.toCallMs(50, 'start')).toBe(50);
    expect(tl.toCallMs(100, 'end')).toBe(100); // end of the first segment
    expect(tl.toCallMs(100, 'start')).toBe(500); // start of the second
    expect(tl.toCallMs(150, 'end')).toBe(550);
  });
});

describe('QuickFailureTracker', () => {
  it('counts quick failures and resets on a healthy connection', () => {
    const t = new QuickFailureTracker(30_000);
    expect(t.record(null)).toBe(false);
    expect(t.record({ livedMs: 100, deliveredFinal: false })).toBe(false);
    expect(t.consecutive).toBe(2);
    expect(t.record({ livedMs: 100, deliveredFinal: true })).toBe(true);
    expect(t.consecutive).toBe(0);
    expect(t.record({ livedMs: 30_000, deliveredFinal: false })).toBe(true);
  });
});

it('chunkEndMs', () => {
  expect(chunkEndMs(chunk(40, 20))).toBe(60);
});
