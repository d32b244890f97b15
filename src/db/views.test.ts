/**
 * The QA views, Chinese search on utterances.tsv and the optional pg_trgm index, on a small
 * seeded call in a database of its own (local Postgres).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createTestDatabase, useTestDatabase } from '../../test/support/postgres.js';
import type { Utterance } from '../core/types.js';
import { MIGRATIONS_FOLDER } from './migrate.js';
import { upsertCallMetrics } from './repositories/analytics.js';
import { createAlertStore, insertAlerts, type NewAlert } from './repositories/alerts.js';
import { upsertCallStart } from './repositories/calls.js';
import { insertLiveRuleHits, replacePostcallRuleHits } from './repositories/rules.js';
import { insertUtterance } from './repositories/utterances.js';

const suite = useTestDatabase({ max: 2 });

const STARTED = new Date(Date.UTC(2025, 4, 6, 15, 30)); // 23:30 in Shanghai

function utt(callId: string, role: Utterance['role'], seq: number, startMs: number, text: string, valence: -1 | 0 | 1 | null, confidence: number | null = 0.9): Utterance {
  return {
    callId,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    seq,
    startMs,
    endMs: startMs + 2000,
    text,
    words: [],
    emotion: valence === null ? null : { raw: valence === -1 ? (confidence === null ? 'angry' : 'negative') : 'neutral', provider: 'p', confidence, valence },
    model: 'm',
    asrTaskId: 't',
    timing: { audioEndAt: null, finalReceivedAt: STARTED.getTime() + startMs + 2300 },
  };
}

async function seedCall(tenantId: string): Promise<string> {
  const callId = randomUUID();
  await upsertCallStart(suite.database.db, {
    callId,
    source: 'twilio',
    startedAt: STARTED.getTime(),
    tenantId,
    externalIds: {},
    customParameters: {},
    roles: {},
    models: {},
    routing: {},
    agentId: 'agent-9',
    queueId: 'billing',
  });
  const put = (u: Utterance, seg: string) => insertUtterance(suite.database.db, { callId, callStartedAt: STARTED.getTime(), utterance: u }, { seg });
  await put(utt(callId, 'agent', 1, 0, '您好，请问有什么可以帮您？', 0), '您好 请问 有 什么 可以 帮 您');
  await put(utt(callId, 'customer', 1, 3000, '我要投诉，退款到现在还没到账', -1, 0.7), '我 要 投诉 退款 到 现在 还 没 到账 我要 要投 投诉 退款 到账');
  await put(utt(callId, 'customer', 2, 65_000, '你们这个服务太差了，我要投诉', -1, 0.95), '你们 这个 服务 太 差 了 我 要 投诉 服务 投诉');
  await put(utt(callId, 'agent', 2, 6_005_000, '非常抱歉，我马上为您处理退款', 0), '非常 抱歉 我 马上 为 您 处理 退款 退款');
  return callId;
}

describe('v_transcript and Chinese search', () => {
  it('formats offsets as mm:ss (minutes beyond 99 too) with wall-clock times', async () => {
    const callId = await seedCall('search');
    const rows = await suite.database.db.execute<{ role: string; seq: number; at: string; until: string; spoken_at: Date; valence: number | null }>(
      sql`select role, seq, at, until, spoken_at, valence from v_transcript where call_id = ${callId} order by start_ms`,
    );
    expect(rows.rows.map((r) => [r.role, r.seq, r.at, r.until])).toEqual([
      ['agent', 1, '00:00', '00:02'],
      ['customer', 1, '00:03', '00:05'],
      ['customer', 2, '01:05', '01:07'],
      ['agent', 2, '100:05', '100:07'],
    ]);
    expect(new Date(rows.rows[2]!.spoken_at).getTime()).toBe(STARTED.getTime() + 65_000);
  });

  it('finds sentences through tsv with to_tsquery(simple): words, AND, OR, and bigram fallbacks', async () => {
    const callId = await seedCall('search');
    const find = async (query: string) => {
      const r = await suite.database.db.execute<{ k: string }>(sql`
        select role || seq as k from utterances
        where call_id = ${callId} and tsv @@ to_tsquery('simple', ${query})
        order by start_ms`);
      return r.rows.map((x) => x.k);
    };
    expect(await find('投诉')).toEqual(['customer1', 'customer2']);
    expect(await find('投诉 & 退款')).toEqual(['customer1']);
    expect(await find('服务 | 退款')).toEqual(['customer1', 'customer2', 'agent2']);
    expect(await find('到账')).toEqual(['customer1']);
    expect(await find('要投')).toEqual(['customer1']); // a CJK bigram the segmenter added
    expect(await find('投诉 & !退款')).toEqual(['customer2']);
    expect(await find('律师')).toEqual([]);
  });

  it('the search is served by the GIN index on tsv', async () => {
    const client = new pg.Client({ connectionString: suite.testDb.url });
    await client.connect();
    try {
      await client.query('SET enable_seqscan = off');
      const plan = await client.query("EXPLAIN SELECT 1 FROM utterances WHERE tsv @@ to_tsquery('simple', '投诉')");
      expect(plan.rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n')).toContain('utterances_tsv_idx');
    } finally {
      await client.end();
    }
  });

  it('has the pg_trgm substring index exactly when the extension is available', async () => {
    const available = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from pg_available_extensions where name = 'pg_trgm'`);
    const index = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from pg_indexes where indexname = 'utterances_text_trgm_idx'`);
    expect(index.rows[0]?.n).toBe(available.rows[0]?.n);
    const callId = await seedCall('trgm');
    const hits = await suite.database.db.execute<{ seq: number }>(sql`select seq from utterances where call_id = ${callId} and text like '%要投诉%' order by start_ms`);
    expect(hits.rows.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('the pg_trgm step of the migration never fails for a role that may not create extensions', async () => {
    const migration = readFileSync(join(MIGRATIONS_FOLDER, '0005_qa_views.sql'), 'utf8');
    const block = /DO \$\$[\s\S]*?\$\$;/.exec(migration)?.[0];
    expect(block).toBeDefined();
    const scratch = await createTestDatabase({ migrate: false });
    const role = `callscribe_noext_${randomBytes(4).toString('hex')}`;
    const client = new pg.Client({ connectionString: scratch.url });
    await client.connect();
    try {
      await client.query(`CREATE ROLE ${role} NOLOGIN`);
      await client.query(`CREATE TABLE utterances (text text NOT NULL)`);
      await client.query(`ALTER TABLE utterances OWNER TO ${role}`);
      await client.query(`SET ROLE ${role}`);
      await client.query(block!);
      await client.query('RESET ROLE');
      const ext = await client.query("select count(*)::int as n from pg_extension where extname = 'pg_trgm'");
      expect((ext.rows[0] as { n: number }).n).toBe(0);
    } finally {
      await client.query('RESET ROLE').catch(() => undefined);
      await client.end();
      await scratch.drop();
      const admin = new pg.Client({ connectionString: suite.testDb.url });
      await admin.connect();
      await admin.query(`DROP ROLE IF EXISTS ${role}`).finally(() => admin.end());
    }
  });
});

describe('QA views', () => {
  const store = () => createAlertStore(suite.database.db);
  const decision = (callId: string, ruleId: string, seq: number, overrides: Partial<NewAlert> = {}): NewAlert => ({
    ruleId,
    ruleVersion: 1,
    role: 'customer',
    severity: 'warning',
    status: 'open',
    suppressedReason: null,
    reason: 'share',
    dedupeKey: `${callId}:${ruleId}:warning:${seq}`,
    trigger: { role: 'customer', seq, endMs: seq * 1000 },
    evidence: [],
    finalReceivedAt: null,
    ...overrides,
  });

  it('v_call_summary: one row per call with metrics, worst emotion, alerts, hits, staleness', async () => {
    const callId = await seedCall('summary');
    const bare = await suite.database.db.execute<Record<string, unknown>>(sql`select * from v_call_summary where call_id = ${callId}`);
    expect(bare.rows).toHaveLength(1);
    expect(bare.rows[0]).toMatchObject({ agent_id: 'agent-9', utterance_count: null, metrics_stale: null, alert_count: 0, worst_emotion_customer: 'negative' });

    const ctx = { callId, callStartedAt: STARTED, tenantId: 'summary', agentId: 'agent-9' };
    const [a1] = await insertAlerts(suite.database.db, ctx, [decision(callId, 'r-sum', 1, { severity: 'critical' })], []);
    await insertAlerts(suite.database.db, ctx, [decision(callId, 'r-sum', 2), decision(callId, 'r-sum', 3, { status: 'suppressed', suppressedReason: 'cap' })], []);
    await store().transition(a1!.alertId, 'resolve', 's', new Date());
    await insertLiveRuleHits(suite.database.db, callId, STARTED, [
      { ruleId: 'kw', ruleVersion: 1, kind: 'keyword', role: 'customer', severity: 'info', startMs: 3000, endMs: 5000, seqFrom: 1, seqTo: 1, matched: ['投诉'], evidence: [] },
    ]);
    await replacePostcallRuleHits(suite.database.db, callId, STARTED, [
      { ruleId: 'sil', ruleVersion: 1, kind: 'silence', role: null, severity: 'info', startMs: 5000, endMs: 65_000, matched: [], evidence: [] },
    ]);
    await upsertCallMetrics(suite.database.db, {
      callId,
      tenantId: 'summary',
      agentId: 'agent-9',
      callStartedAt: STARTED,
      durationMs: 6_010_000,
      utteranceCount: 4,
      lastUtteranceAt: new Date(),
      talkMsAgent: 4000,
      talkMsCustomer: 4000,
      overlapMs: 0,
      nonTalkMs: 60_000,
      nonTalkCount: 2,
      longestSilenceMs: 58_000,
      overtalksByAgent: 0,
      overtalksByCustomer: 0,
      interruptionsByAgent: 0,
      interruptionsByCustomer: 0,
      interruptionMsAgent: 0,
      interruptionMsCustomer: 0,
      uttAgent: 2,
      uttCustomer: 2,
      longestMonologueMsAgent: 2000,
      longestMonologueMsCustomer: 2000,
      negRatioCustomer: 1,
      sentimentCustomer: -4,
      metricsVersion: 1,
      categoryIds: ['kw', 'sil'],
    });
    const row = (await suite.database.db.execute<Record<string, unknown>>(sql`select * from v_call_summary where call_id = ${callId}`)).rows[0];
    expect(row).toMatchObject({
      tenant_id: 'summary',
      queue_id: 'billing',
      duration_ms: 6_010_000,
      utterance_count: 4,
      neg_ratio_customer: 1,
      category_ids: ['kw', 'sil'],
      worst_emotion_customer: 'negative',
      worst_emotion_customer_ms: 65_000, // the more confident of the two negative sentences
      alert_count: 2,
      open_alerts: 1,
      suppressed_alerts: 1,
      max_alert_severity: 'critical',
      rule_hits: 2,
      metrics_stale: false,
    });
    // a late sentence makes the metrics stale
    await insertUtterance(suite.database.db, { callId, callStartedAt: STARTED.getTime(), utterance: utt(callId, 'customer', 3, 6_009_000, '好的', 0) });
    const stale = await suite.database.db.execute<{ metrics_stale: boolean }>(sql`select metrics_stale from v_call_summary where call_id = ${callId}`);
    expect(stale.rows[0]?.metrics_stale).toBe(true);
  });

  it('v_alert_precision: tp / (tp + fp) among alerts with that feedback, per rule version', async () => {
    const callId = await seedCall('precision');
    const ctx = { callId, callStartedAt: STARTED, tenantId: 'precision', agentId: null };
    const out = await insertAlerts(
      suite.database.db,
      ctx,
      [1, 2, 3, 4, 5].map((seq) => decision(callId, 'r-prec', seq)).concat(
        decision(callId, 'r-prec', 6, { status: 'suppressed', suppressedReason: 'cooldown' }),
        decision(callId, 'r-prec', 7, { ruleVersion: 2 }),
      ),
      [],
    );
    const fb = ['true_positive', 'true_positive', 'false_positive', 'not_actionable'] as const;
    for (const [i, f] of fb.entries()) await store().setFeedback(out[i]!.alertId, f, 's', new Date());
    await store().setFeedback(out[6]!.alertId, 'false_positive', 's', new Date());
    const rows = await suite.database.db.execute<Record<string, unknown>>(
      sql`select rule_version, alerts, suppressed, with_feedback, tp, fp, na, precision from v_alert_precision where rule_id = 'r-prec' order by rule_version`,
    );
    expect(rows.rows).toEqual([
      { rule_version: 1, alerts: 5, suppressed: 1, with_feedback: 4, tp: 2, fp: 1, na: 1, precision: 2 / 3 },
      { rule_version: 2, alerts: 1, suppressed: 0, with_feedback: 1, tp: 0, fp: 1, na: 0, precision: 0 },
    ]);
  });

  it('v_alert_latency: p50/p95 per day of commit and first delivery after the final, in the session time zone', async () => {
    const callId = await seedCall('latency');
    const ctx = { callId, callStartedAt: STARTED, tenantId: 'latency', agentId: null };
    const commitMs = [100, 200, 300, 400, 1000];
    const out = await insertAlerts(suite.database.db, ctx, commitMs.map((_, i) => decision(callId, 'r-lat', i + 1)), []);
    // day 2031-03-04 UTC, 23:00 → 07:00 on 03-05 in Shanghai
    const finalAt = Date.UTC(2031, 2, 4, 23);
    for (const [i, a] of out.entries()) {
      await suite.database.db.execute(sql`update alerts set final_received_at = ${new Date(finalAt)}, committed_at = ${new Date(finalAt + commitMs[i]!)}
        where alert_id = ${a.alertId}`);
    }
    // two delivered: 500 ms and 1500 ms after the final
    await store().recordDelivery(out[0]!.alertId, 'supervisor', 'supervisor', { ok: true, at: new Date(finalAt + 500) });
    await store().recordDelivery(out[1]!.alertId, 'supervisor', 'supervisor', { ok: true, at: new Date(finalAt + 1500) });
    const client = new pg.Client({ connectionString: suite.testDb.url });
    await client.connect();
    try {
      const read = async () =>
        (await client.query("select to_char(day, 'YYYY-MM-DD') as day, alerts, with_final, p50_commit_ms, p95_commit_ms, delivered, p50_delivery_ms, p95_delivery_ms from v_alert_latency where day between '2031-03-01' and '2031-03-09'")).rows;
      await client.query("SET TIME ZONE 'UTC'");
      expect(await read()).toEqual([
        // percentile_cont: p95 of 5 values = v[3] + 0.8 (v[4] − v[3]) = 400 + 0.8 × 600
        {
          day: '2031-03-04',
          alerts: 5,
          with_final: 5,
          p50_commit_ms: 300,
          p95_commit_ms: expect.closeTo(880, 6),
          delivered: 2,
          p50_delivery_ms: 1000,
          p95_delivery_ms: expect.closeTo(1450, 6),
        },
      ]);
      await client.query("SET TIME ZONE 'Asia/Shanghai'");
      expect((await read()).map((r: { day: string }) => r.day)).toEqual(['2031-03-05']);
    } finally {
      await client.end();
    }
  });

  it('v_agent_daily: averages are sums over counts', async () => {
    await suite.database.db.execute(sql`insert into agent_daily (tenant_id, day, agent_id, time_zone, calls, talk_ms, duration_ms, n_with_duration,
      sum_talk_ratio, n_with_talk_ratio, sum_neg_ratio_customer, n_with_emotion, alerts, critical_alerts, rule_hits, recovered_calls, negative_end_calls)
      values ('v', '2025-05-06', 'a', 'Asia/Shanghai', 4, 100000, 300000, 3, 1.5, 3, 0.9, 2, 2, 1, 7, 1, 0)`);
    const row = (await suite.database.db.execute<Record<string, unknown>>(sql`select * from v_agent_daily where tenant_id = 'v'`)).rows[0];
    expect(row).toMatchObject({ calls: 4, avg_duration_ms: 100000, avg_talk_ratio: 0.5, avg_neg_ratio_customer: 0.45, alerts_per_call: 0.5 });
  });
});
