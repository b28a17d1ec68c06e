ALTER TABLE "remittances" ADD COLUMN "attempt_open" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "remittances" ADD COLUMN "in_doubt" boolean DEFAULT false NOT NULL;