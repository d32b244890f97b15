CREATE TABLE "call_streams" (
	"call_id" uuid NOT NULL,
	"role" text NOT NULL,
	"track" text NOT NULL,
	"model" text NOT NULL,
	"status" text NOT NULL,
	"error_code" text,
	"error_message" text,
	"reconnects" integer DEFAULT 0 NOT NULL,
	"utterances" integer DEFAULT 0 NOT NULL,
	"status_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "call_streams_pkey" PRIMARY KEY("call_id","role"),
	CONSTRAINT "call_streams_role_check" CHECK (role IN ('customer', 'agent')),
	CONSTRAINT "call_streams_status_check" CHECK (status IN ('pending', 'active', 'finished', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "calls" (
	"id" uuid PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"tenant_id" text DEFAULT 'default' NOT NULL,
	"call_sid" text,
	"stream_sid" text,
	"account_sid" text,
	"external_ids" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"status" text DEFAULT 'active' NOT NULL,
	"end_reason" text,
	"duration_ms" integer,
	"custom_parameters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"roles" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"models" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"ingest_stats" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "calls_source_check" CHECK (source IN ('twilio', 'rtp', 'sip', 'unknown')),
	CONSTRAINT "calls_status_check" CHECK (status IN ('active', 'ended', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "utterances" (
	"call_id" uuid NOT NULL,
	"call_started_at" timestamp with time zone NOT NULL,
	"role" text NOT NULL,
	"track" text NOT NULL,
	"seq" integer NOT NULL,
	"start_ms" integer NOT NULL,
	"end_ms" integer NOT NULL,
	"text" text NOT NULL,
	"char_count" integer NOT NULL,
	"words" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"emotion_raw" text,
	"emotion_provider" text,
	"emotion_confidence" real,
	"valence" smallint,
	"model" text NOT NULL,
	"asr_task_id" text NOT NULL,
	"audio_end_at" timestamp with time zone,
	"final_received_at" timestamp with time zone NOT NULL,
	"enqueued_at" timestamp with time zone,
	"persisted_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "utterances_pkey" PRIMARY KEY("call_id","role","seq"),
	CONSTRAINT "utterances_role_check" CHECK (role IN ('customer', 'agent')),
	CONSTRAINT "utterances_valence_check" CHECK (valence IN (-1, 0, 1))
);
--> statement-breakpoint
ALTER TABLE "call_streams" ADD CONSTRAINT "call_streams_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "utterances" ADD CONSTRAINT "utterances_call_id_calls_id_fk" FOREIGN KEY ("call_id") REFERENCES "public"."calls"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "calls_started_at_idx" ON "calls" USING btree ("started_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "calls_call_sid_idx" ON "calls" USING btree ("call_sid");--> statement-breakpoint
CREATE UNIQUE INDEX "calls_source_stream_sid_uidx" ON "calls" USING btree ("source","stream_sid") WHERE stream_sid IS NOT NULL;--> statement-breakpoint
CREATE INDEX "calls_tenant_started_idx" ON "calls" USING btree ("tenant_id","started_at" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "utterances_call_order_idx" ON "utterances" USING btree ("call_id","start_ms");--> statement-breakpoint
CREATE INDEX "utterances_started_idx" ON "utterances" USING btree ("call_started_at");