-- QA analytics, hand-written part (drizzle-kit cannot express it): a covering index, the
-- optional pg_trgm substring index, the dashboard views, and descriptions of everything 0004
-- added (psql \d+, Metabase, Grafana). docs/schema.md has the long form.

-- "calls per agent per day" as an index-only scan (qa-analytics.md §5.3, cm_agent_day)
CREATE INDEX "call_metrics_agent_day_idx" ON "call_metrics" USING btree ("tenant_id", "agent_id", "call_started_at")
  INCLUDE ("neg_ratio_customer", "duration_ms", "alert_count", "sentiment_customer");
--> statement-breakpoint

-- Substring search (LIKE '%…%' of 3+ characters) where the host ships pg_trgm (contrib). Never
-- fails without it: no extension, or no right to create it, only leaves the index out.
DO $$
DECLARE
  trgm_schema text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'pg_trgm not created (%): substring search will scan', SQLERRM;
    END;
  END IF;
  SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
  IF trgm_schema IS NOT NULL THEN
    EXECUTE format('CREATE INDEX IF NOT EXISTS utterances_text_trgm_idx ON utterances USING gin (text %I.gin_trgm_ops)', trgm_schema);
  END IF;
END
$$;
--> statement-breakpoint

-- One row per call: the call, its metrics (null until computed), worst customer emotion, alert
-- and rule-hit counts read live from their tables.
CREATE VIEW "v_call_summary" AS
SELECT
  c.id AS call_id,
  c.tenant_id,
  c.agent_id,
  c.queue_id,
  c.source,
  c.status,
  c.started_at,
  c.ended_at,
  coalesce(m.duration_ms, c.duration_ms) AS duration_ms,
  m.utterance_count,
  m.talk_ms_agent,
  m.talk_ms_customer,
  m.talk_ratio_agent,
  m.talk_ratio_customer,
  m.overlap_ms,
  m.non_talk_ms,
  m.non_talk_count,
  m.longest_silence_ms,
  m.interruptions_by_agent,
  m.interruptions_by_customer,
  m.cpm_agent,
  m.cpm_customer,
  m.first_agent_response_ms,
  m.avg_agent_response_ms,
  m.max_agent_response_ms,
  m.neg_ratio_customer,
  m.neg_ratio_agent,
  m.pos_ratio_customer,
  m.sentiment_customer,
  m.sentiment_agent,
  m.sentiment_q_customer,
  m.sentiment_trend_customer,
  m.recovered,
  m.category_ids,
  (SELECT u.emotion_raw FROM utterances u
    WHERE u.call_id = c.id AND u.valence = -1 AND u.role = 'customer'
    ORDER BY u.emotion_confidence DESC NULLS LAST, u.start_ms, u.seq LIMIT 1) AS worst_emotion_customer,
  (SELECT u.start_ms FROM utterances u
    WHERE u.call_id = c.id AND u.valence = -1 AND u.role = 'customer'
    ORDER BY u.emotion_confidence DESC NULLS LAST, u.start_ms, u.seq LIMIT 1) AS worst_emotion_customer_ms,
  (SELECT count(*)::int FROM alerts a WHERE a.call_id = c.id AND a.status <> 'suppressed') AS alert_count,
  (SELECT count(*)::int FROM alerts a WHERE a.call_id = c.id AND a.status IN ('open', 'acknowledged')) AS open_alerts,
  (SELECT count(*)::int FROM alerts a WHERE a.call_id = c.id AND a.status = 'suppressed') AS suppressed_alerts,
  (SELECT (ARRAY['info', 'warning', 'critical'])[max(array_position(ARRAY['info', 'warning', 'critical'], a.severity))]
    FROM alerts a WHERE a.call_id = c.id AND a.status <> 'suppressed') AS max_alert_severity,
  (SELECT count(*)::int FROM rule_hits h WHERE h.call_id = c.id) AS rule_hits,
  m.metrics_version,
  m.computed_at AS metrics_computed_at,
  m.utterance_count <> (SELECT count(*) FROM utterances u WHERE u.call_id = c.id) AS metrics_stale
FROM calls c
LEFT JOIN call_metrics m ON m.call_id = c.id;
--> statement-breakpoint

-- agent_daily with the averages a dashboard wants (sums / counts, never averages of averages)
CREATE VIEW "v_agent_daily" AS
SELECT
  d.tenant_id,
  d.day,
  d.agent_id,
  d.time_zone,
  d.calls,
  d.talk_ms,
  d.duration_ms,
  round(d.duration_ms::numeric / nullif(d.n_with_duration, 0))::int AS avg_duration_ms,
  d.sum_talk_ratio / nullif(d.n_with_talk_ratio, 0) AS avg_talk_ratio,
  d.sum_neg_ratio_customer / nullif(d.n_with_emotion, 0) AS avg_neg_ratio_customer,
  d.n_with_emotion,
  d.alerts,
  d.critical_alerts,
  d.alerts::double precision / nullif(d.calls, 0) AS alerts_per_call,
  d.rule_hits,
  d.recovered_calls,
  d.negative_end_calls,
  d.computed_at
FROM agent_daily d;
--> statement-breakpoint

-- Alert quality per rule version: precision = tp / (tp + fp) among alerts with that feedback
CREATE VIEW "v_alert_precision" AS
SELECT
  a.rule_id,
  a.rule_version,
  (count(*) FILTER (WHERE a.status <> 'suppressed'))::int AS alerts,
  (count(*) FILTER (WHERE a.status = 'suppressed'))::int AS suppressed,
  count(a.feedback)::int AS with_feedback,
  (count(*) FILTER (WHERE a.feedback = 'true_positive'))::int AS tp,
  (count(*) FILTER (WHERE a.feedback = 'false_positive'))::int AS fp,
  (count(*) FILTER (WHERE a.feedback = 'not_actionable'))::int AS na,
  count(*) FILTER (WHERE a.feedback = 'true_positive')::double precision
    / nullif(count(*) FILTER (WHERE a.feedback IN ('true_positive', 'false_positive')), 0) AS precision,
  min(a.committed_at) AS first_alert_at,
  max(a.committed_at) AS last_alert_at
FROM alerts a
GROUP BY a.rule_id, a.rule_version;
--> statement-breakpoint

-- Alert latency per day (the session's TimeZone), suppressed alerts excluded
CREATE VIEW "v_alert_latency" AS
SELECT
  a.committed_at::date AS day,
  count(*)::int AS alerts,
  count(a.final_received_at)::int AS with_final,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.committed_at - a.final_received_at) * 1000) AS p50_commit_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM a.committed_at - a.final_received_at) * 1000) AS p95_commit_ms,
  count(a.first_delivered_at)::int AS delivered,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.first_delivered_at - a.final_received_at) * 1000) AS p50_delivery_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM a.first_delivered_at - a.final_received_at) * 1000) AS p95_delivery_ms
FROM alerts a
WHERE a.status <> 'suppressed'
GROUP BY 1;
--> statement-breakpoint

-- A readable transcript: mm:ss offsets, wall-clock time, role, redacted text and emotion
CREATE VIEW "v_transcript" AS
SELECT
  u.call_id,
  u.call_started_at,
  u.role,
  u.seq,
  u.start_ms,
  u.end_ms,
  CASE WHEN u.start_ms < 600000 THEN '0' ELSE '' END || (u.start_ms / 60000)::text || ':'
    || lpad((u.start_ms / 1000 % 60)::text, 2, '0') AS at,
  CASE WHEN u.end_ms < 600000 THEN '0' ELSE '' END || (u.end_ms / 60000)::text || ':'
    || lpad((u.end_ms / 1000 % 60)::text, 2, '0') AS until,
  u.call_started_at + u.start_ms * interval '1 millisecond' AS spoken_at,
  u.text,
  u.emotion_raw,
  u.emotion_confidence,
  u.valence,
  u.pii_redacted,
  u.model
FROM utterances u;
--> statement-breakpoint

COMMENT ON COLUMN "calls"."agent_id" IS 'Agent handling the call (Twilio parameter, SIP header); null if not given';--> statement-breakpoint
COMMENT ON COLUMN "calls"."queue_id" IS 'Queue / skill group of the call; null if not given';--> statement-breakpoint
COMMENT ON COLUMN "calls"."metadata" IS 'Non-PII source metadata, e.g. {"siprec": {"sessionId": …, "participants": […]}}';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."text" IS 'Final transcript text: redacted ([PHONE], [ID], …) unless PII_MODE=keep (pii_redacted says which). PII';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."seg" IS 'Search tokens of text, space-separated (jieba words + CJK bigrams, src/analytics/search/segment.ts); null: not indexed';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."seg_version" IS 'Segmenter (SEGMENTER_VERSION) that produced seg; rows with another version need re-segmenting';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."tsv" IS 'Generated: to_tsvector(''simple'', seg); GIN-indexed; query with tsv @@ to_tsquery(''simple'', …)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."pii_redacted" IS 'True when PII in text was replaced by [TYPE] tokens before storing';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."pii_types" IS 'PII types found in the sentence (PHONE, ID, BANK_CARD, EMAIL, DIGITS), whatever the mode; {}: none or not scanned';--> statement-breakpoint

COMMENT ON TABLE "utterance_originals" IS 'Unredacted sentence text (PII_MODE=both only). Restrict access: grant SELECT to a dedicated role only; shorter retention';--> statement-breakpoint
COMMENT ON COLUMN "utterance_originals"."call_id" IS 'calls.id (deleting a call deletes its originals)';--> statement-breakpoint
COMMENT ON COLUMN "utterance_originals"."role" IS 'customer | agent; with seq, the key of the utterances row';--> statement-breakpoint
COMMENT ON COLUMN "utterance_originals"."seq" IS 'Sentence index per (call, role), as in utterances';--> statement-breakpoint
COMMENT ON COLUMN "utterance_originals"."text" IS 'Sentence as recognised, before redaction. PII';--> statement-breakpoint
COMMENT ON COLUMN "utterance_originals"."created_at" IS 'Row written; retention deletes by it';--> statement-breakpoint

COMMENT ON TABLE "call_metrics" IS 'One row per call: QA metrics computed after the call (upserted; recomputed when late sentences arrive)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."call_id" IS 'calls.id (deleting a call deletes its metrics)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."tenant_id" IS 'calls.tenant_id, copied';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."agent_id" IS 'calls.agent_id, copied';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."queue_id" IS 'calls.queue_id, copied';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."call_started_at" IS 'calls.started_at, copied (index-only dashboard scans)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."duration_ms" IS 'Call duration, ms; null when unknown';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."utterance_count" IS 'Final sentences the metrics were computed from (compare with count(utterances) to spot stale metrics)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."last_utterance_at" IS 'Newest persisted_at among those sentences';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."talk_ms_agent" IS 'Union of the agent''s speech intervals, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."talk_ms_customer" IS 'Union of the customer''s speech intervals, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."talk_ratio_agent" IS 'Agent talk / (agent + customer talk), 0..1; null when nobody talked';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."talk_ratio_customer" IS 'Customer talk / (agent + customer talk), 0..1; null when nobody talked';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."overlap_ms" IS 'Both speaking at once, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."non_talk_ms" IS 'Total of silences (neither speaks) at least SILENCE_THRESHOLD_MS long, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."non_talk_count" IS 'Number of such silences';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."longest_silence_ms" IS 'Longest such silence, ms (0: none)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."overtalks_by_agent" IS 'Overtalk events the agent started (any length)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."overtalks_by_customer" IS 'Overtalk events the customer started (any length)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."interruptions_by_agent" IS 'Overtalks of at least INTERRUPTION_MIN_OVERLAP_MS the agent started';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."interruptions_by_customer" IS 'Overtalks of at least INTERRUPTION_MIN_OVERLAP_MS the customer started';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."interruption_ms_agent" IS 'Overlap of the agent''s interruptions, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."interruption_ms_customer" IS 'Overlap of the customer''s interruptions, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."cpm_agent" IS 'Agent characters per talk minute (char_count / talk minutes); null without talk';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."cpm_customer" IS 'Customer characters per talk minute; null without talk';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."utt_agent" IS 'Agent final sentences';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."utt_customer" IS 'Customer final sentences';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."longest_monologue_ms_agent" IS 'Longest agent stretch not broken by the customer or a long pause, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."longest_monologue_ms_customer" IS 'Longest customer stretch not broken by the agent or a long pause, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."first_agent_response_ms" IS 'Gap from the end of the customer''s first turn to the agent''s reply, ms; null: no reply';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."avg_agent_response_ms" IS 'Mean gap from a customer turn''s end to the agent''s reply, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."max_agent_response_ms" IS 'Longest such gap, ms';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."neg_ratio_customer" IS 'Share of the customer''s qualifying sentences with valence -1; null: none qualified';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."neg_ratio_agent" IS 'Share of the agent''s qualifying sentences with valence -1';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."pos_ratio_customer" IS 'Share of the customer''s qualifying sentences with valence +1';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."pos_ratio_agent" IS 'Share of the agent''s qualifying sentences with valence +1';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."sentiment_customer" IS 'Customer call score -5..+5 (mean of sentence scores); null without scored sentences';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."sentiment_agent" IS 'Agent call score -5..+5';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."sentiment_q_customer" IS 'Customer score per quarter, 4 elements (null: no score in that quarter)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."sentiment_q_agent" IS 'Agent score per quarter, 4 elements';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."sentiment_trend_customer" IS 'UP | DOWN | FLAT: last quarter against the mean of the earlier ones';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."recovered" IS 'Customer started negative (Q1) and ended neutral or better (Q4); null: not decidable';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."worst_valence_customer" IS 'Lowest valence among the customer''s sentences (-1: any negative); null: no emotion';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."emotion_counts" IS 'Raw emotion labels per role: {"customer": {"angry": 3, …}, "agent": {…}}';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."details" IS 'Instances behind the scalars: {"silences": [{startMs, endMs, durationMs}], "overtalks": [{by, over, startMs, endMs, overlapMs, interruption}], "quarters": {"customer": [{idx, startMs, endMs, score, negShare, n, nQualifying}], …}, "periodBasis", "options"}';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."rule_hit_count" IS 'Rule hits of the call (live and post-call)';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."category_ids" IS 'Distinct rule ids that hit (GIN-indexed: category_ids @> ARRAY[''zh.complaint''])';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."alert_count" IS 'Alerts of the call that were not suppressed, at compute time';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."max_alert_severity" IS 'info | warning | critical: highest severity among those alerts; null: none';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."metrics_version" IS 'Version of the metric definitions; an older version never overwrites a newer one';--> statement-breakpoint
COMMENT ON COLUMN "call_metrics"."computed_at" IS 'Row last computed';--> statement-breakpoint

COMMENT ON TABLE "rules" IS 'QA rules as data, versioned: (rule_id, version) never changes once used; publish a change as a new version';--> statement-breakpoint
COMMENT ON COLUMN "rules"."rule_id" IS 'Rule slug, e.g. zh.complaint';--> statement-breakpoint
COMMENT ON COLUMN "rules"."version" IS 'Version (>= 1); the highest enabled version is the one in force';--> statement-breakpoint
COMMENT ON COLUMN "rules"."tenant_id" IS 'Tenant the rule belongs to; null: every tenant (a tenant''s own rule overrides a global one with the same rule_id)';--> statement-breakpoint
COMMENT ON COLUMN "rules"."name" IS 'Display name';--> statement-breakpoint
COMMENT ON COLUMN "rules"."kind" IS 'keyword | absence | silence | interruption | emotion_window';--> statement-breakpoint
COMMENT ON COLUMN "rules"."scope" IS 'realtime | postcall | both';--> statement-breakpoint
COMMENT ON COLUMN "rules"."role" IS 'customer | agent | any: whose speech the rule reads';--> statement-breakpoint
COMMENT ON COLUMN "rules"."severity" IS 'info | warning | critical';--> statement-breakpoint
COMMENT ON COLUMN "rules"."is_alert" IS 'A hit raises an alert';--> statement-breakpoint
COMMENT ON COLUMN "rules"."enabled" IS 'Disabled versions are ignored (disable every version to switch a rule off)';--> statement-breakpoint
COMMENT ON COLUMN "rules"."config" IS 'Kind-specific settings in the rule-file format (src/analytics/rules/schema.ts)';--> statement-breakpoint
COMMENT ON COLUMN "rules"."source" IS 'file: loaded from RULES_FILE; sql: written by hand (the default)';--> statement-breakpoint
COMMENT ON COLUMN "rules"."description" IS 'Free text';--> statement-breakpoint
COMMENT ON COLUMN "rules"."created_at" IS 'Row inserted';--> statement-breakpoint

COMMENT ON TABLE "rule_hits" IS 'One row per rule hit: live (keyword rules on a final sentence) or post-call (the set is replaced on each run)';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."id" IS 'Surrogate key';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."call_id" IS 'calls.id (deleting a call deletes its hits)';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."call_started_at" IS 'calls.started_at, copied (future partition key: filter on it to prune)';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."rule_id" IS 'rules.rule_id';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."rule_version" IS 'rules.version that hit';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."kind" IS 'Rule kind at the time of the hit';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."role" IS 'customer | agent whose speech is the evidence; null: both or call-level (silence)';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."severity" IS 'info | warning | critical (the rule''s)';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."start_ms" IS 'Start of the hit, ms from calls.started_at';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."end_ms" IS 'End of the hit, ms from calls.started_at';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."seq_from" IS 'First sentence (utterances.seq of role) of the evidence';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."seq_to" IS 'Last sentence of the evidence';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."matched" IS 'Phrases (as written in the rule) that matched';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."evidence" IS '[{role, seq, startMs, endMs, charBegin?, charEnd?, emotionRaw?, …}]: sentence references without text';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."details" IS 'Kind-specific extras';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."source" IS 'live | postcall | backtest';--> statement-breakpoint
COMMENT ON COLUMN "rule_hits"."created_at" IS 'Row written';--> statement-breakpoint

COMMENT ON TABLE "alerts" IS 'Alerts: open -> acknowledged -> resolved, or suppressed (cooldown, cap, dedupe; kept for tuning, never delivered)';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."alert_id" IS 'Alert id (uuid)';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."tenant_id" IS 'calls.tenant_id, copied';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."call_id" IS 'calls.id (deleting a call deletes its alerts)';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."call_started_at" IS 'calls.started_at, copied';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."agent_id" IS 'calls.agent_id at the time of the alert';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."queue_id" IS 'calls.queue_id at the time of the alert';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."rule_id" IS 'rules.rule_id that fired';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."rule_version" IS 'rules.version that fired';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."role" IS 'customer | agent: role whose speech raised it';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."severity" IS 'info | warning | critical';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."status" IS 'open | acknowledged | resolved | suppressed';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."reason" IS 'Why it fired: share | streak | escalation-keyword | persistence | agent-negative | keyword | …';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."suppressed_reason" IS 'cooldown | cap | dedupe; set exactly when status is suppressed';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."dedupe_key" IS 'call_id:rule_id:severity; at most one open/acknowledged alert per key';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."evidence" IS '[{role, seq, startMs, endMs, emotionRaw, emotionConfidence, valence, charBegin?, charEnd?, text}]: evidence sentences with redacted text. PII';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."trigger_role" IS 'Role of the sentence whose arrival fired it';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."trigger_seq" IS 'utterances.seq of that sentence';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."trigger_end_ms" IS 'End of that sentence, ms from calls.started_at';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."final_received_at" IS 'The trigger sentence''s final result reached callscribe';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."committed_at" IS 'Row written (clock time of the insert)';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."first_delivered_at" IS 'First successful delivery on any channel; null: none yet';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."acked_by" IS 'Who acknowledged it';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."acked_at" IS 'When it was acknowledged';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."resolved_by" IS 'Who resolved it';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."resolved_at" IS 'When it was resolved';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."feedback" IS 'true_positive | false_positive | not_actionable (supervisor feedback; last one wins)';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."feedback_by" IS 'Who gave the feedback';--> statement-breakpoint
COMMENT ON COLUMN "alerts"."feedback_at" IS 'When the feedback was given';--> statement-breakpoint

COMMENT ON TABLE "alert_deliveries" IS 'Alert delivery outbox: one row per (alert, channel, target), inserted with the alert';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."delivery_id" IS 'Surrogate key';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."alert_id" IS 'alerts.alert_id (deleting an alert deletes its deliveries)';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."channel" IS 'supervisor | redis | webhook';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."target" IS 'supervisor | Redis channel name | webhook URL';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."status" IS 'pending | delivered | failed (no more retries)';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."attempts" IS 'Delivery attempts so far';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."last_error" IS 'Error of the last failed attempt (no PII); cleared on success';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."created_at" IS 'Row inserted (with the alert)';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."next_attempt_at" IS 'Reserved for retry scheduling; null once the row is no longer pending';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."last_attempt_at" IS 'Time of the last attempt';--> statement-breakpoint
COMMENT ON COLUMN "alert_deliveries"."delivered_at" IS 'First successful attempt';--> statement-breakpoint

COMMENT ON TABLE "agent_daily" IS 'Daily rollup per agent, recomputed from call_metrics (never incremented); day = calendar day of call_started_at in time_zone';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."tenant_id" IS 'Tenant';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."day" IS 'Calendar day of call_started_at in time_zone';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."agent_id" IS 'Agent (calls without an agent are not rolled up)';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."time_zone" IS 'IANA time zone the day was cut in (ANALYTICS_TIME_ZONE, e.g. Asia/Shanghai)';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."calls" IS 'Calls with metrics';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."talk_ms" IS 'Sum of talk_ms_agent';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."duration_ms" IS 'Sum of duration_ms over the calls with a known duration';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."n_with_duration" IS 'Calls with a known duration';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."sum_talk_ratio" IS 'Sum of talk_ratio_agent (avg = sum_talk_ratio / n_with_talk_ratio)';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."n_with_talk_ratio" IS 'Calls with a talk_ratio_agent';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."sum_neg_ratio_customer" IS 'Sum of neg_ratio_customer (avg = sum_neg_ratio_customer / n_with_emotion)';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."n_with_emotion" IS 'Calls with a neg_ratio_customer';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."alerts" IS 'Alerts (not suppressed) of the day''s calls';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."critical_alerts" IS 'Those of severity critical';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."rule_hits" IS 'Sum of rule_hit_count';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."recovered_calls" IS 'Calls with recovered = true';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."negative_end_calls" IS 'Calls whose customer Q4 score is below 0';--> statement-breakpoint
COMMENT ON COLUMN "agent_daily"."computed_at" IS 'Row last recomputed';--> statement-breakpoint

COMMENT ON VIEW "v_call_summary" IS 'One row per call: call, metrics (null until computed), worst customer emotion, alert and rule-hit counts; metrics_stale when sentences arrived after the metrics';--> statement-breakpoint
COMMENT ON VIEW "v_agent_daily" IS 'agent_daily with averages (sum / count)';--> statement-breakpoint
COMMENT ON VIEW "v_alert_precision" IS 'Per rule and version: alerts, suppressed, feedback counts, precision = tp / (tp + fp)';--> statement-breakpoint
COMMENT ON VIEW "v_alert_latency" IS 'Per day (session TimeZone), non-suppressed alerts: p50/p95 of committed_at - final_received_at and first_delivered_at - final_received_at, ms';--> statement-breakpoint
COMMENT ON VIEW "v_transcript" IS 'Utterances with mm:ss offsets (at, until), wall-clock spoken_at, role, redacted text and emotion';
