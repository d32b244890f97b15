/**
 * The worker's QA path with real Postgres and synthetic jobs (no audio): the persist processor
 * plus createCallAnalytics, with a recording dispatcher.
 * - a neutral call raises no alert;
 * - minutes of repeated negative lines: the cooldown, dedupe and cap (3 per call and rule)
 *   hold, everything else is stored as suppressed (the engine's unit tests pin the exact list);
 * - a sentence that lands after the call ended refreshes the metrics (recomputed, not added);
 * - PII_MODE=both keeps the original in utterance_originals only.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertDispatcher } from '../../src/alerts/delivery/dispatcher.js';
import type { AlertRecord } from '../../src/alerts/store.js';
import type { Role, Utterance } from '../../src/core/types.js';
import { createDb, type Database } from '../../src/db/client.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { JOB_CALL_END, JOB_CALL_START, JOB_UTTERANCE } from '../../src/queue/jobs.js';
import { createCallAnalytics, syncRules } from '../../src/workers/analytics.js';
import { createPersistProcessor, postgresRepositories } from '../../src/workers/persist-utterance.worker.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

const T0 = Date.UTC(2026, 10, 21, 8, 0, 0);

let testDb: TestDatabase;
let database: Database;
const dispatched: AlertRecord[] = [];
const dispatcher: AlertDispatcher = {
  dispatch: async (alerts) => {
    dispatched.push(...alerts);
    return { alerts: alerts.length, published: alerts.length, webhooksEnqueued: 0, errors: 0 } as unknown as Awaited<ReturnType<AlertDispatcher['dispatch']>>;
  },
  startOutboxSweeper: () => ({ sweep: async () => ({}) as never, stop: async () => undefined }),
  stats: () => ({}) as never,
};

function processor(piiMode: 'redact' | 'both' = 'redact') {
  const metrics = createMetrics({ defaultMetrics: false });
  const analytics = createCallAnalytics({
    database,
    metrics,
    logger: silentLogger,
    dispatcher,
    publisher: null,
    options: {
      piiMode,
      timeZone: 'Asia/Shanghai',
      metricsOptions: {},
      deliveryTargets: [{ channel: 'redis', target: 'test:alerts' }],
      rulesCacheMs: 0,
    },
  });
  return createPersistProcessor({ repositories: postgresRepositories(database), metrics, logger: silentLogger, piiMode, analytics });
}

function utt(callId: string, role: Role, seq: number, startMs: number, text: string, tag: 'negative' | 'neutral'): Utterance {
  return {
    callId,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    seq,
    startMs,
    endMs: startMs + 2500,
    text,
    words: [],
    emotion: { raw: tag, provider: 'paraformer-realtime-8k-v2', confidence: 0.9, valence: tag === 'negative' ? -1 : 0 },
    model: 'paraformer-realtime-8k-v2',
    asrTaskId: 't',
    timing: { audioEndAt: null, finalReceivedAt: T0 + startMs + 2800 },
  };
}

async function playCall(run: ReturnType<typeof processor>, lines: Array<[Role, string, 'negative' | 'neutral']>, gapMs = 5000, tenantId = 'default') {
  const callId = randomUUID();
  await run({
    name: JOB_CALL_START,
    data: {
      callId,
      source: 'twilio',
      startedAt: T0,
      tenantId,
      externalIds: {},
      customParameters: {},
      roles: { inbound: 'customer', outbound: 'agent' },
      models: {},
      routing: {},
      agentId: 'a-7',
    },
  });
  const seqs: Record<Role, number> = { customer: 0, agent: 0 };
  let at = 1000;
  for (const [role, text, tag] of lines) {
    seqs[role]++;
    await run({ name: JOB_UTTERANCE, data: { callId, callStartedAt: T0, utterance: utt(callId, role, seqs[role], at, text, tag) } });
    at += gapMs;
  }
  await run({
    name: JOB_CALL_END,
    data: { callId, callStartedAt: T0, endedAt: T0 + at, status: 'ended', endReason: 'stop', durationMs: at, stats: {} },
  });
  return { callId, endMs: at, seqs };
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = createDb(testDb.url, { max: 4 });
  await syncRules(database.db, 'rules/zh-starter.yaml', silentLogger);
});

afterAll(async () => {
  await database?.close();
  await testDb?.drop();
});

async function alertsOf(callId: string) {
  const r = await database.pool.query('select status, suppressed_reason, severity, reason from alerts where call_id = $1 order by trigger_end_ms', [callId]);
  return r.rows as Array<{ status: string; suppressed_reason: string | null; severity: string; reason: string }>;
}

describe('worker QA analytics (synthetic calls, real Postgres)', () => {
  it('a neutral call raises no alert but gets its metrics and rule hits', async () => {
    const run = processor();
    const { callId } = await playCall(run, [
      ['agent', '您好，这里是星河通信客服中心，本次通话可能会被录音，请问有什么可以帮您？', 'neutral'],
      ['customer', '你好，我想查一下这个月的账单。', 'neutral'],
      ['agent', '好的，请您提供一下手机号码。', 'neutral'],
      ['customer', '好的，谢谢你。', 'neutral'],
    ]);
    expect(await alertsOf(callId)).toEqual([]);
    const m = (await database.pool.query('select * from call_metrics where call_id = $1', [callId])).rows[0];
    expect(m.utt_customer).toBe(2);
    expect(m.alert_count).toBe(0);
    const hits = await database.pool.query("select rule_id from rule_hits where call_id = $1 and rule_id like 'zh.recording%'", [callId]);
    expect(hits.rows).toEqual([]); // the disclosure was said
    const daily = await database.pool.query("select calls from agent_daily where agent_id = 'a-7'");
    expect(daily.rows[0]?.calls).toBeGreaterThanOrEqual(1);
  });

  it('repeated negative lines: the cooldown, dedupe and cap hold; everything cut is stored as suppressed', async () => {
    const run = processor();
    const lines: Array<[Role, string, 'negative' | 'neutral']> = [];
    for (let i = 0; i < 40; i++) lines.push(['customer', '你们这个服务太差了，我很不满意！', 'negative']);
    const count = (rows: Awaited<ReturnType<typeof alertsOf>>, reason: string) => rows.filter((r) => r.suppressed_reason === reason).length;

    // default rule (cap 3): a warning on the 3rd line (streak), critical once it persists 60 s;
    // repeats inside 120 s are cooldown, later ones hit the open alert of that severity (dedupe)
    const before = dispatched.length;
    const { callId } = await playCall(run, lines, 12_000); // 8 minutes of complaints
    const rows = await alertsOf(callId);
    const open = rows.filter((r) => r.status === 'open');
    expect(open.map((r) => `${r.severity}/${r.reason}`)).toEqual(['warning/streak', 'critical/persistence']);
    expect(rows).toHaveLength(38);
    expect([count(rows, 'cooldown'), count(rows, 'dedupe'), count(rows, 'cap')]).toEqual([13, 23, 0]);
    expect(dispatched.length - before).toBe(2); // only open alerts are dispatched
    const m = (await database.pool.query('select alert_count, max_alert_severity from call_metrics where call_id = $1', [callId])).rows[0];
    expect(m).toEqual({ alert_count: 2, max_alert_severity: 'critical' });

    // a tenant's own version of the rule, edited by SQL: at most 1 alert per call
    await database.pool.query(
      `insert into rules (rule_id, version, tenant_id, name, kind, scope, role, severity, is_alert, enabled, config, source)
       select rule_id, version + 1, 'capped', name, kind, scope, role, severity, is_alert, enabled, '{"maxPerCall": 1}'::jsonb, 'sql'
         from rules where rule_id = 'zh.customer-negative-emotion'`,
    );
    const capped = await playCall(run, lines, 12_000, 'capped');
    const cappedRows = await alertsOf(capped.callId);
    expect(cappedRows.filter((r) => r.status === 'open').map((r) => `${r.severity}/${r.reason}`)).toEqual(['warning/streak']);
    expect(count(cappedRows, 'cap')).toBeGreaterThanOrEqual(1);
    expect(cappedRows.find((r) => r.severity === 'critical')).toMatchObject({ status: 'suppressed', suppressed_reason: 'cap' });
  });

  it('a late sentence after the call ended refreshes the metrics; PII_MODE=both keeps the original apart', async () => {
    const run = processor('both');
    const { callId, endMs } = await playCall(run, [
      ['agent', '您好，请问有什么可以帮您？', 'neutral'],
      ['customer', '我的手机号是13812345678。', 'neutral'],
    ]);
    const stored = await database.pool.query('select text, pii_redacted, pii_types from utterances where call_id = $1 and role = $2', [callId, 'customer']);
    expect(stored.rows[0]).toEqual({ text: '我的手机号是[PHONE]。', pii_redacted: true, pii_types: ['PHONE'] });
    const orig = await database.pool.query('select text from utterance_originals where call_id = $1', [callId]);
    expect(orig.rows).toEqual([{ text: '我的手机号是13812345678。' }]);
    const m1 = (await database.pool.query('select utt_customer, utterance_count from call_metrics where call_id = $1', [callId])).rows[0];
    expect(m1).toEqual({ utt_customer: 1, utterance_count: 2 });
    await run({ name: JOB_UTTERANCE, data: { callId, callStartedAt: T0, utterance: utt(callId, 'customer', 2, endMs - 500, '好的。', 'neutral') } });
    const m2 = (await database.pool.query('select utt_customer, utterance_count from call_metrics where call_id = $1', [callId])).rows[0];
    expect(m2).toEqual({ utt_customer: 2, utterance_count: 3 });
  });
});
