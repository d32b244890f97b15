/** Analytics storage against the local Postgres (own database): sentences, metrics, agent_daily, the call lock. */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../../../test/support/postgres.js';
import type { Utterance } from '../../core/types.js';
import {
  agentDayOf,
  getCallMetrics,
  listAnalyticsUtterances,
  recomputeAgentDaily,
  upsertCallMetrics,
  utteranceWatermark,
  withCallLock,
  type CallMetricsInput,
} from './analytics.js';
import { insertAlerts, type NewAlert } from './alerts.js';
import { getCall, upsertCallStart } from './calls.js';
import { deleteUtteranceOriginalsBefore, insertUtterance } from './utterances.js';

const suite = useTestDatabase({ max: 4 });

const T0 = Date.UTC(2025, 4, 6, 7, 8, 9, 10);

function utt(callId: string, role: Utterance['role'], seq: number, startMs: number, extra: Partial<Utterance> = {}): Utterance {
  return {
    callId,
    role,
    track: role === 'customer' ? 'inbound' : 'outbound',
    seq,
    startMs,
    endMs: startMs + 1500,
    text: '您好，请问有什么可以帮您？',
    words: [],
    emotion: null,
    model: 'paraformer-realtime-8k-v2',
    asrTaskId: 't',
    timing: { audioEndAt: null, finalReceivedAt: T0 + startMs + 1800 },
    ...extra,
  };
}

/** A full call_metrics row with plausible values; override what a test is about. */
function metrics(callId: string, startedAt: Date, overrides: Partial<CallMetricsInput> = {}): CallMetricsInput {
  return {
    callId,
    tenantId: 'acme',
    agentId: 'a-1',
    queueId: 'billing',
    callStartedAt: startedAt,
    durationMs: 60_000,
    utteranceCount: 10,
    lastUtteranceAt: new Date(startedAt.getTime() + 61_000),
    talkMsAgent: 20_000,
    talkMsCustomer: 30_000,
    talkRatioAgent: 0.4,
    talkRatioCustomer: 0.6,
    overlapMs: 1200,
    nonTalkMs: 8000,
    nonTalkCount: 2,
    longestSilenceMs: 5000,
    overtalksByAgent: 2,
    overtalksByCustomer: 1,
    interruptionsByAgent: 1,
    interruptionsByCustomer: 0,
    interruptionMsAgent: 1100,
    interruptionMsCustomer: 0,
    cpmAgent: 250,
    cpmCustomer: 230,
    uttAgent: 5,
    uttCustomer: 5,
    longestMonologueMsAgent: 9000,
    longestMonologueMsCustomer: 12_000,
    firstAgentResponseMs: 800,
    avgAgentResponseMs: 900,
    maxAgentResponseMs: 2500,
    negRatioCustomer: 0.5,
    negRatioAgent: 0,
    posRatioCustomer: 0.1,
    posRatioAgent: 0.2,
    sentimentCustomer: -1.5,
    sentimentAgent: 0.5,
    sentimentQCustomer: [-3, -2, null, 1],
    sentimentQAgent: [0, 0, 0.5, 1],
    sentimentTrendCustomer: 'UP',
    recovered: true,
    worstValenceCustomer: -1,
    emotionCounts: { customer: { negative: 3, neutral: 2 }, agent: { neutral: 5 } },
    details: { silences: [{ startMs: 10_000, endMs: 15_000, durationMs: 5000 }], overtalks: [], periodBasis: 'duration' },
    ruleHitCount: 2,
    categoryIds: ['zh.complaint'],
    alertCount: 1,
    maxAlertSeverity: 'warning',
    metricsVersion: 1,
    ...overrides,
  };
}

async function newCall(startedAt: Date, agentId = 'a-1', tenantId = 'acme'): Promise<string> {
  const callId = randomUUID();
  await upsertCallStart(suite.database.db, {
    callId,
    source: 'sip',
    startedAt: startedAt.getTime(),
    tenantId,
    externalIds: {},
    customParameters: {},
    roles: {},
    models: {},
    routing: {},
    agentId,
  });
  return callId;
}

describe('calls', () => {
  it('the call start stores agent, queue and source metadata', async () => {
    const callId = randomUUID();
    await upsertCallStart(suite.database.db, {
      callId,
      source: 'sip',
      startedAt: T0,
      tenantId: 'acme',
      externalIds: { sipCallId: 'x@pbx' },
      customParameters: {},
      roles: {},
      models: {},
      routing: {},
      agentId: 'agent-1025',
      queueId: 'billing',
      metadata: { siprec: { sessionId: 's-1', participants: [{ role: 'agent', aor: 'sip:1025@pbx' }] } },
    });
    expect(await getCall(suite.database.db, callId)).toMatchObject({
      agentId: 'agent-1025',
      queueId: 'billing',
      metadata: { siprec: { sessionId: 's-1', participants: [{ role: 'agent', aor: 'sip:1025@pbx' }] } },
    });
  });
});

describe('utterances for analytics', () => {
  it('lists sentences in timeline order with the analytics fields, and the watermark', async () => {
    const callId = randomUUID();
    const job = (u: Utterance) => ({ callId, callStartedAt: T0, utterance: u });
    await insertUtterance(suite.database.db, job(utt(callId, 'customer', 2, 3000, { emotion: { raw: 'angry', provider: 'qwen', confidence: null, valence: -1, arousal: 1 } })));
    await insertUtterance(suite.database.db, job(utt(callId, 'customer', 1, 0)));
    await insertUtterance(
      suite.database.db,
      job(
        utt(callId, 'agent', 1, 3000, {
          endMs: 4000,
          words: [{ startMs: 3000, endMs: 3500, text: '好的', punctuation: '，' }],
          emotion: { raw: 'negative', provider: 'paraformer', confidence: 0.8, valence: -1 },
        }),
      ),
    );
    const rows = await listAnalyticsUtterances(suite.database.db, callId);
    expect(rows.map((r) => `${r.role}${r.seq}@${r.startMs}-${r.endMs}`)).toEqual(['customer1@0-1500', 'agent1@3000-4000', 'customer2@3000-4500']);
    expect(rows[1]).toMatchObject({
      words: [{ startMs: 3000, endMs: 3500, text: '好的' }],
      emotionRaw: 'negative',
      emotionConfidence: expect.closeTo(0.8, 5),
      valence: -1,
      arousal: null,
      model: 'paraformer-realtime-8k-v2',
      charCount: 11,
    });
    expect(rows[1]!.words[0]).not.toHaveProperty('punctuation');
    expect(rows[2]).toMatchObject({ valence: -1, arousal: 1, emotionConfidence: null });
    const wm = utteranceWatermark(rows);
    expect(wm.utteranceCount).toBe(3);
    expect(wm.lastUtteranceAt?.getTime()).toBe(Math.max(...rows.map((r) => r.persistedAt.getTime())));
    expect(utteranceWatermark([])).toEqual({ utteranceCount: 0, lastUtteranceAt: null });
  });

  it('stores search tokens and PII flags; PII mode both writes the original once, in the same transaction', async () => {
    const callId = randomUUID();
    const u = utt(callId, 'customer', 1, 0, { text: '我的手机号是[PHONE]' });
    const extras = { seg: '我 的 手机号 是 PHONE', segVersion: 'jieba-test', piiRedacted: true, piiTypes: ['PHONE'], originalText: '我的手机号是13812345678', charCount: 17 };
    expect(await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: u }, extras)).toEqual({ inserted: true });
    expect(await insertUtterance(suite.database.db, { callId, callStartedAt: T0, utterance: u }, extras)).toEqual({ inserted: false });
    const stored = await suite.database.db.execute<{ text: string; seg: string; seg_version: string; tsv: string; pii_redacted: boolean; pii_types: string[]; char_count: number }>(
      sql`select text, seg, seg_version, tsv::text as tsv, pii_redacted, pii_types, char_count from utterances where call_id = ${callId}`,
    );
    expect(stored.rows).toEqual([
      { text: '我的手机号是[PHONE]', seg: '我 的 手机号 是 PHONE', seg_version: 'jieba-test', tsv: "'phone':5 '我':1 '手机号':3 '是':4 '的':2", pii_redacted: true, pii_types: ['PHONE'], char_count: 17 },
    ]);
    const originals = await suite.database.db.execute<{ text: string }>(sql`select text from utterance_originals where call_id = ${callId}`);
    expect(originals.rows).toEqual([{ text: '我的手机号是13812345678' }]);

    // defaults: not indexed, not redacted
    const plain = randomUUID();
    await insertUtterance(suite.database.db, { callId: plain, callStartedAt: T0, utterance: utt(plain, 'agent', 1, 0) });
    const p = await suite.database.db.execute<{ seg: string | null; seg_version: string | null; tsv: string; pii_redacted: boolean; pii_types: string[] }>(
      sql`select seg, seg_version, tsv::text as tsv, pii_redacted, pii_types from utterances where call_id = ${plain}`,
    );
    expect(p.rows).toEqual([{ seg: null, seg_version: null, tsv: '', pii_redacted: false, pii_types: [] }]);
    expect((await suite.database.db.execute(sql`select 1 from utterance_originals where call_id = ${plain}`)).rows).toEqual([]);

    // retention: originals older than the cut-off go, the redacted sentence stays
    await suite.database.db.execute(sql`update utterance_originals set created_at = now() - interval '8 days' where call_id = ${callId}`);
    expect(await deleteUtteranceOriginalsBefore(suite.database.db, new Date(Date.now() - 7 * 86_400_000))).toBe(1);
    expect((await suite.database.db.execute(sql`select 1 from utterance_originals where call_id = ${callId}`)).rows).toEqual([]);
    expect((await suite.database.db.execute(sql`select 1 from utterances where call_id = ${callId}`)).rows).toHaveLength(1);
  });
});

describe('call_metrics', () => {
  it('upserting twice leaves one row with the latest values; every column is replaced', async () => {
    const at = new Date(T0);
    const callId = await newCall(at);
    expect(await upsertCallMetrics(suite.database.db, metrics(callId, at))).toEqual({ written: true });
    const first = await getCallMetrics(suite.database.db, callId);
    expect(first).toMatchObject({ sentimentQCustomer: [-3, -2, null, 1], categoryIds: ['zh.complaint'], recovered: true });

    const { queueId: _q, details: _d, ...withoutOptional } = metrics(callId, at, { utteranceCount: 11, sentimentCustomer: -2 });
    expect(await upsertCallMetrics(suite.database.db, withoutOptional)).toEqual({ written: true });
    const second = await getCallMetrics(suite.database.db, callId);
    expect(second).toMatchObject({ utteranceCount: 11, sentimentCustomer: -2, queueId: null, details: {} });
    expect(second!.computedAt.getTime()).toBeGreaterThanOrEqual(first!.computedAt.getTime());
    const n = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from call_metrics where call_id = ${callId}`);
    expect(n.rows[0]?.n).toBe(1);
  });

  it('an older metrics_version never overwrites a newer one', async () => {
    const at = new Date(T0);
    const callId = await newCall(at);
    await upsertCallMetrics(suite.database.db, metrics(callId, at, { metricsVersion: 2, cpmAgent: 300 }));
    expect(await upsertCallMetrics(suite.database.db, metrics(callId, at, { metricsVersion: 1, cpmAgent: 100 }))).toEqual({ written: false });
    expect(await getCallMetrics(suite.database.db, callId)).toMatchObject({ metricsVersion: 2, cpmAgent: 300 });
  });
});

describe('agent_daily', () => {
  const open = (callId: string, seq: number, severity: 'warning' | 'critical', status: 'open' | 'suppressed' = 'open'): NewAlert => ({
    ruleId: 'customer-negative',
    ruleVersion: 1,
    role: 'customer',
    severity,
    status,
    suppressedReason: status === 'suppressed' ? 'cooldown' : null,
    reason: 'share',
    dedupeKey: `${callId}:customer-negative:${severity}:${seq}`,
    trigger: { role: 'customer', seq, endMs: 1000 * seq },
    evidence: [],
    finalReceivedAt: null,
  });

  it('recomputes a day from call_metrics in the given time zone, idempotently', async () => {
    const agent = `agent-${randomUUID().slice(0, 8)}`;
    // 2025-05-06 10:00 UTC = 18:00 Shanghai; 2025-05-06 17:00 UTC = 2025-05-07 01:00 Shanghai
    const early = new Date(Date.UTC(2025, 4, 6, 10));
    const late = new Date(Date.UTC(2025, 4, 6, 17));
    const prevDay = new Date(Date.UTC(2025, 4, 5, 23));
    const c1 = await newCall(early, agent);
    const c2 = await newCall(late, agent);
    const c3 = await newCall(prevDay, agent);
    await upsertCallMetrics(suite.database.db, metrics(c1, early, { agentId: agent, ruleHitCount: 2 }));
    await upsertCallMetrics(
      suite.database.db,
      metrics(c2, late, {
        agentId: agent,
        durationMs: null,
        talkMsAgent: 10_000,
        talkRatioAgent: null,
        negRatioCustomer: null,
        recovered: false,
        sentimentQCustomer: [0, 0, 0, -2],
        ruleHitCount: 3,
      }),
    );
    await upsertCallMetrics(suite.database.db, metrics(c3, prevDay, { agentId: agent }));
    await insertAlerts(suite.database.db, { callId: c1, callStartedAt: early, tenantId: 'acme', agentId: agent }, [open(c1, 1, 'warning'), open(c1, 2, 'critical'), open(c1, 3, 'critical', 'suppressed')], []);
    await insertAlerts(suite.database.db, { callId: c2, callStartedAt: late, tenantId: 'acme', agentId: agent }, [open(c2, 1, 'critical')], []);

    const utc = await recomputeAgentDaily(suite.database.db, { tenantId: 'acme', day: '2025-05-06', agentId: agent });
    expect(utc).toMatchObject({
      day: '2025-05-06',
      timeZone: 'UTC',
      calls: 2,
      talkMs: 30_000,
      durationMs: 60_000,
      nWithDuration: 1,
      sumTalkRatio: expect.closeTo(0.4, 5),
      nWithTalkRatio: 1,
      sumNegRatioCustomer: expect.closeTo(0.5, 5),
      nWithEmotion: 1,
      alerts: 3,
      criticalAlerts: 2,
      ruleHits: 5,
      recoveredCalls: 1,
      negativeEndCalls: 1,
    });
    const again = await recomputeAgentDaily(suite.database.db, { tenantId: 'acme', day: '2025-05-06', agentId: agent });
    expect({ ...again, computedAt: null }).toEqual({ ...utc, computedAt: null });

    const sh6 = await recomputeAgentDaily(suite.database.db, { tenantId: 'acme', day: '2025-05-06', agentId: agent }, 'Asia/Shanghai');
    expect(sh6).toMatchObject({ timeZone: 'Asia/Shanghai', calls: 2, alerts: 2, criticalAlerts: 1, ruleHits: 4 }); // c3 (07:00 local) + c1
    const sh7 = await recomputeAgentDaily(suite.database.db, { tenantId: 'acme', day: '2025-05-07', agentId: agent }, 'Asia/Shanghai');
    expect(sh7).toMatchObject({ calls: 1, alerts: 1, criticalAlerts: 1, ruleHits: 3, negativeEndCalls: 1 });
    expect(agentDayOf(late, 'Asia/Shanghai')).toBe('2025-05-07');
    expect(agentDayOf(late)).toBe('2025-05-06');

    const rows = await suite.database.db.execute<{ n: number }>(sql`select count(*)::int as n from agent_daily where agent_id = ${agent}`);
    expect(rows.rows[0]?.n).toBe(2); // (05-06 overwritten by the Shanghai recompute, 05-07)
  });

  it('deletes the row when the day has no calls left, and refuses a malformed day', async () => {
    const agent = `agent-${randomUUID().slice(0, 8)}`;
    const at = new Date(Date.UTC(2025, 5, 1, 12));
    const c = await newCall(at, agent);
    await upsertCallMetrics(suite.database.db, metrics(c, at, { agentId: agent }));
    const key = { tenantId: 'acme', day: '2025-06-01', agentId: agent };
    expect(await recomputeAgentDaily(suite.database.db, key)).toMatchObject({ calls: 1 });
    await suite.database.db.execute(sql`delete from calls where id = ${c}`);
    expect(await recomputeAgentDaily(suite.database.db, key)).toBeNull();
    const rows = await suite.database.db.execute(sql`select 1 from agent_daily where agent_id = ${agent}`);
    expect(rows.rows).toEqual([]);
    expect(await recomputeAgentDaily(suite.database.db, { ...key, agentId: 'nobody' })).toBeNull();
    await expect(recomputeAgentDaily(suite.database.db, { ...key, day: '2025-6-1' })).rejects.toMatchObject({ code: 'ERR_DB_INVALID_DAY' });
  });
});

describe('withCallLock', () => {
  async function waitingLocks(client: pg.Client): Promise<number> {
    const r = await client.query("select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted");
    return (r.rows[0] as { n: number }).n;
  }

  it('serialises work on one call, not on different calls', async () => {
    const callId = randomUUID();
    const events: string[] = [];
    let releaseA!: () => void;
    const gate = new Promise<void>((r) => (releaseA = r));
    let entered!: () => void;
    const aEntered = new Promise<void>((r) => (entered = r));
    const a = withCallLock(suite.database.db, callId, async () => {
      events.push('a-start');
      entered();
      await gate;
      events.push('a-end');
    });
    await aEntered;
    // another call is not blocked
    await withCallLock(suite.database.db, randomUUID(), async () => {
      events.push('other');
    });
    const b = withCallLock(suite.database.db, callId, async (tx) => {
      events.push('b-start');
      const r = await tx.execute<{ one: number }>(sql`select 1 as one`);
      return r.rows[0]?.one;
    });
    const probe = new pg.Client({ connectionString: suite.testDb.url });
    await probe.connect();
    try {
      const deadline = Date.now() + 10_000;
      while ((await waitingLocks(probe)) === 0) {
        if (Date.now() > deadline) throw new Error('b never waited for the lock');
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await probe.end();
    }
    expect(events).toEqual(['a-start', 'other']);
    releaseA();
    await a;
    expect(await b).toBe(1);
    expect(events).toEqual(['a-start', 'other', 'a-end', 'b-start']);
  });

  it('rolls back the work when fn throws, and releases the lock', async () => {
    const callId = randomUUID();
    const at = new Date(T0);
    const c = await newCall(at);
    await expect(
      withCallLock(suite.database.db, callId, async (tx) => {
        await upsertCallMetrics(tx, metrics(c, at));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await getCallMetrics(suite.database.db, c)).toBeUndefined();
    expect(await withCallLock(suite.database.db, callId, async () => 'again')).toBe('again');
  });
});
