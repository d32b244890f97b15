-- Descriptions for dashboard tools (Metabase, Grafana, psql \d+). docs/schema.md has the long form.
COMMENT ON TABLE "calls" IS 'One row per call. Offsets (*_ms) elsewhere are ms from started_at.';--> statement-breakpoint
COMMENT ON COLUMN "calls"."id" IS 'callscribe call id (uuid), the key of call_streams and utterances';--> statement-breakpoint
COMMENT ON COLUMN "calls"."source" IS 'twilio | rtp | sip; unknown while only a placeholder row exists (a job overtook the call-start job)';--> statement-breakpoint
COMMENT ON COLUMN "calls"."tenant_id" IS 'Tenant (Twilio custom parameter tenant/tenantId), default ''default''';--> statement-breakpoint
COMMENT ON COLUMN "calls"."call_sid" IS 'Twilio CallSid';--> statement-breakpoint
COMMENT ON COLUMN "calls"."stream_sid" IS 'Twilio StreamSid; unique per source';--> statement-breakpoint
COMMENT ON COLUMN "calls"."account_sid" IS 'Twilio AccountSid';--> statement-breakpoint
COMMENT ON COLUMN "calls"."external_ids" IS 'All provider identifiers as received (JSON object of strings)';--> statement-breakpoint
COMMENT ON COLUMN "calls"."started_at" IS 'Media stream start: timeline 0 of every *_ms offset of the call';--> statement-breakpoint
COMMENT ON COLUMN "calls"."ended_at" IS 'When ingest ended the call; null while active';--> statement-breakpoint
COMMENT ON COLUMN "calls"."status" IS 'active | ended | failed (failed: every recogniser stream failed); never returns to active';--> statement-breakpoint
COMMENT ON COLUMN "calls"."end_reason" IS 'stop | socket-closed | idle-timeout | drain | …';--> statement-breakpoint
COMMENT ON COLUMN "calls"."duration_ms" IS 'Audio ingested, ms';--> statement-breakpoint
COMMENT ON COLUMN "calls"."custom_parameters" IS 'Telephony custom parameters (Twilio <Parameter>s) as received';--> statement-breakpoint
COMMENT ON COLUMN "calls"."roles" IS 'track -> role, e.g. {"inbound": "customer", "outbound": "agent"}';--> statement-breakpoint
COMMENT ON COLUMN "calls"."models" IS 'role -> recogniser model';--> statement-breakpoint
COMMENT ON COLUMN "calls"."ingest_stats" IS 'Ingest counters at call end (frames, drops by error code, gaps); null until the end';--> statement-breakpoint
COMMENT ON COLUMN "calls"."created_at" IS 'Row inserted';--> statement-breakpoint
COMMENT ON COLUMN "calls"."updated_at" IS 'Row last changed';--> statement-breakpoint
COMMENT ON TABLE "call_streams" IS 'One row per (call, role): latest status of that speaker''s recogniser stream';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."role" IS 'customer | agent';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."track" IS 'Telephony track the role''s audio came from';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."model" IS 'Recogniser model';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."status" IS 'pending | active | finished | failed';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."error_code" IS 'Stable error code (ERR_ASR_...) of the failure, if any';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."error_message" IS 'Provider error text (no PII)';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."reconnects" IS 'Recogniser reconnects so far';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."utterances" IS 'Final sentences produced so far';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."status_at" IS 'When ingest observed the status; older statuses never overwrite newer ones';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."updated_at" IS 'Row last written';--> statement-breakpoint
COMMENT ON TABLE "utterances" IS 'One row per final sentence of one speaker; key (call_id, role, seq)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."call_started_at" IS 'calls.started_at, copied (future partition key: filter on it to prune)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."role" IS 'customer | agent';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."track" IS 'Telephony track of the audio';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."seq" IS 'Sentence index per (call, role), from 1, gap-free';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."start_ms" IS 'Sentence start, ms from calls.started_at';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."end_ms" IS 'Sentence end, ms from calls.started_at';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."text" IS 'Final transcript text (may contain PII)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."char_count" IS 'Letters and digits in text (each CJK character counts 1; no punctuation, spaces or symbols): CPM numerator';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."words" IS 'JSON array of {startMs, endMs, text, punctuation}, offsets on the call timeline; [] when the model gives none';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."emotion_raw" IS 'Emotion label as the provider gave it; null: no emotion';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."emotion_provider" IS 'Model that produced the emotion label';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."emotion_confidence" IS '0..1; null when the provider gives none';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."valence" IS '-1 negative, 0 neutral, 1 positive (normalised from emotion_raw); null: no emotion';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."model" IS 'Recogniser model';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."asr_task_id" IS 'Provider task/session id that produced the sentence';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."audio_end_at" IS 'Telephony frame carrying the sentence end reached callscribe';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."final_received_at" IS 'Final result arrived from the recogniser';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."enqueued_at" IS 'Job added to the queue';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."persisted_at" IS 'Row written (transaction time)';
