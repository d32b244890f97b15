/**
 * Postgres schema (drizzle-orm pg-core). Dashboards query these tables directly, so names are
 * plain snake_case nouns, offsets on the call timeline end in `_ms` (milliseconds from the
 * stream start), wall-clock instants end in `_at` (timestamptz). docs/schema.md describes every
 * column; keep it in step with this file. Migrations: `npx drizzle-kit generate` (migrations/).
 *
 * Idempotence: every table has a natural key (calls.id, call_streams (call_id, role),
 * utterances (call_id, role, seq)), and every write is an upsert on it, so a queue job processed
 * twice leaves one row (style.md lesson 10).
 */
import { sql } from 'drizzle-orm';
import {
  check,
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
import type { Role } from '../core/types.js';
import type { RoleRouting, StreamStatus } from '../queue/jobs.js';

/** Where a call's audio came from. 'unknown' only until the call-start job is persisted. */
export const CALL_SOURCES = ['twilio', 'rtp', 'sip', 'unknown'] as const;
export type CallSourceColumn = (typeof CALL_SOURCES)[number];
export const CALL_STATUSES = ['active', 'ended', 'failed'] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
export const STREAM_STATUSES = ['pending', 'active', 'finished', 'failed'] as const satisfies readonly StreamStatus[];

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

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
  },
  (t) => [
    primaryKey({ name: 'utterances_pkey', columns: [t.callId, t.role, t.seq] }),
    index('utterances_call_order_idx').on(t.callId, t.startMs),
    index('utterances_started_idx').on(t.callStartedAt),
    check('utterances_role_check', sql`role IN ('customer', 'agent')`),
    check('utterances_valence_check', sql`valence IN (-1, 0, 1)`),
    check('utterances_arousal_check', sql`arousal IN (0, 1)`),
  ],
);

export type CallRow = typeof calls.$inferSelect;
export type CallStreamRow = typeof callStreams.$inferSelect;
export type UtteranceRow = typeof utterances.$inferSelect;
export type NewUtteranceRow = typeof utterances.$inferInsert;
