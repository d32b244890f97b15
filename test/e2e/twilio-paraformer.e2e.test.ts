/**
 * The spine, end to end over real sockets, Redis and Postgres:
 * call simulator → GET /twilio → G.711 → paraformer client → DashScope emulator → utterances
 * → BullMQ → worker → Postgres.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type EmulatorHandle } from '../../src/emulator/server.js';
import { createProducer } from '../../src/queue/producer.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { silentLogger } from '../../src/observability/logger.js';
import { jobIds } from '../../src/queue/jobs.js';
import type { Service } from '../../src/service.js';
import { loadFixtureCall, type FixtureCall } from '../../src/simulator/fixture-call.js';
import { playTwilioCall } from '../../src/simulator/twilio-client.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';
import { startTestService, waitForCall, ZH_CALL, type StoredUtterance, storedLineText } from '../support/harness.js';

interface ScriptLine {
  role: 'customer' | 'agent';
  text: string;
  startMs: number;
  endMs: number;
  emotion: { paraformer: { tag: string; confidence: number }; qwen: string };
}
const script = JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { lines: ScriptLine[] };
const REDIS_URL = 'redis://127.0.0.1:6379';
const API_KEY = 'e2e-test-key';
const SPEED = 16;

/** The transcript must equal the script: 12 lines, roles, texts, times ±300 ms, emotion tags. */
function expectScriptTranscript(utts: StoredUtterance[]): void {
  expect(utts.map((u) => `${u.role}:${u.text}`)).toEqual(script.lines.map((l) => `${l.role}:${storedLineText(l.text)}`));
  utts.forEach((u, i) => {
    const line = script.lines[i]!;
    expect(Math.abs(u.start_ms - line.startMs), `line ${i + 1} start`).toBeLessThanOrEqual(300);
    expect(Math.abs(u.end_ms - line.endMs), `line ${i + 1} end`).toBeLessThanOrEqual(300);
    expect(u.emotion_raw, `line ${i + 1} emotion`).toBe(line.emotion.paraformer.tag);
    expect(u.emotion_confidence).toBeCloseTo(line.emotion.paraformer.confidence, 5);
    expect(u.valence).toBe({ positive: 1, negative: -1, neutral: 0 }[line.emotion.paraformer.tag]);
    expect(u.model).toBe('paraformer-realtime-8k-v2');
  });
  for (const role of ['customer', 'agent']) {
    const seqs = utts.filter((u) => u.role === role).map((u) => u.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }
}

describe('Twilio call → paraformer (emulated) → BullMQ → Postgres', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let emulator: EmulatorHandle;
  let fixture: FixtureCall;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 3 });
    emulator = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: API_KEY, script: { dir: ZH_CALL }, logger: silentLogger });
    fixture = await loadFixtureCall(ZH_CALL);
  });

  afterAll(async () => {
    await pool?.end();
    await emulator?.close();
    await db?.drop();
  });

  async function withService<T>(vars: Record<string, string>, fn: (svc: Service, prefix: string) => Promise<T>): Promise<T> {
    const prefix = uniquePrefix('e2e');
    const svc = await startTestService({
      DATABASE_URL: db.url,
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      DASHSCOPE_API_KEY: API_KEY,
      DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
      ...vars,
    });
    try {
      return await fn(svc, prefix);
    } finally {
      await svc.stop();
      await deleteKeys(REDIS_URL, prefix);
    }
  }

  it('ends with exactly the 12 scripted utterances, times and emotions', async () => {
    await withService({}, async (svc, prefix) => {
      const played = await playTwilioCall({
        fixture,
        url: `ws://127.0.0.1:${svc.port}/twilio`,
        speed: SPEED,
        customParameters: { tenant: 'acme', agentId: '42', queue: 'billing' },
      });
      const { call, utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(call.status).toBe('ended');
      expect(call.end_reason).toBe('stop');
      expect(call.call_sid).toBe(played.callSid);
      expect(call.custom_parameters).toEqual({ tenant: 'acme', agentId: '42', queue: 'billing' });
      expect(call.roles).toEqual({ inbound: 'customer', outbound: 'agent' });
      expect(utterances).toHaveLength(12);
      expectScriptTranscript(utterances);
      // words carry call-timeline times inside the sentence
      for (const u of utterances) {
        expect(u.words.length).toBeGreaterThan(0);
        expect(u.words[0]!.startMs).toBeGreaterThanOrEqual(u.start_ms - 1);
        expect(u.words.at(-1)!.endMs).toBeLessThanOrEqual(u.end_ms + 1);
        expect(u.audio_end_at).toBeInstanceOf(Date);
        expect(u.final_received_at!.getTime()).toBeGreaterThanOrEqual(u.audio_end_at!.getTime());
        expect(u.enqueued_at!.getTime()).toBeGreaterThanOrEqual(u.final_received_at!.getTime());
      }
      expect(streams.map((s) => [s['role'], s['status']])).toEqual([
        ['agent', 'finished'],
        ['customer', 'finished'],
      ]);
      const metrics = await svc.metrics.registry.getSingleMetricAsString('callscribe_utterances_enqueued_total');
      expect(metrics).toContain('12');
    });
  });

  it('loses and duplicates nothing when the ASR connection drops mid-sentence', async () => {
    emulator.setKnobs({ faults: { dropInSentence: 2, dropConnections: 2, dropAfterFrames: null, failTasks: null } });
    const dropsBefore = emulator.stats.dropsInjected;
    try {
      await withService({}, async (svc, prefix) => {
        const played = await playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: SPEED });
        const { utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
        expect(emulator.stats.dropsInjected - dropsBefore).toBe(2);
        expect(utterances).toHaveLength(12);
        expectScriptTranscript(utterances);
        const reconnects = streams.reduce((n, s) => n + Number(s['reconnects']), 0);
        expect(reconnects).toBeGreaterThanOrEqual(2);
      });
    } finally {
      emulator.setKnobs({ faults: { dropInSentence: null, dropConnections: 0, dropAfterFrames: null, failTasks: null } });
    }
  });

  it('retries a throttled task start', async () => {
    emulator.setKnobs({
      faults: {
        dropInSentence: null,
        dropConnections: 0,
        dropAfterFrames: null,
        failTasks: { code: 'Throttling.RateQuota', message: 'Requests rate limit exceeded, please try again later.', count: 1 },
      },
    });
    const failedBefore = emulator.stats.tasksFailed;
    try {
      await withService({}, async (svc, prefix) => {
        const played = await playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: SPEED });
        const { utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
        expect(totalFailed(emulator) - totalFailedOf(failedBefore)).toBe(1);
        expect(utterances).toHaveLength(12);
        expectScriptTranscript(utterances);
        expect(streams.every((s) => s['status'] === 'finished')).toBe(true);
      });
    } finally {
      emulator.setKnobs({ faults: { dropInSentence: null, dropConnections: 0, dropAfterFrames: null, failTasks: null } });
    }
  });

  it('fails the streams visibly on a bad API key, without retrying', async () => {
    const authBefore = emulator.stats.authFailures;
    await withService({ DASHSCOPE_API_KEY: 'not-the-right-key' }, async (svc, prefix) => {
      const played = await playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: SPEED });
      const { call, utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(utterances).toHaveLength(0);
      expect(call.status).toBe('failed');
      expect(streams.map((s) => [s['role'], s['status'], s['error_code']])).toEqual([
        ['agent', 'failed', 'ERR_ASR_AUTH'],
        ['customer', 'failed', 'ERR_ASR_AUTH'],
      ]);
      // one handshake per stream: no retry storm
      expect(emulator.stats.authFailures - authBefore).toBe(2);
      const errors = await svc.metrics.registry.getSingleMetricAsString('callscribe_asr_errors_total');
      expect(errors).toMatch(/code="ERR_ASR_AUTH"[^\n]* 2/);
    });
  });

  it('writes no duplicates when a call’s jobs are replayed', async () => {
    await withService({}, async (svc, prefix) => {
      const played = await playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: SPEED });
      const first = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(first.utterances).toHaveLength(12);
      // replay every utterance job of the call, as a producer retry or a re-run would
      const producer = createProducer({ redisUrl: REDIS_URL, prefix, metrics: createMetrics(), logger: silentLogger });
      const callStartedAt = Date.now();
      for (const u of first.utterances) {
        await producer.enqueueUtterance({
          callId: u.call_id,
          callStartedAt,
          utterance: {
            callId: u.call_id,
            role: u.role as 'customer' | 'agent',
            track: u.track,
            seq: u.seq,
            startMs: u.start_ms + 1000, // a different payload under the same natural key
            endMs: u.end_ms + 1000,
            text: 'replayed',
            words: [],
            emotion: null,
            model: u.model,
            asrTaskId: 'replay',
            timing: { audioEndAt: null, finalReceivedAt: Date.now() },
          },
        });
        expect(jobIds.utterance(u.call_id, u.role as 'customer' | 'agent', u.seq)).toMatch(/^utt-/);
      }
      await producer.flush(5000);
      await producer.close();
      const again = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(again.utterances).toEqual(first.utterances);
    });
  });
});

function totalFailed(e: EmulatorHandle): number {
  return totalFailedOf(e.stats.tasksFailed);
}
function totalFailedOf(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object') return Object.values(v as Record<string, number>).reduce((a, b) => a + b, 0);
  return 0;
}
