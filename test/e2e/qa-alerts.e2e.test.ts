/**
 * QA analytics and live emotion alerts end to end: the zh-billing-complaint call played over
 * Twilio → emulator → queue → worker → Postgres, with a supervisor on GET /supervisor and a
 * local webhook receiver. Checks the acceptance criteria:
 * - exactly one customer-emotion alert, critical, at line 7 (negative + 投诉 right after a
 *   negative line); line 9 completes a streak of three but is suppressed by the cooldown;
 * - the alert reaches the supervisor socket and the webhook (valid HMAC signature), with
 *   latency marks stored;
 * - metrics: the 6 s dead air before line 5, the agent's 0.7 s overtalk on line 8 (no
 *   interruption at the 1 s default), CPM per role, the customer's negative share per quarter;
 * - rules: greeting present, disclosure absent → one absence hit; line 4 stored redacted;
 * - replaying the call's jobs changes no metric and adds no alert.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { verifyWebhookSignature } from '../../src/alerts/delivery/webhooks.js';
import { startEmulator, type EmulatorHandle } from '../../src/emulator/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import { jobIds, JOB_CALL_END, JOB_UTTERANCE, UTTERANCES_QUEUE } from '../../src/queue/jobs.js';
import type { Service } from '../../src/service.js';
import { loadFixtureCall, type FixtureCall } from '../../src/simulator/fixture-call.js';
import { playTwilioCall } from '../../src/simulator/twilio-client.js';
import { Queue } from 'bullmq';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { deleteKeys, uniquePrefix } from '../support/redis.js';
import { startTestService, waitForCall, ZH_CALL } from '../support/harness.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const API_KEY = 'e2e-test-key';
const TOKEN = 'supervisor-token-0123456789';
const SECRET = 'webhook-secret-0123456789';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('QA analytics and live emotion alerts (zh-billing-complaint)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let emulator: EmulatorHandle;
  let fixture: FixtureCall;
  let hook: Server;
  const hooks: Received[] = [];
  let svc: Service;
  let prefix: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 3 });
    pool.on('error', () => undefined); // the database is dropped at the end
    emulator = await startEmulator({ host: '127.0.0.1', port: 0, apiKey: API_KEY, script: { dir: ZH_CALL }, logger: silentLogger });
    fixture = await loadFixtureCall(ZH_CALL);
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        hooks.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    prefix = uniquePrefix('e2e-qa');
    svc = await startTestService({
      DATABASE_URL: db.url,
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      DASHSCOPE_API_KEY: API_KEY,
      DASHSCOPE_INFERENCE_URL: `${emulator.url}/api-ws/v1/inference`,
      SUPERVISOR_TOKEN: TOKEN,
      API_TOKEN: 'api-token-0123456789abcdef',
      WEBHOOK_URLS: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
      WEBHOOK_SECRET: SECRET,
    });
  }, 60_000);

  afterAll(async () => {
    await svc?.stop();
    await new Promise((r) => hook?.close(r));
    await pool?.end();
    await emulator?.close();
    await db?.drop();
    await deleteKeys(REDIS_URL, prefix);
  });

  it('raises one critical alert at line 7, delivers it, and stores the metrics and rule hits', async () => {
    // the supervisor connects before the call
    const messages: Array<{ type: string; [k: string]: unknown }> = [];
    const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/supervisor`, { headers: { authorization: `Bearer ${TOKEN}` } });
    ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString('utf8')) as { type: string }));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await expect.poll(() => messages.some((m) => m.type === 'hello'), { timeout: 5000 }).toBe(true);

    const played = await playTwilioCall({
      fixture,
      url: `ws://127.0.0.1:${svc.port}/twilio`,
      speed: 4,
      customParameters: { tenant: 'acme', agentId: '1025', queue: 'billing' },
    });
    const { call, utterances } = await waitForCall(pool, REDIS_URL, prefix, played.streamSid, 60_000);
    expect(utterances).toHaveLength(12);

    // PII: line 4 stored redacted, search tokens written
    const line4 = utterances.find((u) => u.role === 'customer' && u.seq === 2);
    expect(line4?.text).toBe('[PHONE]。');
    const originals = await pool.query('select count(*)::int as n from utterance_originals where call_id = $1', [call.id]);
    expect(originals.rows[0].n).toBe(0);
    const search = await pool.query(
      "select role, seq from utterances where call_id = $1 and tsv @@ to_tsquery('simple', $2)",
      [call.id, "'投诉'"],
    );
    expect(search.rows).toEqual([{ role: 'customer', seq: 4 }]);

    // alerts: one open critical at line 7 (customer seq 4), one suppressed at line 9 (seq 5)
    const alerts = await pool.query(
      'select * from alerts where call_id = $1 order by trigger_end_ms',
      [call.id],
    );
    expect(alerts.rows.map((a) => [a.rule_id, a.role, a.severity, a.status, a.reason, a.suppressed_reason, a.trigger_role, a.trigger_seq])).toEqual([
      ['zh.customer-negative-emotion', 'customer', 'critical', 'open', 'escalation-keyword', null, 'customer', 4],
      ['zh.customer-negative-emotion', 'customer', 'critical', 'suppressed', 'streak', 'cooldown', 'customer', 5],
    ]);
    const alert = alerts.rows[0];
    expect(alert.evidence.map((e: { seq: number }) => e.seq)).toEqual([3, 4]);
    expect(alert.final_received_at).toBeInstanceOf(Date);
    expect(alert.committed_at.getTime()).toBeGreaterThanOrEqual(alert.final_received_at.getTime());

    // delivered to the supervisor socket and the webhook, recorded per channel
    await expect.poll(() => messages.filter((m) => m.type === 'alert').length, { timeout: 10_000 }).toBe(1);
    const pushed = messages.find((m) => m.type === 'alert') as unknown as { alert: { alertId: string; severity: string } };
    expect(pushed.alert.alertId).toBe(alert.alert_id);
    expect(messages.some((m) => m.type === 'call.started')).toBe(true);
    await expect.poll(() => hooks.length, { timeout: 10_000 }).toBe(1);
    const received = hooks[0]!;
    expect(verifyWebhookSignature(SECRET, received.headers, received.body, 300_000)).toMatchObject({ ok: true });
    expect(JSON.parse(received.body)).toMatchObject({ alert: { alertId: alert.alert_id, severity: 'critical' } });
    await expect
      .poll(async () => {
        const d = await pool.query('select channel, status from alert_deliveries where alert_id = $1 order by channel', [alert.alert_id]);
        return d.rows.map((r) => `${r.channel}:${r.status}`);
      }, { timeout: 10_000 })
      .toEqual(['redis:delivered', 'supervisor:delivered', 'webhook:delivered']);
    const delivered = await pool.query('select first_delivered_at from alerts where alert_id = $1', [alert.alert_id]);
    expect(delivered.rows[0].first_delivered_at).toBeInstanceOf(Date);
    ws.close();

    // metrics (hand-computed from script.json; durations on the call timeline)
    const m = (await pool.query('select * from call_metrics where call_id = $1', [call.id])).rows[0];
    expect(m.agent_id).toBe('1025');
    const silences = m.details.silences as Array<{ startMs: number; endMs: number; durationMs: number }>;
    const deadAir = silences.find((s) => s.durationMs >= 5500);
    expect(deadAir?.startMs).toBeGreaterThan(26_000);
    expect(deadAir?.endMs).toBeLessThan(33_500);
    expect(Math.abs((deadAir?.durationMs ?? 0) - 6000)).toBeLessThanOrEqual(600);
    expect(m.overtalks_by_agent).toBe(1);
    expect(m.interruptions_by_agent).toBe(0);
    const overtalk = (m.details.overtalks as Array<{ by: string; over: string; overlapMs: number }>)[0];
    expect(overtalk).toMatchObject({ by: 'agent', over: 'customer' });
    expect(Math.abs((overtalk?.overlapMs ?? 0) - 700)).toBeLessThanOrEqual(300);
    expect(m.cpm_customer).toBeGreaterThan(200);
    expect(m.cpm_agent).toBeGreaterThan(180);
    const q = (m.details.quarters.customer as Array<{ negShare: number | null }>).map((x) => x.negShare);
    expect(q).toEqual([0, 0, 1, 0.5]);
    expect(m.alert_count).toBe(1);
    expect(m.max_alert_severity).toBe('critical');

    // rules: greeting present (no hit), disclosure absent (one hit), complaint keyword category
    const hits = await pool.query('select rule_id, source from rule_hits where call_id = $1 order by rule_id, source', [call.id]);
    const ids = hits.rows.map((h) => `${h.rule_id}/${h.source}`);
    expect(ids.filter((i) => i.startsWith('zh.recording-disclosure-missing'))).toEqual(['zh.recording-disclosure-missing/postcall']);
    expect(ids.some((i) => i.startsWith('zh.greeting-missing'))).toBe(false);
    expect(ids).toContain('zh.complaint-escalation/live');

    // replaying the call's jobs (same ids; completed jobs were removed) changes nothing
    const before = { ...m, computed_at: null };
    const stored = await pool.query('select * from utterances where call_id = $1', [call.id]);
    const queue = new Queue(UTTERANCES_QUEUE, { connection: { url: REDIS_URL }, prefix });
    try {
      // BullMQ keeps completed jobs for an hour (deduplicating re-adds): forget them first, so
      // the same job ids are processed again, as after that hour or on another Redis
      await queue.clean(0, 10_000, 'completed');
      for (const u of stored.rows) {
        await queue.add(
          JOB_UTTERANCE,
          {
            callId: call.id,
            callStartedAt: new Date(u.call_started_at).getTime(),
            utterance: {
              callId: call.id,
              role: u.role,
              track: u.track,
              seq: u.seq,
              startMs: u.start_ms,
              endMs: u.end_ms,
              text: u.text,
              words: u.words,
              emotion: u.emotion_raw
                ? { raw: u.emotion_raw, provider: u.emotion_provider, confidence: u.emotion_confidence, valence: u.valence, arousal: u.arousal }
                : null,
              model: u.model,
              asrTaskId: u.asr_task_id,
              timing: { audioEndAt: null, finalReceivedAt: new Date(u.final_received_at).getTime() },
            },
          },
          { jobId: jobIds.utterance(call.id, u.role, u.seq), removeOnComplete: true },
        );
      }
      const end = await pool.query('select * from calls where id = $1', [call.id]);
      const c = end.rows[0];
      await queue.add(
        JOB_CALL_END,
        {
          callId: call.id,
          callStartedAt: new Date(c.started_at).getTime(),
          endedAt: new Date(c.ended_at).getTime(),
          status: c.status,
          endReason: c.end_reason,
          durationMs: c.duration_ms,
          stats: c.ingest_stats,
        },
        { jobId: jobIds.callEnd(call.id), removeOnComplete: true },
      );
      await expect
        .poll(async () => Object.values(await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed')).reduce((a, b) => a + b, 0), {
          timeout: 20_000,
        })
        .toBe(0);
      const afterAlerts = await pool.query('select count(*)::int as n from alerts where call_id = $1', [call.id]);
      expect(afterAlerts.rows[0].n).toBe(2);
      const after = (await pool.query('select * from call_metrics where call_id = $1', [call.id])).rows[0];
      expect({ ...after, computed_at: null }).toEqual(before);
      const hitsAfter = await pool.query('select rule_id, source from rule_hits where call_id = $1 order by rule_id, source', [call.id]);
      expect(hitsAfter.rows).toEqual(hits.rows);
    } finally {
      await queue.close();
    }
  }, 120_000);
});
