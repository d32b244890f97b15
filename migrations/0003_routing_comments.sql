-- Descriptions of the columns added in 0002_routing, and of the two call_id columns 0001 left out
-- (see 0001_comments.sql; docs/schema.md has the long form).
COMMENT ON COLUMN "calls"."routing" IS 'role -> routing decision {model, fallback, rule, language}: the model each stream started on, its fallback, the rule that chose them (docs/routing.md)';--> statement-breakpoint
COMMENT ON COLUMN "calls"."models" IS 'role -> recogniser model the stream started on (utterances.model has the model of each sentence)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."arousal" IS '1 high, 0 low, normalised from emotion_raw (qwen: angry, fearful, disgusted, happy, surprised = 1; sad, neutral = 0); null when the label does not tell (paraformer) or no emotion';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."model" IS 'Recogniser model that produced the sentence (with failover it can change within a call)';--> statement-breakpoint
COMMENT ON COLUMN "call_streams"."call_id" IS 'calls.id (deleting a call deletes its streams)';--> statement-breakpoint
COMMENT ON COLUMN "utterances"."call_id" IS 'calls.id (deleting a call deletes its utterances)';
