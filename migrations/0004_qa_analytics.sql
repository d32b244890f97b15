CREATE TABLE "agent_daily" (
	"tenant_id" text NOT NULL,
	"day" date NOT NULL,
	"agent_id" text NOT NULL,
	"time_zone" text NOT NULL,
	"calls" integer NOT NULL,
	"talk_ms" bigint NOT NULL,
	"duration_ms" bigint NOT NULL,
	"n_with_duration" integer NOT NULL,
	"sum_talk_ratio" double precision NOT NULL,
	"n_with_talk_ratio" integer NOT NULL,
	"sum_neg_ratio_customer" double precision NOT NULL,
	"n_with_emotion" integer NOT NULL,
	"alerts" integer NOT NULL,
	"critical_alerts" integer NOT NULL,
	"rule_hits" integer NOT NULL,
	"recovered_calls" integer NOT NULL,
	"negative_end_calls" integer NOT NULL,
	"computed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "agent_daily_pkey" PRIMARY KEY("tenant_id","day","agent_id")
);
--> statement-breakpoint
CREATE TABLE "alert_deliveries" (
	"delivery_id" bigserial PRIMARY KEY NOT NULL,
	"alert_id" uuid NOT NULL,
	"channel" text NOT NULL,
	"target" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now(),
	"last_attempt_at" timestamp with time zone,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "alert_deliveries_channel_check" CHECK (channel IN ('supervisor', 'redis', 'webhook')),
	CONSTRAINT "alert_deliveries_status_check" CHECK (status IN ('pending', 'delivered', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "alerts" (
	"alert_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" text NOT NULL,
	"call_id" uuid NOT NULL,
	"call_started_at" timestamp with time zone NOT NULL,
	"agent_id" text,
	"queue_id" text,
	"rule_id" text NOT NULL,
	"rule_version" integer NOT NULL,
	"role" text NOT NULL,
	"severity" text NOT NULL,
	"status" text DEFAULT 'open' NOT NULL,
	"reason" text NOT NULL,
	"suppressed_reason" text,
	"dedupe_key" text NOT NULL,
	"evidence" jsonb NOT NULL,
	"trigger_role" text NOT NULL,
	"trigger_seq" integer NOT NULL,
	"trigger_end_ms" integer NOT NULL,
	"final_received_at" timestamp with time zone,
	"committed_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
	"first_delivered_at" timestamp with time zone,
	"acked_by" text,
	"acked_at" timestamp with time zone,
	"resolved_by" text,
	"resolved_at" timestamp with time zone,
	"feedback" text,
	"feedback_by" text,
	"feedback_at" timestamp with time zone,
	CONSTRAINT "alerts_status_check" CHECK (status IN ('open', 'acknowledged', 'resolved', 'suppressed')),
	CONSTRAINT "alerts_severity_check" CHECK (severity IN ('info', 'warning', 'critical')),
	CONSTRAINT "alerts_role_check" CHECK (role IN ('customer', 'agent') AND trigger_role IN ('customer', 'agent')),
	CONSTRAINT "alerts_feedback_check" CHECK (feedback IN ('true_positive', 'false_positive', 'not_actionable')),
	CONSTRAINT "alerts_suppressed_reason_check" CHECK ((status = 'suppressed') = (suppressed_reason IS NOT NULL) AND suppressed_reason IN ('cooldown', 'cap', 'dedupe'))
);
--> statement-breakpoint
CREATE TABLE "call_metrics" (
	"call_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"agent_id" text,
	"queue_id" text,
	"call_started_at" timestamp with time zone NOT NULL,
	"duration_ms" integer,
	"utterance_count" integer NOT NULL,
	"last_utterance_at" timestamp with time zone,
	"talk_ms_agent" integer NOT NULL,
	"talk_ms_customer" integer NOT NULL,
	"talk_ratio_agent" real,
	"talk_ratio_customer" real,
	"overlap_ms" integer NOT NULL,
	"non_talk_ms" integer NOT NULL,
	"non_talk_count" integer NOT NULL,
	"longest_silence_ms" integer NOT NULL,
	"overtalks_by_agent" integer NOT NULL,
	"overtalks_by_customer" integer NOT NULL,
	"interruptions_by_agent" integer NOT NULL,
	"interruptions_by_customer" integer NOT NULL,
	"interruption_ms_agent" integer NOT NULL,
	"interruption_ms_customer" integer NOT NULL,
	"cpm_agent" real,
	"cpm_customer" real,
	"utt_agent" integer NOT NULL,
	"utt_customer" integer NOT NULL,
	"longest_monologue_ms_agent" integer NOT NULL,
	"longest_monologue_ms_customer" integer NOT NULL,
	"first_agent_response_ms" integer,
	"avg_agent_response_ms" integer,
	"max_agent_response_ms" integer,
	"neg_ratio_customer" real,
	"neg_ratio_agent" real,
	"pos_ratio_customer" real,
	"pos_ratio_agent" real,
	"sentiment_customer" real,
	"sentiment_agent" real,
	"sentiment_q_customer" real[],
	"sentiment_q_agent" real[],
	"sentiment_trend_customer" text,
	"recovered" boolean,
	"worst_valence_customer" smallint,
	"emotion_counts" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"rule_hit_count" integer DEFAULT 0 NOT NULL,
	"category_ids" text[] DEFAULT '{}'::text[] NOT NULL,
	"alert_count" integer DEFAULT 0 NOT NULL,
	"max_alert_severity" text,
	"metrics_version" integer NOT NULL,
	"computed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "call_metrics_trend_check" CHECK (sentiment_trend_customer IN ('UP', 'DOWN', 'FLAT')),
	CONSTRAINT "call_metrics_max_alert_severity_check" CHECK (max_alert_severity IN ('info', 'warning', 'critical')),
	CONSTRAINT "call_metrics_worst_valence_check" CHECK (worst_valence_customer IN (-1, 0, 1))
);
--> statement-breakpoint
CREATE TABLE "rule_hits" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"call_id" uuid NOT NULL,
	"call_started_at" timestamp with time zone NOT NULL,
	"rule_id" text NOT NULL,
	"rule_version" integer NOT NULL,
	"kind" text NOT NULL,
	"role" text,
	"severity" text NOT NULL,
	"start_ms" integer NOT NULL,
	"end_ms" integer NOT NULL,
	"seq_from" integer,
	"seq_to" integer,
	"matched" text[] DEFAULT '{}'::text[] NOT NULL,
	"evidence" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"details" jsonb,
	"source" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rule_hits_source_check" CHECK (source IN ('live', 'postcall', 'backtest')),
	CONSTRAINT "rule_hits_role_check" CHECK (role IN ('customer', 'agent')),
	CONSTRAINT "rule_hits_severity_check" CHECK (severity IN ('info', 'warning', 'critical')),
	CONSTRAINT "rule_hits_live_key_check" CHECK (source <> 'live' OR (role IS NOT NULL AND seq_from IS NOT NULL))
);
--> statement-breakpoint
CREATE TABLE "rules" (
	"rule_id" text NOT NULL,
	"version" integer NOT NULL,
	"tenant_id" text,
	"name" text NOT NULL,
	"kind" text NOT NULL,
	"scope" text NOT NULL,
	"role" text DEFAULT 'any' NOT NULL,
	"severity" text NOT NULL,
	"is_alert" boolean DEFAULT false NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"config" jsonb NOT NULL,
	"source" text DEFAULT 'sql' NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rules_pkey" PRIMARY KEY("rule_id","version"),
	CONSTRAINT "rules_scope_check" CHECK (scope IN ('realtime', 'postcall', 'both')),
	CONSTRAINT "rules_role_check" CHECK (role IN ('customer', 'agent', 'any')),
	CONSTRAINT "rules_severity_check" CHECK (severity IN ('info', 'warning', 'critical')),
	CONSTRAINT "rules_source_check" CHECK (source IN ('file', 'sql')),
	CONSTRAINT "rules_version_check" CHECK (version >= 1)
);
--> statement-breakpoint
CREATE TABLE "utterance_originals" (
	"call_id" uuid NOT NULL,
	"role" text NOT NULL,
	"seq" integer NOT NULL,
	"text" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "utterance_originals_pkey" PRIMARY KEY("call_id","role","seq"),
	CONSTRAINT "utterance_originals_role_check" CHECK (role IN ('customer', 'agent'))
);
--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "agent_id" text;--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "queue_id" text;--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "metadata" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "utterances" ADD COLUMN "seg" text;--> statement-breakpoint
ALTER TABLE "utterances" ADD COLUMN "seg_version" text;--> statement-breakpoint
-- A STORED generated column rewrites utterances under an exclusive lock (every existing row gets
-- tsv = to_tsvector('simple', '') as seg is null). Cheap before the QA release; on a large table
-- schedule it in a quiet hour.
ALTER TABLE "utterances" ADD COLUMN "tsv" "tsvector" GENERATED ALWAYS AS (to_tsvector('simple', coalesce(seg, ''))) STORED;--> statement-breakpoint
ALTER TABLE "utterances" ADD COLUMN "pii_redacted" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "utterances" ADD COLUMN "pii_types" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "alert_deliveries" ADD CONSTRAINT "alert_deliveries_alert_id_alerts_alert_id_fk" FOREIGN KEY ("alert_id") REFERENCES "public"."alerts"("alert_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "alerts" ADD CONSTRAINT "alerts_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "call_metrics" ADD CONSTRAINT "call_metrics_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rule_hits" ADD CONSTRAINT "rule_hits_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "utterance_originals" ADD CONSTRAINT "utterance_originals_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "alert_deliveries_target_uidx" ON "alert_deliveries" USING btree ("alert_id","channel","target");--> statement-breakpoint
CREATE INDEX "alert_deliveries_pending_idx" ON "alert_deliveries" USING btree ("created_at") WHERE status = 'pending';--> statement-breakpoint
CREATE UNIQUE INDEX "alerts_trigger_uidx" ON "alerts" USING btree ("call_id","rule_id","rule_version","trigger_role","trigger_seq");--> statement-breakpoint
CREATE UNIQUE INDEX "alerts_dedupe_open_uidx" ON "alerts" USING btree ("dedupe_key") WHERE status IN ('open', 'acknowledged');--> statement-breakpoint
CREATE INDEX "alerts_open_idx" ON "alerts" USING btree ("tenant_id","committed_at" DESC NULLS LAST) WHERE status IN ('open', 'acknowledged');--> statement-breakpoint
CREATE INDEX "alerts_rule_committed_idx" ON "alerts" USING btree ("rule_id","committed_at");--> statement-breakpoint
CREATE INDEX "call_metrics_worst_idx" ON "call_metrics" USING btree ("tenant_id","call_started_at","sentiment_customer");--> statement-breakpoint
CREATE INDEX "call_metrics_categories_idx" ON "call_metrics" USING gin ("category_ids");--> statement-breakpoint
CREATE INDEX "rule_hits_rule_started_idx" ON "rule_hits" USING btree ("rule_id","call_started_at");--> statement-breakpoint
CREATE INDEX "rule_hits_call_idx" ON "rule_hits" USING btree ("call_id");--> statement-breakpoint
CREATE UNIQUE INDEX "rule_hits_live_uidx" ON "rule_hits" USING btree ("call_id","rule_id","rule_version","role","seq_from") WHERE source = 'live';--> statement-breakpoint
CREATE INDEX "utterance_originals_created_idx" ON "utterance_originals" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "calls_tenant_agent_started_idx" ON "calls" USING btree ("tenant_id","agent_id","started_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "utterances_tsv_idx" ON "utterances" USING gin ("tsv");--> statement-breakpoint
CREATE INDEX "utterances_negative_idx" ON "utterances" USING btree ("call_id") WHERE valence = -1;