/**
 * SIGTERM drain, health endpoints and readiness, over the real service.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type EmulatorHandle } from '../../src/emulator/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import { loadFixtureCall, type FixtureCall } from '../../src/simulator/fixture-call.js';
import { playTwilioCall } from '../../src/simulator/twilio-client.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';
import { startTestService, waitForCall, ZH_CALL, storedLineText } from '../support/harness.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const API_KEY = 'drain-test-key';
const script = JSON.parse(readFileSync(path.join(ZH_CALL, 'script.json'), 'utf8')) as {
  lines: Array<{ role: string; text: string; endMs: number }>;
};

describe('service lifecycle', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let emulator: EmulatorHandle;
  let fixture: FixtureCall;
  const prefixes: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    emulator = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: API_KEY, script: { dir: ZH_CALL }, logger: silentLogger });
    fixture = await loadFixtureCall(ZH_CALL);
  });
  afterAll(async () => {
    await pool?.end();
    await emulator?.close();
    await db?.drop();
    for (const p of prefixes) await deleteKeys(REDIS_URL, p);
  });

  const vars = (prefix: string) => ({
    DATABASE_URL: db.url,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    DASHSCOPE_API_KEY: API_KEY,
    DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    const prefix = uniquePrefix('health');
    prefixes.push(prefix);
    const svc = await startTestService(vars(prefix));
    try {
      const base = `http://127.0.0.1:${svc.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { redis: 'ok', postgres: 'ok' } });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      for (const name of ['callscribe_active_calls', 'callscribe_ingest_frames_total', 'callscribe_asr_reconnects_total', 'callscribe_utterances_persisted_total', 'callscribe_queue_lag_ms']) {
        expect(metrics).toContain(name);
      }
      expect((await fetch(`${base}/nothing`)).status).toBe(404);
    } finally {
      await svc.stop();
    }
  });

  it('reports not ready when Postgres is unreachable', async () => {
    const prefix = uniquePrefix('unready');
    prefixes.push(prefix);
    const svc = await startTestService({ ...vars(prefix), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' });
    try {
      const res = await fetch(`http://127.0.0.1:${svc.port}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { checks: Record<string, string> };
      expect(body.checks['redis']).toBe('ok');
      expect(body.checks['postgres']).not.toBe('ok');
    } finally {
      await svc.stop();
    }
  });

  it('drains on stop: closes live streams with 1001, finishes ASR tasks, queues every final', async () => {
    const prefix = uniquePrefix('drain');
    prefixes.push(prefix);
    const svc = await startTestService(vars(prefix));
    const playing = playTwilioCall({ fixture, url: `ws://127.0.0.1:${svc.port}/twilio`, speed: 4 });
    // 6 s at 4× ≈ 24 s into the call: lines 1-3 are complete, line 4 is being spoken
    await new Promise((r) => setTimeout(r, 6000));
    const stopping = svc.stop();
    const ready = await fetch(`http://127.0.0.1:${svc.port}/readyz`).catch(() => null);
    if (ready) expect(ready.status).toBe(503);
    await stopping;
    const played = await playing;
    expect(played.closeCode).toBe(1001);

    // the serve process stopped its worker; a fresh worker persists whatever was queued
    const worker = await startTestService(vars(prefix), 'worker');
    try {
      const { call, utterances, streams } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid);
      expect(call.status).toBe('ended');
      expect(call.end_reason).toBe('drain');
      expect(streams.map((s) => s['status'])).toEqual(['finished', 'finished']);
      const spoken = script.lines.filter((l) => l.endMs <= 22_000);
      expect(utterances.length).toBeGreaterThanOrEqual(spoken.length);
      // every complete line before the drain is there, in order; a line cut by the drain may
      // be finalised with the part that was heard
      expect(utterances.slice(0, spoken.length).map((u) => u.text)).toEqual(spoken.map((l) => storedLineText(l.text)));
      expect(utterances.length).toBeLessThanOrEqual(spoken.length + 2);
    } finally {
      await worker.stop();
    }
  });
});
