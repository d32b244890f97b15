/**
 * Routing and failover end to end: the customer routed to qwen3-asr-flash-realtime, the agent
 * to paraformer-realtime-8k-v2, both emulated; a qwen outage mid-call fails over to paraformer.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnv } from '../../src/config/env.js';
import { startEmulator, type EmulatorHandle } from '../../src/emulator/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startService } from '../../src/service.js';
import { loadFixtureCall, type FixtureCall } from '../../src/simulator/fixture-call.js';
import { playTwilioCall } from '../../src/simulator/twilio-client.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';
import { startTestService, waitForCall, ZH_CALL, type StoredUtterance, storedLineText } from '../support/harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROUTING = path.resolve(HERE, '../fixtures/routing');
const REDIS_URL = 'redis://127.0.0.1:6379';
const API_KEY = 'qwen-e2e-key';
const QWEN = 'qwen3-asr-flash-realtime';
const PARAFORMER = 'paraformer-realtime-8k-v2';

interface ScriptLine {
  role: 'customer' | 'agent';
  text: string;
  startMs: number;
  endMs: number;
  emotion: { paraformer: { tag: string; confidence: number }; qwen: string };
}
const script = JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as { lines: ScriptLine[] };
const VALENCE: Record<string, number> = { positive: 1, negative: -1, neutral: 0, happy: 1, angry: -1, sad: -1, disgusted: -1, fearful: -1, surprised: 0 };

function expectLines(utts: StoredUtterance[], modelOf: (u: StoredUtterance, i: number) => string): void {
  expect(utts.map((u) => `${u.role}:${u.text}`)).toEqual(script.lines.map((l) => `${l.role}:${storedLineText(l.text)}`));
  utts.forEach((u, i) => {
    const line = script.lines[i]!;
    const model = modelOf(u, i);
    expect(u.model, `line ${i + 1} model`).toBe(model);
    expect(Math.abs(u.start_ms - line.startMs), `line ${i + 1} start`).toBeLessThanOrEqual(300);
    expect(Math.abs(u.end_ms - line.endMs), `line ${i + 1} end`).toBeLessThanOrEqual(300);
    if (model === QWEN) {
      expect(u.emotion_raw, `line ${i + 1} qwen emotion`).toBe(line.emotion.qwen);
      expect(u.emotion_confidence).toBeNull();
      expect(u.words).toEqual([]); // qwen gives no word timestamps
    } else {
      expect(u.emotion_raw, `line ${i + 1} paraformer emotion`).toBe(line.emotion.paraformer.tag);
      expect(u.emotion_confidence).toBeCloseTo(line.emotion.paraformer.confidence, 5);
    }
    expect(u.valence).toBe(VALENCE[u.emotion_raw!]);
  });
  for (const role of ['customer', 'agent']) {
    const seqs = utts.filter((u) => u.role === role).map((u) => u.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }
}

describe('routing: customer on qwen, agent on paraformer', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let emulator: EmulatorHandle;
  let fixture: FixtureCall;
  const prefixes: string[] = [];

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
    for (const p of prefixes) await deleteKeys(REDIS_URL, p);
  });

  function vars(prefix: string, extra: Record<string, string> = {}) {
    return {
      DATABASE_URL: db.url,
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      DASHSCOPE_API_KEY: API_KEY,
      DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
      DASHSCOPE_REALTIME_URL: `${emulator.url}/api-ws/v1/realtime`,
      ROUTING_FILE: path.join(ROUTING, 'customer-on-qwen.yaml'),
      ...extra,
    };
  }

  it('ends with the 12 scripted utterances, each with its own model’s emotion', async () => {
    const prefix = uniquePrefix('qwen');
    prefixes.push(prefix);
    const svc = await startTestService(vars(prefix));
    try {
      const played = await playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: 16 });
      const { call, utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(utterances).toHaveLength(12);
      expectLines(utterances, (u) => (u.role === 'customer' ? QWEN : PARAFORMER));
      const routing = (call as unknown as { routing: Record<string, { model: string; rule: string; fallback: string | null }> }).routing;
      expect(routing['customer']).toMatchObject({ model: QWEN, fallback: PARAFORMER, rule: 'customer-emotion-on-qwen' });
      expect(routing['agent']).toMatchObject({ model: PARAFORMER, fallback: null, rule: 'default' });
      expect(streams.map((s) => [s['role'], s['model'], s['status']])).toEqual([
        ['agent', PARAFORMER, 'finished'],
        ['customer', QWEN, 'finished'],
      ]);
    } finally {
      await svc.stop();
    }
  });

  it('fails over to paraformer in the middle of a qwen outage without losing or duplicating a sentence', async () => {
    const prefix = uniquePrefix('failover');
    prefixes.push(prefix);
    const svc = await startTestService(vars(prefix, { ASR_MAX_RETRIES: '2', ASR_RETRY_MIN_MS: '20', ASR_RETRY_MAX_MS: '80' }));
    try {
      const playing = playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: 8 });
      // ≈ 41 s into the call (5.1 s at 8×), in the middle of customer line 6 ("我从来没有…"):
      // qwen goes down for good, live qwen sessions are dropped and new ones refused
      await new Promise((r) => setTimeout(r, 5100));
      emulator.setKnobs({ faults: { qwenOutage: { mode: 'close-1011', count: null, dropLive: true } } });
      const played = await playing;
      const { utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(utterances).toHaveLength(12);
      // customer lines 2 and 4 came from qwen, 6, 7, 9 and 11 from paraformer after the failover
      const customerIdx = script.lines.map((l, i) => (l.role === 'customer' ? i : -1)).filter((i) => i >= 0);
      expectLines(utterances, (u, i) => (u.role === 'agent' ? PARAFORMER : customerIdx.indexOf(i) < 2 ? QWEN : PARAFORMER));
      const customer = streams.find((s) => s['role'] === 'customer')!;
      expect(customer['model']).toBe(PARAFORMER);
      expect(customer['status']).toBe('finished');
      const failovers = await svc.metrics.registry.getSingleMetricAsString('callscribe_asr_failovers_total');
      expect(failovers).toContain(`from="${QWEN}"`);
    } finally {
      emulator.setKnobs({ faults: { qwenOutage: null } });
      await svc.stop();
    }
  });

  it('refuses to start with a bad routing file, naming the file, line and model', async () => {
    const env = loadEnv({ ...vars('unused'), ROUTING_FILE: path.join(ROUTING, 'bad-model.yaml'), PORT: '0', LOG_LEVEL: 'silent' });
    await expect(startService(env, 'ingest', { logger: silentLogger })).rejects.toThrow(/bad-model\.yaml:8:\d+.*qwen3-asr-flsh-realtime/);
  });

  it('refuses an unknown model name in ASR_MODEL with the allowed values', () => {
    expect(() => loadEnv({ ASR_MODEL: 'whisper-large' })).toThrow(/ASR_MODEL/);
  });
});
