import { describe, expect, it } from 'vitest';
import type { AsrStreamRunner } from '../asr/session-runner.js';
import { MULAW_SILENCE } from '../codec/g711.js';
import type { PcmChunk } from '../core/types.js';
import { createMetrics } from '../observability/metrics.js';
import { SpeakerStream } from './speaker-stream.js';

function fakeRunner() {
  const chunks: PcmChunk[] = [];
  const runner = {
    start: () => undefined,
    push: (c: PcmChunk) => void chunks.push(c),
    finish: async () => undefined,
    abort: () => undefined,
    status: 'active',
    stats: {},
  } as unknown as AsrStreamRunner;
  return { runner, chunks };
}

function stream(now: { t: number }) {
  const { runner, chunks } = fakeRunner();
  const metrics = createMetrics();
  const s = new SpeakerStream({
    role: 'customer',
    track: 'inbound',
    codec: 'pcmu',
    runner,
    metrics,
    source: 'twilio',
    keepaliveAfterMs: 3000,
    now: () => now.t,
  });
  return { s, chunks, metrics };
}

const frame = new Uint8Array(160).fill(MULAW_SILENCE);

describe('SpeakerStream', () => {
  it('forwards 100 ms chunks placed on the call timeline', () => {
    const now = { t: 1000 };
    const { s, chunks } = stream(now);
    for (let i = 0; i < 10; i++) s.pushFrame(i * 20, frame, 'pcmu', now.t);
    expect(chunks.map((c) => [c.startMs, c.pcm.length])).toEqual([
      [0, 1600],
      [100, 1600],
    ]);
  });

  it('sends silence when the line goes quiet, so the recogniser never starves', () => {
    const now = { t: 0 };
    const { s, chunks, metrics } = stream(now);
    for (let i = 0; i < 5; i++) s.pushFrame(i * 20, frame, 'pcmu', now.t);
    now.t = 2999;
    s.tick(now.t);
    expect(chunks).toHaveLength(1); // not yet: below keepaliveAfterMs
    now.t = 3000;
    s.tick(now.t);
    // 3 s of silence padded in real time: the timeline advanced from 100 ms to 3100 ms
    expect(s.positionMs).toBe(3100);
    expect(chunks.at(-1)!.startMs + chunks.at(-1)!.pcm.length / 16).toBe(3100);
    now.t = 3500;
    s.tick(now.t);
    expect(s.positionMs).toBe(3100); // 500 ms since the last pad: still under the threshold
    now.t = 6100;
    s.tick(now.t);
    expect(s.positionMs).toBe(6200);
    // a real frame for audio already covered by padding is late and counted as dropped
    s.pushFrame(3000, frame, 'pcmu', now.t);
    s.tick(now.t);
    return metrics.registry.getSingleMetricAsString('callscribe_ingest_frames_dropped_total').then((text) => {
      expect(text).toContain('reason="ERR_INGEST_LATE_FRAME"} 1');
    });
  });

  it('reports gap fill and duplicates to Prometheus', async () => {
    const now = { t: 0 };
    const { s, metrics } = stream(now);
    s.pushFrame(0, frame, 'pcmu', 0);
    s.pushFrame(0, frame, 'pcmu', 0); // duplicate
    s.pushFrame(520, frame, 'pcmu', 0); // 500 ms gap
    s.tick(1);
    expect(await metrics.registry.getSingleMetricAsString('callscribe_ingest_gap_fill_ms_total')).toContain('} 500');
    expect(await metrics.registry.getSingleMetricAsString('callscribe_ingest_frames_dropped_total')).toContain(
      'reason="ERR_INGEST_DUPLICATE_FRAME"} 1',
    );
  });

  it('flushes the partial last chunk on finish', async () => {
    const now = { t: 0 };
    const { s, chunks } = stream(now);
    for (let i = 0; i < 7; i++) s.pushFrame(i * 20, frame, 'pcmu', 0);
    await s.finish();
    expect(chunks.map((c) => [c.startMs, c.pcm.length])).toEqual([
      [0, 1600],
      [100, 640],
    ]);
    s.pushFrame(140, frame, 'pcmu', 0); // after finish: ignored
    expect(chunks).toHaveLength(2);
  });
});
