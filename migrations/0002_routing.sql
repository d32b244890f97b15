ALTER TABLE "calls" ADD COLUMN "routing" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "utterances" ADD COLUMN "arousal" smallint;--> statement-breakpoint
-- NOT VALID: the new column is NULL in every existing row, so there is nothing to check, and
-- validating would scan the whole utterances table under an exclusive lock (migrations run
-- in one transaction). New and updated rows are checked as usual.
ALTER TABLE "utterances" ADD CONSTRAINT "utterances_arousal_check" CHECK (arousal IN (0, 1)) NOT VALID;
