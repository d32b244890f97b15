/**
 * Postgres schema (drizzle-orm pg-core). Dashboards query these tables directly, so names are
 * plain snake_case nouns, offsets on the call timeline end in `_ms` (milliseconds from the
 * stream start), wall-clock instants end in `_at` (timestamptz). docs/schema.md describes every
 * column; keep it in step with this file. Migrations: `npx drizzle-kit generate` (migrations/).
 *
 * Idempotence: every table has a natural key (calls.id, call_streams (call_id, role),
 * utterances (call_id, role, seq), call_metrics.call_id, rules (rule_id, version), live rule hits
 * (call_id, rule_id, rule_version, role, seq_from), alerts (call_id, rule_id, rule_version,
 * trigger_role, trigger_seq), alert_deliveries (alert_id, channel, target), agent_daily
 * (tenant_id, day, agent_id)), and every write is an upsert on it (or, for post-call rule hits
 * and agent_daily, a replace/recompute), so a queue job processed twice leaves one row
 * (style.md lesson 10). QA analytics tables: qa-analytics.md §5.2.
 *
 * Not expressible here, so in migrations/0005_qa_views.sql: the covering index
 * call_metrics_agent_day_idx (INCLUDE), the pg_trgm index on utterances.text (only where the
 * extension is available), the v_* views, and the column comments.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import type { EvidenceRef, Severity } from '../analytics/types.js';
import type { AlertEvidence, AlertFeedback, AlertStatus, DeliveryChannel } from '../alerts/store.js';
import type { Role } from '../core/types.js';
import type { RoleRouting, StreamStatus } from '../queue/jobs.js';

/** Where a call's audio came from. 'unknown' only until the call-start job is persisted. */
export const CALL_SOURCES = ['twilio', 'rtp', 'sip', 'unknown'] as const;
export type CallSourceColumn = (typeof CALL_SOURCES)[number];
export const CALL_STATUSES = ['active', 'ended', 'failed'] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
export const STREAM_STATUSES = ['pending', 'active', 'finished', 'failed'] as const satisfies readonly StreamStatus[];

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** Postgres tsvector (read back as its text form; only ever generated, never written). */
const tsvector = customType<{ data: string }>({ dataType: () => 'tsvector' });

/** One row per call (small table; kept for years). */
export const calls = pgTable(
  'calls',
  {
    /** callscribe's call id (generated at stream start; the queue jobs' callId). */
    id: uuid('id').primaryKey(),
    /** 'twilio' | 'rtp' | 'sip'; 'unknown' while only a placeholder row exists. */
    source: text('source').$type<CallSourceColumn>().notNull(),
    tenantId: text('tenant_id').notNull().default('default'),
    /** Twilio CallSid (null for other sources). */
    callSid: text('call_sid'),
    /** Twilio StreamSid (null for other sources). */
    streamSid: text('stream_sid'),
    /** Twilio AccountSid (null for other sources). */
    accountSid: text('account_sid'),
    /** Every provider identifier as received, e.g. {"callSid": "CA…", "streamSid": "MZ…"}. */
    externalIds: jsonb('external_ids').$type<Record<string, string>>().notNull().default({}),
    /** Stream start: timeline 0 of every `_ms` offset of this call. */
    startedAt: tstz('started_at').notNull(),
    endedAt: tstz('ended_at'),
    status: text('status').$type<CallStatus>().notNull().default('active'),
    /** Why ingest ended the call: 'stop', 'socket-closed', 'idle-timeout', 'drain', … */
    endReason: text('end_reason'),
    /** Audio duration as ingested, ms. */
    durationMs: integer('duration_ms'),
    /** Agent handling the call (Twilio parameter, SIP header), if the telephony side gave one. */
    agentId: text('agent_id'),
    /** Queue / skill group of the call, if given. */
    queueId: text('queue_id'),
    /** Non-PII source metadata, e.g. a SIPREC session id and participants. */
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    /** Telephony custom parameters (Twilio <Parameter>s), as received. */
    customParameters: jsonb('custom_parameters').$type<Record<string, string>>().notNull().default({}),
    /** track → role, e.g. {"inbound": "customer", "outbound": "agent"}. */
    roles: jsonb('roles').$type<Record<string, Role>>().notNull().default({}),
    /** role → recogniser model, e.g. {"customer": "paraformer-realtime-8k-v2"}. */
    models: jsonb('models').$type<Partial<Record<Role, string>>>().notNull().default({}),
    /** role → routing decision {model, fallback, rule, language} (docs/routing.md). */
    routing: jsonb('routing').$type<Partial<Record<Role, RoleRouting>>>().notNull().default({}),
    /** Ingest counters at call end (frames, drops by code, gaps), non-PII. */
    ingestStats: jsonb('ingest_stats').$type<Record<string, number>>(),
    createdAt: tstz('created_at').notNull().defaultNow(),
    updatedAt: tstz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('calls_started_at_idx').on(t.startedAt.desc().nullsFirst()),
    index('calls_call_sid_idx').on(t.callSid),
    uniqueIndex('calls_source_stream_sid_uidx')
      .on(t.source, t.streamSid)
      .where(sql`stream_sid IS NOT NULL`),
    index('calls_tenant_started_idx').on(t.tenantId, t.startedAt.desc().nullsFirst()),
    index('calls_tenant_agent_started_idx').on(t.tenantId, t.agentId, t.startedAt.desc().nullsFirst()),
    check('calls_source_check', sql`source IN ('twilio', 'rtp', 'sip', 'unknown')`),
    check('calls_status_check', sql`status IN ('active', 'ended', 'failed')`),
  ],
);

/** One row per (call, role): the recogniser stream's latest status. */
export const callStreams = pgTable(
  'call_streams',
  {
    callId: uuid('call_id')
      .notNull()
      .references(() => calls.id, { onDelete: 'cascade' }),
    role: text('role').$type<Role>().notNull(),
    /** Telephony track the role's audio came from (e.g. 'inbound'). */
    track: text('track').notNull(),
    model: text('model').notNull(),
    status: text('status').$type<StreamStatus>().notNull(),
    /** Stable error code (ERR_ASR_…) when status is 'failed' (or the last error seen). */
    errorCode: text('error_code'),
    /** Provider error text, non-PII. */
    errorMessage: text('error_message'),
    reconnects: integer('reconnects').notNull().default(0),
    /** Final sentences produced by this stream so far. */
    utterances: integer('utterances').notNull().default(0),
    /** When ingest observed this status; a status older than the stored one is ignored. */
    statusAt: tstz('status_at').notNull(),
    updatedAt: tstz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'call_streams_pkey', columns: [t.callId, t.role] }),
    check('call_streams_role_check', sql`role IN ('customer', 'agent')`),
    check('call_streams_status_check', sql`status IN ('pending', 'active', 'finished', 'failed')`),
  ],
);

/** Stored shape of one word of `utterances.words`. */
export interface WordJson {
  startMs: number;
  endMs: number;
  text: string;
  punctuation: string;
}

/** One row per final sentence of one speaker (the large table). */
export const utterances = pgTable(
  'utterances',
  {
    callId: uuid('call_id')
      .notNull()
      .references(() => calls.id, { onDelete: 'cascade' }),
    /** calls.started_at, copied (the future partition key; lets transcript reads prune). */
    callStartedAt: tstz('call_started_at').notNull(),
    role: text('role').$type<Role>().notNull(),
    track: text('track').notNull(),
    /** Per (call, role) sentence index, from 1, gap-free. */
    seq: integer('seq').notNull(),
    /** Sentence start, ms from the call's stream start. */
    startMs: integer('start_ms').notNull(),
    /** Sentence end, ms from the call's stream start. */
    endMs: integer('end_ms').notNull(),
    text: text('text').notNull(),
    /** Letters and digits in `text` (each CJK character counts one); the CPM numerator. */
    charCount: integer('char_count').notNull(),
    /** [{startMs, endMs, text, punctuation}], offsets on the call timeline; [] if none. */
    words: jsonb('words').$type<WordJson[]>().notNull().default([]),
    /** Emotion label as the provider gave it (e.g. 'negative', 'angry'); null: none. */
    emotionRaw: text('emotion_raw'),
    /** Model that produced the emotion label. */
    emotionProvider: text('emotion_provider'),
    /** 0..1; null where the provider gives none. */
    emotionConfidence: real('emotion_confidence'),
    /** Normalised valence: -1 negative, 0 neutral, 1 positive; null: no emotion. */
    valence: smallint('valence'),
    /** Normalised arousal: 1 high, 0 low; null where the label does not tell (paraformer). */
    arousal: smallint('arousal'),
    /** Recogniser model of the sentence (with failover it can change within a call). */
    model: text('model').notNull(),
    /** Provider task / session id that produced the sentence. */
    asrTaskId: text('asr_task_id').notNull(),
    /** Telephony frame carrying the sentence end reached callscribe. */
    audioEndAt: tstz('audio_end_at'),
    /** Final result arrived from the recogniser. */
    finalReceivedAt: tstz('final_received_at').notNull(),
    /** Job added to the queue. */
    enqueuedAt: tstz('enqueued_at'),
    /** Row written (transaction time). */
    persistedAt: tstz('persisted_at').notNull().defaultNow(),
    /** Search tokens of `text`, space-separated (jieba words + CJK bigrams); null: not indexed. */
    seg: text('seg'),
    /** Segmenter that produced `seg` (SEGMENTER_VERSION); a different one means re-segment. */
    segVersion: text('seg_version'),
    /** to_tsvector('simple', seg), generated by Postgres; GIN-indexed. */
    tsv: tsvector('tsv').generatedAlwaysAs(sql`to_tsvector('simple', coalesce(seg, ''))`),
    /** True when `text` had PII replaced by [TYPE] tokens before it was stored. */
    piiRedacted: boolean('pii_redacted').notNull().default(false),
    /** PII types found in the sentence (PHONE, ID, …), whatever the PII mode; {} none or not scanned. */
    piiTypes: text('pii_types').array().notNull().default(sql`'{}'::text[]`),
  },
  (t) => [
    primaryKey({ name: 'utterances_pkey', columns: [t.callId, t.role, t.seq] }),
    index('utterances_call_order_idx').on(t.callId, t.startMs),
    index('utterances_started_idx').on(t.callStartedAt),
    index('utterances_tsv_idx').using('gin', t.tsv),
    index('utterances_negative_idx').on(t.callId).where(sql`valence = -1`),
    check('utterances_role_check', sql`role IN ('customer', 'agent')`),
    check('utterances_valence_check', sql`valence IN (-1, 0, 1)`),
    check('utterances_arousal_check', sql`arousal IN (0, 1)`),
  ],
);

/**
 * Unredacted sentence text, only in PII mode 'both' (`utterances.text` has the redacted form).
 * Tighter grants and a shorter retention than utterances (docs/schema.md).
 */
export const utteranceOriginals = pgTable(
  'utterance_originals',
  {
    callId: uuid('call_id')
      .notNull()
      .references(() => calls.id, { onDelete: 'cascade' }),
    role: text('role').$type<Role>().notNull(),
    seq: integer('seq').notNull(),
    /** The sentence as recognised, before redaction. PII. */
    text: text('text').notNull(),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'utterance_originals_pkey', columns: [t.callId, t.role, t.seq] }),
    index('utterance_originals_created_idx').on(t.createdAt),
    check('utterance_originals_role_check', sql`role IN ('customer', 'agent')`),
  ],
);

// ---------------------------------------------------------------------------------------------
// QA analytics (qa-analytics.md §5.2)

/** `call_metrics.details`: the instances behind the scalar columns (for charts and drill-down). */
export interface CallMetricsDetails {
  /** Stretches where neither side speaks, ≥ the silence threshold. */
  silences?: { startMs: number; endMs: number; durationMs: number }[];
  /** Overlapping speech: who started talking over whom. */
  overtalks?: { by: Role; over: Role; startMs: number; endMs: number; overlapMs: number; interruption: boolean }[];
  /** Four quarters per role: score (−5..+5) and negative share. */
  quarters?: Partial<
    Record<
      Role,
      { idx: number; startMs: number; endMs: number; score: number | null; negShare: number | null; n: number; nQualifying: number }[]
    >
  >;
  /** What the quarters divide: 'duration' | 'emotion_span' | 'none'. */
  periodBasis?: string;
  /** The metric options in effect (thresholds), to reproduce the row. */
  options?: Record<string, unknown>;
  [key: string]: unknown;
}

export type EmotionCounts = Partial<Record<Role, Record<string, number>>>;

const SEVERITY_CHECK = (column: string) => sql.raw(`${column} IN ('info', 'warning', 'critical')`);

/** One row per call: the metrics computed post-call (and possibly refreshed), upserted. */
export const callMetrics = pgTable(
  'call_metrics',
  {
    callId: uuid('call_id')
      .primaryKey()
      .references(() => calls.id, { onDelete: 'cascade' }),
    /** calls.tenant_id, agent_id, queue_id, started_at, denormalised for index-only dashboard scans. */
    tenantId: text('tenant_id').notNull(),
    agentId: text('agent_id'),
    queueId: text('queue_id'),
    callStartedAt: tstz('call_started_at').notNull(),
    /** Call duration, ms; null when unknown (the call has not ended). */
    durationMs: integer('duration_ms'),
    /** Final sentences the metrics were computed from, and the newest of their persisted_at. */
    utteranceCount: integer('utterance_count').notNull(),
    lastUtteranceAt: tstz('last_utterance_at'),
    /** Union of each role's speech, ms. */
    talkMsAgent: integer('talk_ms_agent').notNull(),
    talkMsCustomer: integer('talk_ms_customer').notNull(),
    /** Role's talk time / both roles' talk time (0..1); null when nobody talked. */
    talkRatioAgent: real('talk_ratio_agent'),
    talkRatioCustomer: real('talk_ratio_customer'),
    /** Both speaking at once, ms. */
    overlapMs: integer('overlap_ms').notNull(),
    /** Silences ≥ the threshold: total ms, count, longest. */
    nonTalkMs: integer('non_talk_ms').notNull(),
    nonTalkCount: integer('non_talk_count').notNull(),
    longestSilenceMs: integer('longest_silence_ms').notNull(),
    /** Overtalk events started by the role (any length). */
    overtalksByAgent: integer('overtalks_by_agent').notNull(),
    overtalksByCustomer: integer('overtalks_by_customer').notNull(),
    /** Overtalks ≥ the interruption threshold started by the role, and their total overlap ms. */
    interruptionsByAgent: integer('interruptions_by_agent').notNull(),
    interruptionsByCustomer: integer('interruptions_by_customer').notNull(),
    interruptionMsAgent: integer('interruption_ms_agent').notNull(),
    interruptionMsCustomer: integer('interruption_ms_customer').notNull(),
    /** Characters per talk minute; null without talk. */
    cpmAgent: real('cpm_agent'),
    cpmCustomer: real('cpm_customer'),
    /** Final sentences per role. */
    uttAgent: integer('utt_agent').notNull(),
    uttCustomer: integer('utt_customer').notNull(),
    longestMonologueMsAgent: integer('longest_monologue_ms_agent').notNull(),
    longestMonologueMsCustomer: integer('longest_monologue_ms_customer').notNull(),
    /** From the call start to the agent's first reply after the customer's first sentence. */
    firstAgentResponseMs: integer('first_agent_response_ms'),
    /** Gap from the end of a customer turn to the start of the agent's reply. */
    avgAgentResponseMs: integer('avg_agent_response_ms'),
    maxAgentResponseMs: integer('max_agent_response_ms'),
    /** Share of the role's qualifying sentences with valence −1 / +1; null: none qualified. */
    negRatioCustomer: real('neg_ratio_customer'),
    negRatioAgent: real('neg_ratio_agent'),
    posRatioCustomer: real('pos_ratio_customer'),
    posRatioAgent: real('pos_ratio_agent'),
    /** −5..+5 call score per role; null without scored sentences. */
    sentimentCustomer: real('sentiment_customer'),
    sentimentAgent: real('sentiment_agent'),
    /** Four quarter scores per role (elements null for a quarter without scores). */
    sentimentQCustomer: real('sentiment_q_customer').array().$type<(number | null)[]>(),
    sentimentQAgent: real('sentiment_q_agent').array().$type<(number | null)[]>(),
    sentimentTrendCustomer: text('sentiment_trend_customer').$type<'UP' | 'DOWN' | 'FLAT'>(),
    /** Customer started negative (Q1) and ended neutral or better (Q4); null: not decidable. */
    recovered: boolean('recovered'),
    /** Lowest valence of the customer's sentences (−1: at least one negative); null: no emotion. */
    worstValenceCustomer: smallint('worst_valence_customer'),
    /** {"customer": {"angry": 3, …}, "agent": {…}}: raw labels as received. */
    emotionCounts: jsonb('emotion_counts').$type<EmotionCounts>().notNull().default({}),
    /** Silences, overtalks and quarters behind the scalars (CallMetricsDetails). */
    details: jsonb('details').$type<CallMetricsDetails>().notNull().default({}),
    /** Rule hits of the call (live + post-call), distinct rule ids hit, alerts (not suppressed). */
    ruleHitCount: integer('rule_hit_count').notNull().default(0),
    categoryIds: text('category_ids').array().notNull().default(sql`'{}'::text[]`),
    alertCount: integer('alert_count').notNull().default(0),
    maxAlertSeverity: text('max_alert_severity').$type<Severity>(),
    /** Version of the metric definitions (src/analytics/metrics.ts METRICS_VERSION). */
    metricsVersion: integer('metrics_version').notNull(),
    computedAt: tstz('computed_at').notNull().defaultNow(),
  },
  (t) => [
    index('call_metrics_worst_idx').on(t.tenantId, t.callStartedAt, t.sentimentCustomer),
    index('call_metrics_categories_idx').using('gin', t.categoryIds),
    check('call_metrics_trend_check', sql`sentiment_trend_customer IN ('UP', 'DOWN', 'FLAT')`),
    check('call_metrics_max_alert_severity_check', SEVERITY_CHECK('max_alert_severity')),
    check('call_metrics_worst_valence_check', sql`worst_valence_customer IN (-1, 0, 1)`),
  ],
);

export const RULE_SOURCES = ['file', 'sql'] as const;
export type RuleSource = (typeof RULE_SOURCES)[number];

/**
 * QA rules as data, versioned: (rule_id, version) is immutable once published; a change is a
 * new version. Loaded from RULES_FILE at start (source 'file', new (id, version) pairs only) and
 * editable by SQL (source defaults to 'sql').
 */
export const rules = pgTable(
  'rules',
  {
    ruleId: text('rule_id').notNull(),
    version: integer('version').notNull(),
    /** null: every tenant; a tenant's own rule overrides a global one with the same rule_id. */
    tenantId: text('tenant_id'),
    name: text('name').notNull(),
    /** keyword | absence | silence | interruption | emotion_window (more kinds may follow). */
    kind: text('kind').notNull(),
    scope: text('scope').$type<'realtime' | 'postcall' | 'both'>().notNull(),
    /** customer | agent | any. */
    role: text('role').$type<Role | 'any'>().notNull().default('any'),
    severity: text('severity').$type<Severity>().notNull(),
    /** A hit raises an alert. */
    isAlert: boolean('is_alert').notNull().default(false),
    enabled: boolean('enabled').notNull().default(true),
    /** Kind-specific settings, in the rule-file format (src/analytics/rules/schema.ts). */
    config: jsonb('config').$type<unknown>().notNull(),
    source: text('source').$type<RuleSource>().notNull().default('sql'),
    description: text('description'),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'rules_pkey', columns: [t.ruleId, t.version] }),
    check('rules_scope_check', sql`scope IN ('realtime', 'postcall', 'both')`),
    check('rules_role_check', sql`role IN ('customer', 'agent', 'any')`),
    check('rules_severity_check', SEVERITY_CHECK('severity')),
    check('rules_source_check', sql`source IN ('file', 'sql')`),
    check('rules_version_check', sql`version >= 1`),
  ],
);

export const RULE_HIT_SOURCES = ['live', 'postcall', 'backtest'] as const;
export type RuleHitSource = (typeof RULE_HIT_SOURCES)[number];

/**
 * One row per rule hit. Live hits (keyword rules on a final sentence) are unique per
 * (call_id, rule_id, rule_version, role, seq_from); post-call hits are replaced as a set per call.
 */
export const ruleHits = pgTable(
  'rule_hits',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    callId: uuid('call_id')
      .notNull()
      .references(() => calls.id, { onDelete: 'cascade' }),
    /** calls.started_at, copied (the future partition key). */
    callStartedAt: tstz('call_started_at').notNull(),
    ruleId: text('rule_id').notNull(),
    ruleVersion: integer('rule_version').notNull(),
    kind: text('kind').notNull(),
    /** The role the evidence belongs to; null: both roles or call-level (silence). */
    role: text('role').$type<Role>(),
    severity: text('severity').$type<Severity>().notNull(),
    /** Span of the hit on the call timeline. */
    startMs: integer('start_ms').notNull(),
    endMs: integer('end_ms').notNull(),
    /** Sentence range of `role` (null without sentence evidence). */
    seqFrom: integer('seq_from'),
    seqTo: integer('seq_to'),
    /** Phrases (as written in the rule) that matched; {} for non-keyword kinds. */
    matched: text('matched').array().notNull().default(sql`'{}'::text[]`),
    /** [{role, seq, startMs, endMs, charBegin?, charEnd?, …}]: sentence references, no text. */
    evidence: jsonb('evidence').$type<EvidenceRef[]>().notNull().default([]),
    /** Kind-specific extras (e.g. interruption count, silence length). */
    details: jsonb('details').$type<Record<string, unknown>>(),
    source: text('source').$type<RuleHitSource>().notNull(),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [
    index('rule_hits_rule_started_idx').on(t.ruleId, t.callStartedAt),
    index('rule_hits_call_idx').on(t.callId),
    uniqueIndex('rule_hits_live_uidx')
      .on(t.callId, t.ruleId, t.ruleVersion, t.role, t.seqFrom)
      .where(sql`source = 'live'`),
    check('rule_hits_source_check', sql`source IN ('live', 'postcall', 'backtest')`),
    check('rule_hits_role_check', sql`role IN ('customer', 'agent')`),
    check('rule_hits_severity_check', SEVERITY_CHECK('severity')),
    check('rule_hits_live_key_check', sql`source <> 'live' OR (role IS NOT NULL AND seq_from IS NOT NULL)`),
  ],
);

/**
 * Alerts (src/alerts/store.ts AlertRecord), kept long-term for tuning. One row per
 * (call, rule, version, trigger sentence); at most one open/acknowledged alert per dedupe_key.
 */
export const alerts = pgTable(
  'alerts',
  {
    alertId: uuid('alert_id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    callId: uuid('call_id')
      .notNull()
      .references(() => calls.id, { onDelete: 'cascade' }),
    callStartedAt: tstz('call_started_at').notNull(),
    agentId: text('agent_id'),
    queueId: text('queue_id'),
    ruleId: text('rule_id').notNull(),
    ruleVersion: integer('rule_version').notNull(),
    /** Role whose speech raised it. */
    role: text('role').$type<Role>().notNull(),
    severity: text('severity').$type<Severity>().notNull(),
    status: text('status').$type<AlertStatus>().notNull().default('open'),
    /** Why it fired: share | streak | escalation-keyword | persistence | agent-negative | keyword | … */
    reason: text('reason').notNull(),
    /** cooldown | cap | dedupe; set exactly when status is 'suppressed'. */
    suppressedReason: text('suppressed_reason'),
    /** `call_id:rule_id:severity`. */
    dedupeKey: text('dedupe_key').notNull(),
    /** Evidence sentences with their (redacted) text. */
    evidence: jsonb('evidence').$type<AlertEvidence[]>().notNull(),
    /** The sentence whose arrival fired it, and its end on the call timeline. */
    triggerRole: text('trigger_role').$type<Role>().notNull(),
    triggerSeq: integer('trigger_seq').notNull(),
    triggerEndMs: integer('trigger_end_ms').notNull(),
    /** Latency marks: the trigger's final reached callscribe, the row written, first delivery. */
    finalReceivedAt: tstz('final_received_at'),
    /** clock_timestamp() of the INSERT (not the transaction start); the commit follows at once. */
    committedAt: tstz('committed_at').notNull().default(sql`clock_timestamp()`),
    firstDeliveredAt: tstz('first_delivered_at'),
    ackedBy: text('acked_by'),
    ackedAt: tstz('acked_at'),
    resolvedBy: text('resolved_by'),
    resolvedAt: tstz('resolved_at'),
    feedback: text('feedback').$type<AlertFeedback>(),
    feedbackBy: text('feedback_by'),
    feedbackAt: tstz('feedback_at'),
  },
  (t) => [
    uniqueIndex('alerts_trigger_uidx').on(t.callId, t.ruleId, t.ruleVersion, t.triggerRole, t.triggerSeq),
    uniqueIndex('alerts_dedupe_open_uidx')
      .on(t.dedupeKey)
      .where(sql`status IN ('open', 'acknowledged')`),
    index('alerts_open_idx')
      .on(t.tenantId, t.committedAt.desc())
      .where(sql`status IN ('open', 'acknowledged')`),
    index('alerts_rule_committed_idx').on(t.ruleId, t.committedAt),
    check('alerts_status_check', sql`status IN ('open', 'acknowledged', 'resolved', 'suppressed')`),
    check('alerts_severity_check', SEVERITY_CHECK('severity')),
    check('alerts_role_check', sql`role IN ('customer', 'agent') AND trigger_role IN ('customer', 'agent')`),
    check('alerts_feedback_check', sql`feedback IN ('true_positive', 'false_positive', 'not_actionable')`),
    check(
      'alerts_suppressed_reason_check',
      sql`(status = 'suppressed') = (suppressed_reason IS NOT NULL) AND suppressed_reason IN ('cooldown', 'cap', 'dedupe')`,
    ),
  ],
);

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** Alert delivery outbox: one row per (alert, channel, target), written with the alert. */
export const alertDeliveries = pgTable(
  'alert_deliveries',
  {
    deliveryId: bigserial('delivery_id', { mode: 'number' }).primaryKey(),
    alertId: uuid('alert_id')
      .notNull()
      .references(() => alerts.alertId, { onDelete: 'cascade' }),
    channel: text('channel').$type<DeliveryChannel>().notNull(),
    /** 'supervisor' | the Redis channel name | the webhook URL. */
    target: text('target').notNull(),
    status: text('status').$type<DeliveryStatus>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    /** Error of the last failed attempt (no PII); cleared on success. */
    lastError: text('last_error'),
    createdAt: tstz('created_at').notNull().defaultNow(),
    /** Reserved for retry scheduling; null once the row leaves 'pending'. */
    nextAttemptAt: tstz('next_attempt_at').defaultNow(),
    lastAttemptAt: tstz('last_attempt_at'),
    deliveredAt: tstz('delivered_at'),
  },
  (t) => [
    uniqueIndex('alert_deliveries_target_uidx').on(t.alertId, t.channel, t.target),
    index('alert_deliveries_pending_idx')
      .on(t.createdAt)
      .where(sql`status = 'pending'`),
    check('alert_deliveries_channel_check', sql`channel IN ('supervisor', 'redis', 'webhook')`),
    check('alert_deliveries_status_check', sql`status IN ('pending', 'delivered', 'failed')`),
  ],
);

/**
 * Daily rollup per agent, recomputed from call_metrics (never incremented) for one
 * (tenant, day, agent); `day` is the calendar day of call_started_at in `time_zone`.
 */
export const agentDaily = pgTable(
  'agent_daily',
  {
    tenantId: text('tenant_id').notNull(),
    day: date('day', { mode: 'string' }).notNull(),
    agentId: text('agent_id').notNull(),
    /** IANA time zone the day was cut in (e.g. 'UTC', 'Asia/Shanghai'). */
    timeZone: text('time_zone').notNull(),
    calls: integer('calls').notNull(),
    /** Sum of talk_ms_agent; sum of duration_ms over the calls with a known duration, and their count. */
    talkMs: bigint('talk_ms', { mode: 'number' }).notNull(),
    durationMs: bigint('duration_ms', { mode: 'number' }).notNull(),
    nWithDuration: integer('n_with_duration').notNull(),
    /** Sum of talk_ratio_agent over calls that have one, and their count. */
    sumTalkRatio: doublePrecision('sum_talk_ratio').notNull(),
    nWithTalkRatio: integer('n_with_talk_ratio').notNull(),
    /** Sum of neg_ratio_customer over calls that have one, and their count. */
    sumNegRatioCustomer: doublePrecision('sum_neg_ratio_customer').notNull(),
    nWithEmotion: integer('n_with_emotion').notNull(),
    /** Non-suppressed alerts of the day's calls (alerts table), and those of severity critical. */
    alerts: integer('alerts').notNull(),
    criticalAlerts: integer('critical_alerts').notNull(),
    /** Sum of rule_hit_count. */
    ruleHits: integer('rule_hits').notNull(),
    recoveredCalls: integer('recovered_calls').notNull(),
    /** Calls whose customer Q4 score is below 0. */
    negativeEndCalls: integer('negative_end_calls').notNull(),
    computedAt: tstz('computed_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'agent_daily_pkey', columns: [t.tenantId, t.day, t.agentId] })],
);

export type CallRow = typeof calls.$inferSelect;
export type CallStreamRow = typeof callStreams.$inferSelect;
export type UtteranceRow = typeof utterances.$inferSelect;
export type NewUtteranceRow = typeof utterances.$inferInsert;
export type UtteranceOriginalRow = typeof utteranceOriginals.$inferSelect;
export type CallMetricsRow = typeof callMetrics.$inferSelect;
export type NewCallMetricsRow = typeof callMetrics.$inferInsert;
export type RuleRow = typeof rules.$inferSelect;
export type RuleHitRow = typeof ruleHits.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;
export type AlertDeliveryRow = typeof alertDeliveries.$inferSelect;
export type AgentDailyRow = typeof agentDaily.$inferSelect;
