import { describe, expect, it, vi } from 'vitest';
import { AppError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { PCM_BYTES_PER_MS, type Utterance } from '../core/types.js';
import { silentLogger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import {
  ACCOUNT_LEVEL_ERROR_CODES,
  AsrStreamRunner,
  failoverTrigger,
  type AsrCandidate,
  type AsrFailover,
  type AsrStreamRunnerOptions,
  type AsrStreamStatusUpdate,
} from './session-runner.js';
import { unlimitedStartLimiter, type TaskStartLimiter } from './start-limiter.js';
import {
  authError,
  badRequestError,
  disconnectedError,
  fakeFinal,
  fakeInterim,
  FakeAsrProvider,
  noApiKeyError,
  quotaError,
  taskFailedError,
  throttledError,
  unsupportedModelError,
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
    expect(h.statuses.at(-1)).toEqual({
      status: 'finished',
      errorCode: null,
      errorMessage: null,
      reconnects: 0,
      utterances: 2,
      model: 'fake-8k',
      failovers: 0,
    });
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
    expect(h.runner.stats).toMatchObject({ tasks: 1, reconnects: 0, utterances: 2, audioSentMs: 3000, replayDroppedMs: 0, failovers: 0, model: 'fake-8k' });
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

// ---------------------------------------------------------------------------------------------
// Failover

const CONNECT_BASE = { sampleRateHz: 8000, disfluencyRemoval: false, maxSentenceSilenceMs: 800 } as const;

function candidate(provider: FakeAsrProvider, model: string): AsrCandidate {
  return { provider, connectOptions: { ...CONNECT_BASE, model } };
}

interface ChainHarness {
  /** One fake per candidate: fakes[0] runs model-a, fakes[1] model-b, … */
  readonly fakes: FakeAsrProvider[];
  readonly runner: AsrStreamRunner;
  readonly metrics: Metrics;
  readonly utterances: Utterance[];
  readonly statuses: AsrStreamStatusUpdate[];
  readonly failovers: AsrFailover[];
  /** Models the start limiter was asked for, in order. */
  readonly limiterCalls: string[];
}

const MODELS = ['model-a', 'model-b', 'model-c'] as const;

/** A runner over one fake provider per candidate (model-a, model-b, …, in that order). */
function setupChain(fakeOpts: readonly FakeAsrOptions[], over: Partial<AsrStreamRunnerOptions> = {}): ChainHarness {
  const fakes = fakeOpts.map((o, i) => new FakeAsrProvider({ name: `fake-${i}`, models: [MODELS[i] ?? `model-${i}`], ...o }));
  const metrics = createMetrics();
  const utterances: Utterance[] = [];
  const statuses: AsrStreamStatusUpdate[] = [];
  const failovers: AsrFailover[] = [];
  const limiterCalls: string[] = [];
  const runner = new AsrStreamRunner({
    candidates: fakes.map((f, i) => candidate(f, MODELS[i] ?? `model-${i}`)),
    limiter: {
      acquire: (model) => {
        limiterCalls.push(model);
        return Promise.resolve(0);
      },
    },
    callId: 'call-1',
    role: 'customer',
    track: 'inbound',
    metrics,
    logger: silentLogger,
    maxRetries: 2,
    retryMinMs: 1,
    retryMaxMs: 5,
    replayBufferMs: 60_000,
    finishTimeoutMs: 100,
    onUtterance: (u) => utterances.push(u),
    onStatus: (s) => statuses.push(s),
    onFailover: (f) => failovers.push(f),
    ...over,
  });
  return { fakes, runner, metrics, utterances, statuses, failovers, limiterCalls };
}

function fakeAt(h: ChainHarness, i: number): FakeAsrProvider {
  const f = h.fakes[i];
  if (!f) throw new Error(`no fake #${i}`);
  return f;
}

describe('AsrStreamRunner — failover', () => {
  it('failoverTrigger: account-level codes never, exhausted retryable errors and model-level codes do', () => {
    expect([...ACCOUNT_LEVEL_ERROR_CODES].sort()).toEqual(['ERR_ASR_AUTH', 'ERR_ASR_NO_API_KEY', 'ERR_ASR_QUOTA']);
    expect(failoverTrigger(authError())).toBeNull();
    expect(failoverTrigger(noApiKeyError())).toBeNull();
    expect(failoverTrigger(quotaError())).toBeNull();
    expect(failoverTrigger(throttledError())).toBe('retries-exhausted');
    expect(failoverTrigger(taskFailedError())).toBe('retries-exhausted');
    expect(failoverTrigger(disconnectedError())).toBe('retries-exhausted');
    expect(failoverTrigger(unsupportedModelError())).toBe('model-error');
    expect(failoverTrigger(badRequestError())).toBe('model-error');
    expect(failoverTrigger(new AppError('ERR_ASR_INTERNAL', 'bug', { category: 'application', retryable: false }))).toBeNull();
    // an account-level code stays account-level even if some provider marked it retryable
    expect(failoverTrigger(new AppError('ERR_ASR_QUOTA', 'x', { category: 'quota', retryable: true }))).toBeNull();
  });

  it('rejects an ambiguous or empty candidate list', () => {
    const f = new FakeAsrProvider();
    const base = {
      limiter: unlimitedStartLimiter,
      callId: 'c',
      role: 'customer' as const,
      track: 'inbound',
      metrics: createMetrics(),
      logger: silentLogger,
      maxRetries: 0,
      retryMinMs: 1,
      retryMaxMs: 1,
      replayBufferMs: 1000,
      finishTimeoutMs: 10,
      onUtterance: () => undefined,
      onStatus: () => undefined,
    };
    expect(() => new AsrStreamRunner({ ...base, candidates: [] })).toThrow(RangeError);
    expect(() => new AsrStreamRunner(base)).toThrow(TypeError);
    expect(
      () => new AsrStreamRunner({ ...base, candidates: [candidate(f, 'a')], provider: f, connectOptions: { ...CONNECT_BASE, model: 'a' } }),
    ).toThrow(TypeError);
    expect(new AsrStreamRunner({ ...base, candidates: [candidate(f, 'a'), candidate(f, 'b')] }).model).toBe('a');
  });

  it("model A's start keeps being throttled: after the budget B takes over with all unrecognised audio", async () => {
    const h = setupChain([
      { connectError: () => throttledError() },
      { script: () => ({ events: [{ atMs: 'finish', event: fakeFinal(100, 1100, 'hello', { emotion: { raw: 'negative', confidence: 0.5 } }) }] }) },
    ]);
    const [a, b] = [fakeAt(h, 0), fakeAt(h, 1)];
    pushAudio(h.runner, 0, 800); // before any connection: all of it waits in the replay buffer
    h.runner.start();
    await vi.waitFor(() => expect(b.connections).toHaveLength(1));
    pushAudio(h.runner, 800, 1200); // live on B
    await h.runner.finish();

    expect(a.connectAttempts).toBe(3); // 1 + maxRetries
    expect(a.connections).toHaveLength(0);
    expect(b.connectAttempts).toBe(1);
    expect(h.limiterCalls).toEqual(['model-a', 'model-a', 'model-a', 'model-b']);
    expect(b.connection(1).options.model).toBe('model-b');
    expect(b.connection(1).audio.equals(signal(0, 1200))).toBe(true);
    expect(h.utterances).toHaveLength(1);
    expect(h.utterances[0]).toMatchObject({
      seq: 1,
      startMs: 100,
      endMs: 1100,
      text: 'hello',
      model: 'model-b',
      emotion: { raw: 'negative', provider: 'model-b', valence: -1 },
    });
    expect(h.statuses.map((s) => [s.status, s.model, s.failovers, s.failoverFrom, s.failoverReason])).toEqual([
      ['pending', 'model-a', 0, undefined, undefined],
      ['pending', 'model-b', 1, 'model-a', 'ERR_ASR_THROTTLED'], // the switch
      ['active', 'model-b', 1, undefined, undefined],
      ['finished', 'model-b', 1, undefined, undefined],
    ]);
    expect(h.failovers).toEqual([{ from: 'model-a', to: 'model-b', reason: 'ERR_ASR_THROTTLED', trigger: 'retries-exhausted', failovers: 1 }]);
    expect(h.runner.stats).toMatchObject({ failovers: 1, model: 'model-b', connectAttempts: 4, reconnects: 3, tasks: 1 });
    expect(await metricValue(h.metrics, 'callscribe_asr_failovers_total', { from: 'model-a', to: 'model-b', reason: 'ERR_ASR_THROTTLED' })).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_failovers_total')).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_errors_total', { model: 'model-a', code: 'ERR_ASR_THROTTLED' })).toBe(3);
    expect(await metricValue(h.metrics, 'callscribe_asr_audio_sent_ms_total', { model: 'model-b' })).toBe(1200);
    expect(await metricValue(h.metrics, 'callscribe_asr_sessions_total', { model: 'model-b', outcome: 'finished' })).toBe(1);
    expect(await metricValue(h.metrics, 'callscribe_asr_active_sessions')).toBe(0);
  });

  it('A delivers, then dies mid-sentence and keeps failing: B gets the audio since the last final and delivers the sentence once', async () => {
    const h = setupChain(
      [
        {
          script: (n) =>
            n === 1
              ? {
                  events: [{ atMs: 1200, event: fakeFinal(100, 1000, 'one', { emotion: { raw: 'positive', confidence: 0.9 } }) }],
                  dropAfterBytes: 2000 * PCM_BYTES_PER_MS,
                  dropError: taskFailedError(),
                }
              : // every later task fails quickly, before any final
                { dropAfterBytes: 100 * PCM_BYTES_PER_MS, dropError: taskFailedError() },
        },
        {
          normaliseEmotion: (model, raw, confidence) => ({ raw, provider: `${model}/custom`, confidence, valence: 0, arousal: 1 }),
          script: () => ({
            events: [
              // B repeating the sentence A already delivered (ends at call 1000): dropped
              { atMs: 100, event: fakeFinal(-900, 0, 'one again') },
              { atMs: 'finish', event: fakeFinal(200, 1500, 'two', { emotion: { raw: 'surprised', confidence: null } }) },
            ],
          }),
        },
      ],
      { maxRetries: 2 },
    );
    const [a, b] = [fakeAt(h, 0), fakeAt(h, 1)];
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1500);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    pushAudio(h.runner, 1500, 3000); // A's task fails at 2000 ms of audio, mid-sentence
    await vi.waitFor(() => expect(b.connections).toHaveLength(1));
    pushAudio(h.runner, 3000, 3500); // live on B
    await h.runner.finish();

    // A: the healthy task (it delivered a final) reconnects at once with a fresh budget, then
    // 1 + maxRetries quick task failures, each resent the audio since the last final
    expect(a.connections).toHaveLength(4);
    expect(a.connection(1).audio.equals(signal(0, 2000))).toBe(true);
    for (const c of a.connections.slice(1)) expect(c.audio.equals(signal(1000, 100))).toBe(true);
    // B: exactly the audio since the end of the last final, then live audio, once
    expect(b.connection(1).audio.equals(signal(1000, 2500))).toBe(true);
    expect(b.connection(1).finishCalls).toBe(1);
    expect(h.utterances.map((u) => [u.seq, u.startMs, u.endMs, u.text, u.model])).toEqual([
      [1, 100, 1000, 'one', 'model-a'],
      [2, 1200, 2500, 'two', 'model-b'], // B's task time + offset 1000: on the call timeline
    ]);
    // each sentence's emotion normalised by the provider of the model that produced it
    expect(h.utterances[0]?.emotion).toMatchObject({ raw: 'positive', provider: 'model-a', valence: 1 });
    expect(h.utterances[1]?.emotion).toEqual({ raw: 'surprised', provider: 'model-b/custom', confidence: null, valence: 0, arousal: 1 });
    expect(h.runner.stats).toMatchObject({ duplicateFinals: 1, utterances: 2, failovers: 1, model: 'model-b' });
    expect(h.runner.status).toBe('finished');
    expect(h.failovers).toEqual([{ from: 'model-a', to: 'model-b', reason: 'ERR_ASR_TASK_FAILED', trigger: 'retries-exhausted', failovers: 1 }]);
    expect(h.statuses.map((s) => [s.status, s.model, s.failoverFrom])).toEqual([
      ['pending', 'model-a', undefined],
      ['active', 'model-a', undefined],
      ['active', 'model-b', 'model-a'], // the switch: status stays active
      ['finished', 'model-b', undefined],
    ]);
  });

  it('a model-level permanent error switches at once, also between two models of one provider', async () => {
    // one provider, two models; model-a is unknown to it
    const shared = new FakeAsrProvider({
      models: ['model-b'],
      connectError: (_n, o) => (o.model === 'model-a' ? unsupportedModelError('model-a') : undefined),
      script: () => ({ events: [{ atMs: 'finish', event: fakeFinal(0, 400, 'hi') }] }),
    });
    const statuses: AsrStreamStatusUpdate[] = [];
    const utterances: Utterance[] = [];
    const metrics = createMetrics();
    const runner = new AsrStreamRunner({
      candidates: [candidate(shared, 'model-a'), candidate(shared, 'model-b')],
      limiter: unlimitedStartLimiter,
      callId: 'call-1',
      role: 'agent',
      track: 'outbound',
      metrics,
      logger: silentLogger,
      maxRetries: 5,
      retryMinMs: 60_000, // a backoff would hang the test: a model error must switch without one
      retryMaxMs: 60_000,
      replayBufferMs: 10_000,
      finishTimeoutMs: 100,
      onUtterance: (u) => utterances.push(u),
      onStatus: (s) => statuses.push(s),
    });
    runner.start();
    pushAudio(runner, 0, 500);
    await vi.waitFor(() => expect(runner.status).toBe('active'));
    await runner.finish();
    expect(shared.connectAttempts).toBe(2); // one on model-a, one on model-b
    expect(shared.connection(1).options.model).toBe('model-b');
    expect(shared.connection(1).audio.equals(signal(0, 500))).toBe(true);
    expect(utterances.map((u) => [u.seq, u.text, u.model])).toEqual([[1, 'hi', 'model-b']]);
    expect(statuses.find((s) => s.failoverFrom)).toMatchObject({ model: 'model-b', failoverFrom: 'model-a', failoverReason: 'ERR_ASR_UNSUPPORTED_MODEL' });
    expect(await metricValue(metrics, 'callscribe_asr_failovers_total', { reason: 'ERR_ASR_UNSUPPORTED_MODEL' })).toBe(1);
    expect(runner.status).toBe('finished');
  });

  it.each([
    ['ERR_ASR_AUTH', authError],
    ['ERR_ASR_NO_API_KEY', noApiKeyError],
    ['ERR_ASR_QUOTA', quotaError],
  ])('%s on A: no failover, one attempt, status failed', async (code, makeError) => {
    const h = setupChain([{ connectError: () => makeError() }, {}], { maxRetries: 5 });
    h.runner.start();
    pushAudio(h.runner, 0, 300);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    await settle();
    expect(fakeAt(h, 0).connectAttempts).toBe(1);
    expect(fakeAt(h, 1).connectAttempts).toBe(0);
    expect(h.limiterCalls).toEqual(['model-a']);
    expect(h.statuses.map((s) => [s.status, s.errorCode, s.model])).toEqual([
      ['pending', null, 'model-a'],
      ['failed', code, 'model-a'],
    ]);
    expect(h.failovers).toEqual([]);
    expect(h.runner.stats).toMatchObject({ failovers: 0, model: 'model-a' });
    expect(await metricValue(h.metrics, 'callscribe_asr_failovers_total')).toBe(0);
  });

  it('an account-level failure in the middle of a task does not fail over either', async () => {
    const h = setupChain([{ script: () => ({ dropAfterBytes: 300 * PCM_BYTES_PER_MS, dropError: quotaError() }) }, {}]);
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 500);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    await settle();
    expect(fakeAt(h, 0).connectAttempts).toBe(1);
    expect(fakeAt(h, 1).connectAttempts).toBe(0);
    expect(h.statuses.at(-1)).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_QUOTA', model: 'model-a', failovers: 0 });
  });

  it('the last candidate exhausted: status failed with its error, after one failover per extra candidate', async () => {
    const h = setupChain(
      [{ connectError: () => disconnectedError() }, { connectError: () => throttledError() }, { connectError: () => badRequestError() }],
      { maxRetries: 1 },
    );
    h.runner.start();
    pushAudio(h.runner, 0, 200);
    await vi.waitFor(() => expect(h.runner.status).toBe('failed'));
    await settle();
    expect(h.fakes.map((f) => f.connectAttempts)).toEqual([2, 2, 1]); // model-level error on the last: one attempt
    expect(h.limiterCalls).toEqual(['model-a', 'model-a', 'model-b', 'model-b', 'model-c']);
    expect(h.failovers.map((f) => [f.from, f.to, f.reason, f.failovers])).toEqual([
      ['model-a', 'model-b', 'ERR_ASR_DISCONNECTED', 1],
      ['model-b', 'model-c', 'ERR_ASR_THROTTLED', 2],
    ]);
    expect(h.statuses.map((s) => [s.status, s.model, s.errorCode])).toEqual([
      ['pending', 'model-a', null],
      ['pending', 'model-b', null],
      ['pending', 'model-c', null],
      ['failed', 'model-c', 'ERR_ASR_BAD_REQUEST'],
    ]);
    expect(h.runner.stats).toMatchObject({ failovers: 2, model: 'model-c', connectAttempts: 5 });
    expect(await metricValue(h.metrics, 'callscribe_asr_failovers_total')).toBe(2);
  });

  it('finishing fails permanently on A: the remaining audio goes to B, which finishes', async () => {
    const h = setupChain([
      { script: () => ({ events: [{ atMs: 600, event: fakeFinal(0, 500, 'one') }], finish: badRequestError() }) },
      { script: () => ({ events: [{ atMs: 'finish', event: fakeFinal(100, 400, 'two') }] }) },
    ]);
    const [a, b] = [fakeAt(h, 0), fakeAt(h, 1)];
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    await h.runner.finish();
    expect(a.connectAttempts).toBe(1);
    expect(a.connection(1).finishCalls).toBe(1);
    expect(a.connection(1).closed).toBe(true);
    expect(b.connection(1).audio.equals(signal(500, 500))).toBe(true);
    expect(b.connection(1).finishCalls).toBe(1);
    expect(h.utterances.map((u) => [u.seq, u.startMs, u.endMs, u.model])).toEqual([
      [1, 0, 500, 'model-a'],
      [2, 600, 900, 'model-b'],
    ]);
    expect(h.runner.status).toBe('finished');
    expect(h.failovers).toEqual([{ from: 'model-a', to: 'model-b', reason: 'ERR_ASR_BAD_REQUEST', trigger: 'model-error', failovers: 1 }]);
  });

  it('a model error while finishing with every sentence in: finished, no failover', async () => {
    const h = setupChain([
      { script: () => ({ events: [{ atMs: 1000, event: fakeFinal(0, 1000, 'all') }], finish: badRequestError() }) },
      {},
    ]);
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(h.utterances).toHaveLength(1));
    await h.runner.finish();
    expect(fakeAt(h, 0).connection(1).finishCalls).toBe(1);
    expect(fakeAt(h, 1).connectAttempts).toBe(0);
    expect(h.runner.status).toBe('finished');
    expect(h.runner.stats).toMatchObject({ failovers: 0, model: 'model-a' });
    expect(h.failovers).toEqual([]);
  });

  it('finish keeps timing out on A: after the budget B gets the remaining audio and finishes', async () => {
    const h = setupChain(
      [{ script: () => ({ finish: 'hang' }) }, { script: () => ({ events: [{ atMs: 'finish', event: fakeFinal(0, 300, 'tail') }] }) }],
      { maxRetries: 1, finishTimeoutMs: 20 },
    );
    h.runner.start();
    pushAudio(h.runner, 0, 300);
    await h.runner.finish();
    expect(fakeAt(h, 0).connections).toHaveLength(2);
    expect(fakeAt(h, 1).connection(1).audio.equals(signal(0, 300))).toBe(true);
    expect(h.utterances.map((u) => [u.seq, u.text, u.model])).toEqual([[1, 'tail', 'model-b']]);
    expect(h.runner.status).toBe('finished');
    expect(h.failovers[0]).toMatchObject({ reason: 'ERR_ASR_FINISH_TIMEOUT', trigger: 'retries-exhausted' });
  });

  it('a model that keeps delivering between drops is healthy: no failover', async () => {
    const h = setupChain(
      [
        {
          script: (n) =>
            n <= 4 ? { events: [{ atMs: 100, event: fakeFinal(0, 100, `s${n}`) }], dropAfterBytes: 200 * PCM_BYTES_PER_MS } : {},
        },
        {},
      ],
      { maxRetries: 1 },
    );
    h.runner.start();
    await vi.waitFor(() => expect(h.runner.status).toBe('active'));
    pushAudio(h.runner, 0, 1000);
    await vi.waitFor(() => expect(fakeAt(h, 0).connections).toHaveLength(5));
    await h.runner.finish();
    expect(h.runner.status).toBe('finished');
    expect(fakeAt(h, 1).connectAttempts).toBe(0);
    expect(h.utterances.map((u) => u.model)).toEqual(['model-a', 'model-a', 'model-a', 'model-a']);
    expect(h.runner.stats.failovers).toBe(0);
  });

  it('abort during the switch stops everything', async () => {
    const h = setupChain([{ connectError: () => unsupportedModelError('model-a') }, { connectDelayMs: 50 }]);
    h.runner.start();
    pushAudio(h.runner, 0, 200);
    await vi.waitFor(() => expect(fakeAt(h, 1).connectAttempts).toBe(1), { interval: 1 });
    h.runner.abort();
    await vi.waitFor(() => expect(fakeAt(h, 1).connections).toHaveLength(1));
    await settle();
    expect(fakeAt(h, 1).connection(1).closed).toBe(true);
    expect(h.statuses.at(-1)).toMatchObject({ status: 'failed', errorCode: 'ERR_ASR_ABORTED', model: 'model-b' });
    expect(h.runner.stats.tasks).toBe(0);
  });
});
