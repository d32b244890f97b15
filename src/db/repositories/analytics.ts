/**
 * QA analytics storage: the sentences analytics reads, the per-call metrics row (upsert on
 * call_id), the per-agent daily rollup (recomputed from call_metrics, never incremented), and
 * the per-call advisory lock that serialises a worker's analytics of one call.
 *
 * Facts relied on: pg_advisory_xact_lock(int4, int4) is released at transaction end and its
 * two-key space is separate from the one-bigint key migrate.ts uses (PostgreSQL docs §9.27.10);
 * `timestamp AT TIME ZONE zone` reads a local time in `zone` (so day bounds follow DST rules).
 */
import { and, asc, eq, getTableColumns, sql } from 'drizzle-orm';
import type { AnalyticsUtterance } from '../../analytics/types.js';
import { AppError } from '../../core/errors.js';
import type { Db, DbExecutor, Tx } from '../client.js';
import { agentDaily, callMetrics, utterances, type AgentDailyRow, type CallMetricsRow, type NewCallMetricsRow } from '../schema.js';

/** An AnalyticsUtterance plus when its row was written (for call_metrics.last_utterance_at). */
export interface StoredAnalyticsUtterance extends AnalyticsUtterance {
  readonly persistedAt: Date;
  /** When the sentence's final result reached callscribe (alert latency mark). */
  readonly finalReceivedAt: Date;
}

function valenceOf(v: number | null): -1 | 0 | 1 | null {
  return v === -1 || v === 0 || v === 1 ? v : null;
}

function arousalOf(v: number | null): 0 | 1 | null {
  return v === 0 || v === 1 ? v : null;
}

/** A call's final sentences (stored, i.e. redacted text) in timeline order: start, end, role, seq. */
export async function listAnalyticsUtterances(db: DbExecutor, callId: string): Promise<StoredAnalyticsUtterance[]> {
  const rows = await db
    .select({
      role: utterances.role,
      seq: utterances.seq,
      startMs: utterances.startMs,
      endMs: utterances.endMs,
      text: utterances.text,
      charCount: utterances.charCount,
      words: utterances.words,
      emotionRaw: utterances.emotionRaw,
      emotionConfidence: utterances.emotionConfidence,
      valence: utterances.valence,
      arousal: utterances.arousal,
      model: utterances.model,
      persistedAt: utterances.persistedAt,
      finalReceivedAt: utterances.finalReceivedAt,
    })
    .from(utterances)
    .where(eq(utterances.callId, callId))
    .orderBy(asc(utterances.startMs), asc(utterances.endMs), asc(utterances.role), asc(utterances.seq));
  return rows.map((r) => ({
    ...r,
    words: r.words.map((w) => ({ startMs: w.startMs, endMs: w.endMs, text: w.text })),
    valence: valenceOf(r.valence),
    arousal: arousalOf(r.arousal),
  }));
}

/** call_metrics.utterance_count / last_utterance_at of the sentences the metrics were computed from. */
export function utteranceWatermark(rows: readonly { readonly persistedAt: Date }[]): {
  utteranceCount: number;
  lastUtteranceAt: Date | null;
} {
  let last: Date | null = null;
  for (const r of rows) if (last === null || r.persistedAt > last) last = r.persistedAt;
  return { utteranceCount: rows.length, lastUtteranceAt: last };
}

/** A call_metrics row as written (computed_at is set by the database). */
export type CallMetricsInput = Omit<NewCallMetricsRow, 'computedAt'>;

/** Every column but the key, set from the proposed row: an upsert replaces the whole row. */
const REPLACE_ALL = Object.fromEntries(
  Object.entries(getTableColumns(callMetrics))
    .filter(([, column]) => column.name !== 'call_id')
    .map(([key, column]) => [key, sql.raw(`excluded."${column.name}"`)]),
);

/**
 * Inserts or replaces the call's metrics row (every column: one left out of `row` gets its
 * default). A row computed by an older metrics_version never overwrites a newer one: then
 * `written` is false.
 */
export async function upsertCallMetrics(db: DbExecutor, row: CallMetricsInput): Promise<{ written: boolean }> {
  const rows = await db
    .insert(callMetrics)
    .values({ ...row, computedAt: sql`now()` })
    .onConflictDoUpdate({
      target: callMetrics.callId,
      set: REPLACE_ALL,
      setWhere: sql`${callMetrics.metricsVersion} <= excluded.metrics_version`,
    })
    .returning({ callId: callMetrics.callId });
  return { written: rows.length > 0 };
}

export async function getCallMetrics(db: DbExecutor, callId: string): Promise<CallMetricsRow | undefined> {
  const rows = await db.select().from(callMetrics).where(eq(callMetrics.callId, callId)).limit(1);
  return rows[0];
}

export interface AgentDayKey {
  readonly tenantId: string;
  /** Calendar day 'YYYY-MM-DD' in the rollup's time zone. */
  readonly day: string;
  readonly agentId: string;
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The agent_daily day of a call started at `at`, in `timeZone` (IANA name), as 'YYYY-MM-DD'. */
export function agentDayOf(at: Date, timeZone = 'UTC'): string {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year')}-${get('month')}-${get('day')}`;
}

/**
 * Recomputes one agent_daily row from call_metrics: the agent's calls of the tenant whose
 * call_started_at falls on `day` in `timeZone` (default 'UTC'; e.g. 'Asia/Shanghai'). Alerts are
 * counted from the alerts table (not suppressed). Idempotent: run it after every call_metrics
 * upsert of that agent and day, in any order, any number of times. No calls left: the row is
 * deleted and null returned.
 */
export async function recomputeAgentDaily(
  db: DbExecutor,
  key: AgentDayKey,
  timeZone = 'UTC',
): Promise<AgentDailyRow | null> {
  if (!DAY.test(key.day)) {
    throw new AppError('ERR_DB_INVALID_DAY', `agent_daily day must be YYYY-MM-DD, got ${JSON.stringify(key.day)}`, {
      category: 'invalid_request',
    });
  }
  const { tenantId, day, agentId } = key;
  const result = await db.execute<{ deleted: boolean }>(sql`
    WITH day_calls AS (
      SELECT * FROM call_metrics
      WHERE tenant_id = ${tenantId} AND agent_id = ${agentId}
        AND call_started_at >= (${day}::date::timestamp AT TIME ZONE ${timeZone})
        AND call_started_at < ((${day}::date + 1)::timestamp AT TIME ZONE ${timeZone})
    ),
    agg AS (
      SELECT count(*)::int AS calls,
        coalesce(sum(talk_ms_agent), 0)::bigint AS talk_ms,
        coalesce(sum(duration_ms), 0)::bigint AS duration_ms,
        count(duration_ms)::int AS n_with_duration,
        coalesce(sum(talk_ratio_agent::float8), 0) AS sum_talk_ratio,
        count(talk_ratio_agent)::int AS n_with_talk_ratio,
        coalesce(sum(neg_ratio_customer::float8), 0) AS sum_neg_ratio_customer,
        count(neg_ratio_customer)::int AS n_with_emotion,
        coalesce(sum(rule_hit_count), 0)::int AS rule_hits,
        (count(*) FILTER (WHERE recovered))::int AS recovered_calls,
        (count(*) FILTER (WHERE sentiment_q_customer[4] < 0))::int AS negative_end_calls
      FROM day_calls
    ),
    al AS (
      SELECT count(*)::int AS alerts, (count(*) FILTER (WHERE a.severity = 'critical'))::int AS critical_alerts
      FROM alerts a
      WHERE a.call_id IN (SELECT call_id FROM day_calls) AND a.status <> 'suppressed'
    ),
    upserted AS (
      INSERT INTO agent_daily (tenant_id, day, agent_id, time_zone, calls, talk_ms, duration_ms, n_with_duration,
        sum_talk_ratio, n_with_talk_ratio, sum_neg_ratio_customer, n_with_emotion, alerts, critical_alerts,
        rule_hits, recovered_calls, negative_end_calls, computed_at)
      SELECT ${tenantId}, ${day}::date, ${agentId}, ${timeZone}, agg.calls, agg.talk_ms, agg.duration_ms,
        agg.n_with_duration, agg.sum_talk_ratio, agg.n_with_talk_ratio, agg.sum_neg_ratio_customer,
        agg.n_with_emotion, al.alerts, al.critical_alerts, agg.rule_hits, agg.recovered_calls,
        agg.negative_end_calls, now()
      FROM agg, al WHERE agg.calls > 0
      ON CONFLICT (tenant_id, day, agent_id) DO UPDATE SET
        time_zone = excluded.time_zone, calls = excluded.calls, talk_ms = excluded.talk_ms,
        duration_ms = excluded.duration_ms, n_with_duration = excluded.n_with_duration,
        sum_talk_ratio = excluded.sum_talk_ratio, n_with_talk_ratio = excluded.n_with_talk_ratio,
        sum_neg_ratio_customer = excluded.sum_neg_ratio_customer, n_with_emotion = excluded.n_with_emotion,
        alerts = excluded.alerts, critical_alerts = excluded.critical_alerts, rule_hits = excluded.rule_hits,
        recovered_calls = excluded.recovered_calls, negative_end_calls = excluded.negative_end_calls,
        computed_at = excluded.computed_at
      RETURNING 1
    ),
    deleted AS (
      DELETE FROM agent_daily
      WHERE tenant_id = ${tenantId} AND day = ${day}::date AND agent_id = ${agentId}
        AND (SELECT calls FROM agg) = 0
      RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM deleted) AS deleted, EXISTS (SELECT 1 FROM upserted) AS upserted
  `);
  if (result.rows[0]?.deleted === true) return null;
  const rows = await db
    .select()
    .from(agentDaily)
    .where(and(eq(agentDaily.tenantId, tenantId), eq(agentDaily.day, day), eq(agentDaily.agentId, agentId)))
    .limit(1);
  return rows[0] ?? null;
}

/** Namespace (first key) of the per-call advisory locks: "CALL" in ASCII. */
export const CALL_LOCK_NAMESPACE = 0x43414c4c;

/**
 * Runs `fn` in a transaction that first takes pg_advisory_xact_lock(CALL_LOCK_NAMESPACE,
 * hashtext(callId)): two workers analysing the same call run one after the other (a hash
 * collision only serialises two unrelated calls). The lock is released at commit/rollback.
 */
export async function withCallLock<T>(db: Db, callId: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${CALL_LOCK_NAMESPACE}::int4, hashtext(${callId}))`);
    return fn(tx);
  });
}
