import { describe, expect, it, vi } from 'vitest';
import { AppError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { PCM_BYTES_PER_MS, type Utterance } from '../core/types.js';
import { silentLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { AsrStreamRunner, type AsrStreamRunnerOptions, type AsrStreamStatusUpdate } from './session-runner.js';
import { unlimitedStartLimiter, type TaskStartLimiter } from './start-limiter.js';
import {
  authError,
  disconnectedError,
  fakeFinal,
  fakeInterim,
  FakeAsrProvider,
  throttledError,
  type FakeAsrOptions,
} from './testing/fake-asr.js';

/** PCM whose samples encode their call-timeline index (unique for the first 8.19 s). */
function signal(startMs: number, ms: number): Buffer {
  const perMs = PCM_BYTES_PER_MS / 2;
  const buf = Buffer.alloc(ms * PCM_BYTES_PER_MS);
  for (let i = 0; i < ms * perMs; i++) buf.writeInt16LE((((startMs * perMs + i) * 7919) % 65536) - 32768, i * 2);
  return buf;
}

/** Wall time the chunk at call time t "arrived" (test convention). */
const RECEIVED_BASE = 1_700_000_000_000;

function pushAudio(runner: AsrStreamRunner, fromMs: number, toMs: number, chunkMs = 100): void {
  for (let t = fromMs; t < toMs; t += chunkMs) {
    const ms = Math.min(chunkMs, toMs - t);
    runner.push({ pcm: signal(t, ms), startMs: t, receivedAt: RECEIVED_BASE + t + ms });
  }
}

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const json = await metrics.registry.getMetricsAsJSON();
  const m = json.find((x) => x.name === name);
  if (!m) throw new Error(`no metric ${name}`);
  let sum = 0;
  for (const v of m.values) {
    const l = v.labels as Record<string, string | number | undefined>;
    if (Object.entries(labels).every(([k, val]) => l[k] === val)) {
      if ('metricName' in v && typeof v.metricName === 'string' && !v.metricName.endsWith('_sum')) continue;
      sum += v.value;
    }
  }
  return sum;
}

interface Harness {
  readonly fake: FakeAsrProvider;
  readonly runner: AsrStreamRunner;
  readonly metrics: Metrics;
  readonly utterances: Utterance[];
  readonly statuses: AsrStreamStatusUpdate[];
  readonly clock: Clock & { wall: number; mono: number };
}

function setup(fakeOpts: FakeAsrOptions = {}, over: Partial<AsrStreamRunnerOptions> = {}): Harness {
  const fake = new FakeAsrProvider(fakeOpts);
  const metrics = createMetrics();
  const utterances: Utterance[] = [];
  const statuses: AsrStreamStatusUpdate[] = [];
  const clock = {
    wall: RECEIVED_BASE + 100_000,
    mono: 0,
    now() {
      return this.wall;
    },
    monotonicMs() {
      return this.mono;
    },
  };
  const runner = new AsrStreamRunner({
    provider: fake,
    connectOptions: { model: 'fake-8k', sampleRateHz: 8000, disfluencyRemoval: false, maxSentenceSilenceMs: 800 },
    limiter: unlimitedStartLimiter,
    callId: 'call-1',
    role: 'customer',
    track: 'inbound',
    metrics,
    logger: silentLogger,
    clock,
    maxRetries: 3,
    retryMinMs: 1,
    retryMaxMs: 5,
    replayBufferMs: 60_000,
    finishTimeoutMs: 100,
    onUtterance: (u) => utterances.push(u),
    onStatus: (s) => statuses.push(s),
    ...over,
  });
  return { fake, runner, metrics, utterances, statuses, clock };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('AsrStreamRunner — happy path', () => {
  it('streams audio, maps finals onto the call timeline and finishes with the last final', async () => {
    const h = setup({
      script: () => ({
        events: [
          { atMs: 100, event: fakeInterim(200, 'hel') },
          {
            atMs: 1300,
            event: fakeFinal(200, 1000, 'hello', {
              words: [{ startMs: 200, endMs: 600, text: 'hel', punctuation: '' }, { startMs: 600, endMs: 1000, text: 'lo', punctuation: '.' }],
              emotion: { raw: 'negative', confidence: 0.8 },
            }),
          },
          { atMs: 'finish', event: fakeFinal(1500, 2800, 'world') },
        ],
      }),
    });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 3000);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    await h.runner.finish();

    expect(h.statuses.map((s) => s.status)).toEqual(['pending', 'active', 'finished']);
    expect(h.statuses.at(-1)).toEqual({ status: 'finished', errorCode: null, errorMessage: null, reconnects: 0, utterances: 2 });
    const conn = h.fake.connection(1);
    expect(conn.finishCalls).toBe(1);
    expect(conn.closed).toBe(true);
    expect(conn.audio.equals(signal(0, 3000))).toBe(true);
    expect(conn.frames.every((f) => f.length === 1600)).toBe(true);

    const [u1, u2] = h.utterances;
    expect(u1).toMatchObject({
      callId: 'call-1',
      role: 'customer',
      track: 'inbound',
      seq: 1,
      startMs: 200,
      endMs: 1000,
      text: 'hello',
      model: 'fake-8k',
      asrTaskId: 'fake-task-1',
      emotion: { raw: 'negative', provider: 'fake-8k', confidence: 0.8, valence: -1 },
      words: [
        { startMs: 200, endMs: 600, text: 'hel', punctuation: '' },
        { startMs: 600, endMs: 1000, text: 'lo', punctuation: '.' },
      ],
    });
    // the audio ending at 1000 ms was the chunk [900, 1000), received at base + 1000
    expect(u1?.timing).toEqual({ audioEndAt: RECEIVED_BASE + 1000, finalReceivedAt: h.clock.wall });
    expect(u2).toMatchObject({ seq: 2, startMs: 1500, endMs: 2800, text: 'world', emotion: null });
    expect(h.runner.stats).toMatchObject({ tasks: 1, reconnects: 0, utterances: 2, audioSentMs: 3000, replayDroppedMs: 0 });
    expect(await metricValue(h.metrics, 'callscribe_asr_audio_sent_ms_total')).toBe(3000);
    expect(await metricValue(h.metrics, 'callscribe_asr_sessions_total', { outcome: 'finished' })).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_active_sessions')).toBe(0);
  });

  it('exposes interims on the call timeline when asked, never as utterances', async () => {
    const interims: { startMs: number; text: string }[] = [];
    const h = setup(
      { script: (n) => (n === 1 ? { events: [{ atMs: 500, event: fakeInterim(300, 'hi') }], dropAfterBytes: 800 * PCM_BYTES_PER_MS } : { events: [{ atMs: 100, event: fakeInterim(50, 'again') }] }) },
      { onInterim: (i) => interims.push({ startMs: i.startMs, text: i.text }) },
    );
    h.runner.start();
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(interims).toHaveLength(2));
    expect(interims).toEqual([
      { startMs: 300, text: 'hi' },
      { startMs: 50, text: 'again' }, // no final yet: the replay (and task offset) starts at 0
    ]);
    expect(h.utterances).toHaveLength(0);
    h.runner.abort();
  });

  it('buffers audio pushed before the connection is up and sends it first', async () => {
    const h = setup({ connectDelayMs: 20 });
    h.runner.start();
    pushAudio(h.runner, 0, 500, 20);
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(1));
    pushAudio(h.runner, 500, 700, 20);
    const conn = h.fake.connection(1);
    expect(conn.audio.equals(signal(0, 700))).toBe(true);
    // the 25 buffered 20 ms chunks went out as 100 ms frames
    expect(conn.frames.slice(0, 5).every((f) => f.length === 1600)).toBe(true);
    await h.runner.finish();
    expect(h.runner.status).toBe('finished');
  });
});

describe('AsrStreamRunner — replay and reconnect', () => {
  it('after a drop mid-sentence resends exactly the audio since the last final, on the call timeline', async () => {
    const h = setup({
      script: (n) =>
        n === 1
          ? { events: [{ atMs: 1200, event: fakeFinal(100, 1000, 'one') }], dropAfterBytes: 2000 * PCM_BYTES_PER_MS }
          : { events: [{ atMs: 'finish', event: fakeFinal(200, 1500, 'two') }] },
    });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1500);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    pushAudio(h.runner, 1500, 3000); // the connection drops at 2000 ms of audio
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(2));
    pushAudio(h.runner, 3000, 3500); // live on the new connection
    await h.runner.finish();

    const c1 = h.fake.connection(1);
    const c2 = h.fake.connection(2);
    expect(c1.audio.equals(signal(0, 2000))).toBe(true);
    // everything since the end of the last final (1000 ms), then the live audio, once
    expect(c2.audio.equals(signal(1000, 2500))).toBe(true);
    expect(h.utterances.map((u) => [u.seq, u.startMs, u.endMs, u.text, u.asrTaskId])).toEqual([
      [1, 100, 1000, 'one', 'fake-task-1'],
      [2, 1200, 2500, 'two', 'fake-task-2'], // task time + offset 1000
    ]);
    expect(h.runner.status).toBe('finished');
    // 3000 ms went to the first connection (it died at 2000 ms, unnoticed until onError), 2500 ms to the second
    expect(h.runner.stats).toMatchObject({ reconnects: 1, tasks: 2, utterances: 2, audioSentMs: 3000 + 2500 });
    expect(await metricValue(h.metrics, 'callscribe_asr_reconnects_total', { reason: 'ERR_ASR_DISCONNECTED' })).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_errors_total', { code: 'ERR_ASR_DISCONNECTED' })).toBe(1);
    expect(h.statuses.map((s) => s.status)).toEqual(['pending', 'active', 'finished']);
  });

  it('never emits a duplicate after a reconnect and keeps seq gap-free', async () => {
    const h = setup({
      script: (n) =>
        n === 1
          ? { events: [{ atMs: 1100, event: fakeFinal(0, 1000, 'one') }], dropAfterBytes: 1500 * PCM_BYTES_PER_MS }
          : {
              events: [
                // a misbehaving recogniser repeating the already delivered sentence (ends at call 1000)
                { atMs: 100, event: fakeFinal(-1000, 0, 'one again') },
                { atMs: 700, event: fakeFinal(100, 600, 'two') },
                // an empty final advances the timeline without a seq
                { atMs: 900, event: fakeFinal(650, 800, '  ') },
                { atMs: 'finish', event: fakeFinal(850, 1000, 'three') },
              ],
            },
    });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1500);
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(2));
    pushAudio(h.runner, 1500, 2000);
    await h.runner.finish();
    expect(h.utterances.map((u) => [u.seq, u.text, u.startMs, u.endMs])).toEqual([
      [1, 'one', 0, 1000],
      [2, 'two', 1100, 1600],
      [3, 'three', 1850, 2000],
    ]);
    expect(h.runner.stats).toMatchObject({ duplicateFinals: 1, emptyFinals: 1, utterances: 3 });
    expect(h.fake.connection(2).audio.equals(signal(1000, 1000))).toBe(true);
  });

  it('retries a throttled start with backoff and then streams', async () => {
    const h = setup({ connectError: (n) => (n <= 2 ? throttledError() : undefined) });
    h.runner.start();
    pushAudio(h.runner, 0, 800);
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    expect(h.fake.connectAttempts).toBe(3);
    expect(h.fake.connection(1).audio.equals(signal(0, 800))).toBe(true);
    expect(h.runner.stats).toMatchObject({ reconnects: 2, connectAttempts: 3, tasks: 1 });
    expect(await metricValue(h.metrics, 'callscribe_asr_reconnects_total', { reason: 'ERR_ASR_THROTTLED' })).toBe(2);
    await h.runner.finish();
    expect(h.runner.status).toBe('finished');
  });

  it('a permanent error means one attempt, status failed, and later audio dropped and counted', async () => {
    const h = setup({ connectError: () => authError() }, { maxRetries: 5 });
    h.runner.start();
    pushAudio(h.runner, 0, 300);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    await settle();
    expect(h.fake.connectAttempts).toBe(1);
    expect(h.statuses.map((s) => [s.status, s.errorCode])).toEqual([
      ['pending', null],
      ['failed', 'ERR_ASR_AUTH'],
    ]);
    expect(h.statuses.at(-1)?.errorMessage).toBe('fake: key refused');
    pushAudio(h.runner, 300, 500);
    expect(h.runner.stats.droppedAfterFailureMs).toBe(200);
    expect(await metricValue(h.metrics, 'callscribe_ingest_frames_dropped_total', { reason: 'ERR_ASR_STREAM_FAILED' })).toBe(2);
    await h.runner.finish(); // never throws
    expect(h.fake.connectAttempts).toBe(1);
    expect(h.runner.status).toBe('failed');
  });

  it('gives up after maxRetries consecutive connect failures', async () => {
    const h = setup({ connectError: () => disconnectedError() }, { maxRetries: 2 });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    await settle();
    expect(h.fake.connectAttempts).toBe(3); // 1 + maxRetries
    expect(h.statuses.at(-1)).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_DISCONNECTED', reconnects: 2 });
  });

  it('counts quick drops as failures: connections that die before a final exhaust the budget', async () => {
    const h = setup({ script: () => ({ dropAfterBytes: 200 * PCM_BYTES_PER_MS }) }, { maxRetries: 2 });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 400);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    expect(h.fake.connections).toHaveLength(3);
    // every connection got the unrecognised audio again from the start
    for (const c of h.fake.connections) expect(c.audio.subarray(0, 200 * PCM_BYTES_PER_MS).equals(signal(0, 200))).toBe(true);
  });

  it('a connection that delivered a final resets the retry budget', async () => {
    // connections 1-4 each deliver one final and then drop; maxRetries is 1, so without the
    // reset the second drop in a row would fail the stream
    const h = setup(
      {
        script: (n) =>
          n <= 4
            ? { events: [{ atMs: 100, event: fakeFinal(0, 100, `s${n}`) }], dropAfterBytes: 200 * PCM_BYTES_PER_MS }
            : {},
      },
      { maxRetries: 1 },
    );
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(5));
    await h.runner.finish();
    expect(h.runner.status).toBe('finished');
    expect(h.utterances.map((u) => [u.seq, u.text, u.startMs, u.endMs])).toEqual([
      [1, 's1', 0, 100],
      [2, 's2', 100, 200],
      [3, 's3', 200, 300],
      [4, 's4', 300, 400],
    ]);
    expect(h.fake.connection(5).audio.equals(signal(400, 600))).toBe(true);
  });

  it('a connection that lived 30 s resets the retry budget too', async () => {
    // connection n receives the replay ((n-1) × 100 ms), then dies after 100 ms of live audio
    const h = setup({ script: (n) => (n <= 3 ? { dropAfterBytes: n * 100 * PCM_BYTES_PER_MS } : {}) }, { maxRetries: 0 });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    for (let n = 1; n <= 3; n++) {
      h.clock.mono += 30_000; // the connection has been up for 30 s when it drops
      pushAudio(h.runner, (n - 1) * 100, n * 100);
      await vi.waitFor(() => expect(h.fake.connections).toHaveLength(n + 1));
    }
    expect(h.runner.status).toBe('active');
    expect(h.fake.connection(4).audio.equals(signal(0, 300))).toBe(true);
    h.runner.abort();
  });

  it('with maxRetries 0 a quick drop fails the stream', async () => {
    const h = setup({ script: () => ({ dropAfterBytes: 100 * PCM_BYTES_PER_MS }) }, { maxRetries: 0 });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 100);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    expect(h.fake.connections).toHaveLength(1);
  });

  it('bounds the replay buffer: drops the oldest audio, counts it and offsets the task', async () => {
    const h = setup(
      { connectDelayMs: 10, script: () => ({ events: [{ atMs: 'finish', event: fakeFinal(0, 500, 'tail') }] }) },
      { replayBufferMs: 1000 },
    );
    h.runner.start();
    pushAudio(h.runner, 0, 2500); // all of it before the connection is up
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(1));
    await h.runner.finish();
    expect(h.fake.connection(1).audio.equals(signal(1500, 1000))).toBe(true);
    expect(h.runner.stats).toMatchObject({ replayDroppedMs: 1500, replayLostMs: 1500 });
    expect(await metricValue(h.metrics, 'callscribe_asr_replay_dropped_ms_total')).toBe(1500);
    expect(h.utterances[0]).toMatchObject({ seq: 1, startMs: 1500, endMs: 2000 });
  });

  it('drops while connected count as replay drops but not as lost audio', async () => {
    const h = setup({}, { replayBufferMs: 1000 });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1500);
    expect(h.runner.stats).toMatchObject({ replayDroppedMs: 500, replayLostMs: 0, audioSentMs: 1500 });
    h.runner.abort();
  });
});

describe('AsrStreamRunner — finish and abort', () => {
  it('reconnects, replays and finishes again when the connection drops during finish', async () => {
    const h = setup({
      script: (n) =>
        n === 1
          ? { events: [{ atMs: 600, event: fakeFinal(0, 500, 'one') }], finish: disconnectedError() }
          : { events: [{ atMs: 'finish', event: fakeFinal(100, 400, 'two') }] },
    });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    await h.runner.finish();
    expect(h.fake.connection(2).audio.equals(signal(500, 500))).toBe(true);
    expect(h.fake.connection(2).finishCalls).toBe(1);
    expect(h.utterances.map((u) => [u.seq, u.startMs, u.endMs])).toEqual([
      [1, 0, 500],
      [2, 600, 900],
    ]);
    expect(h.runner.status).toBe('finished');
  });

  it('a finish timeout is retried, then fails the stream when the budget is gone', async () => {
    const h = setup({ script: () => ({ finish: 'hang' }) }, { maxRetries: 1, finishTimeoutMs: 20 });
    h.runner.start();
    pushAudio(h.runner, 0, 300);
    await h.runner.finish();
    expect(h.fake.connections).toHaveLength(2);
    expect(h.fake.connection(2).audio.equals(signal(0, 300))).toBe(true);
    expect(h.runner.status).toBe('failed');
    expect(h.statuses.at(-1)).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_FINISH_TIMEOUT' });
  });

  it('does not send finish-task on a connection that never got audio', async () => {
    const h = setup();
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    await h.runner.finish();
    expect(h.fake.connection(1).finishCalls).toBe(0);
    expect(h.fake.connection(1).closed).toBe(true);
    expect(h.runner.status).toBe('finished');
  });

  it('finish before start with no audio finishes without connecting', async () => {
    const h = setup();
    await h.runner.finish();
    expect(h.fake.connectAttempts).toBe(0);
    expect(h.statuses.map((s) => s.status)).toEqual(['finished']);
  });

  it('stops accepting audio after finish()', async () => {
    const h = setup();
    h.runner.start();
    pushAudio(h.runner, 0, 200);
    const done = h.runner.finish();
    pushAudio(h.runner, 200, 300);
    await done;
    expect(h.runner.stats.droppedAfterCloseMs).toBe(100);
    expect(h.fake.connection(1).audio.equals(signal(0, 200))).toBe(true);
  });

  it('finish during a backoff with nothing left to recognise ends at once', async () => {
    const h = setup(
      {
        connectError: (n) => (n >= 2 ? throttledError() : undefined),
        script: () => ({ events: [{ atMs: 300, event: fakeFinal(0, 300, 'all') }], dropAfterBytes: 300 * PCM_BYTES_PER_MS }),
      },
      { retryMinMs: 60_000, retryMaxMs: 60_000 },
    );
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 300);
    await vi.waitFor(() => expect(h.fake.connectAttempts).toBe(2)); // first reconnect is immediate (healthy drop)
    await vi.waitFor(() => expect(h.runner.stats.connectAttempts).toBe(2));
    await settle();
    await h.runner.finish(); // would otherwise wait a minute for the next attempt
    expect(h.runner.status).toBe('finished');
    expect(h.utterances).toHaveLength(1);
  });

  it('abort closes the connection, reports failed and stops retrying', async () => {
    const h = setup();
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 300);
    h.runner.abort();
    await h.runner.finish();
    await settle();
    expect(h.fake.connection(1).closed).toBe(true);
    expect(h.fake.connectAttempts).toBe(1);
    expect(h.statuses.at(-1)).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_ABORTED' });
  });

  it('abort during a pending connect closes the late connection', async () => {
    const h = setup({ connectDelayMs: 150 });
    h.runner.start();
    await vi.waitFor(() => expect(h.fake.connectAttempts).toBe(1), { interval: 1 });
    h.runner.abort();
    expect(h.fake.connections).toHaveLength(0);
    await vi.waitFor(() => expect(h.fake.connections).toHaveLength(1));
    await settle();
    expect(h.fake.connection(1).closed).toBe(true);
    expect(h.runner.stats.tasks).toBe(0);
  });
});

describe('AsrStreamRunner — start limiter', () => {
  it('waits for the limiter before each connect and records the wait', async () => {
    const calls: string[] = [];
    const limiter: TaskStartLimiter = {
      acquire: (model) => {
        calls.push(model);
        return calls.length === 1
          ? Promise.reject(new AppError('ERR_ASR_START_QUEUE_FULL', 'full', { category: 'rate_limit', retryable: true }))
          : Promise.resolve(42);
      },
    };
    const h = setup({}, { limiter });
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    expect(calls).toEqual(['fake-8k', 'fake-8k']);
    expect(h.fake.connectAttempts).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_start_wait_ms', { model: 'fake-8k' })).toBe(42);
    h.runner.abort();
  });
});
