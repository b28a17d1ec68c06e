-- Issue 9, hand-written (renumber / regenerate at merge).
-- late_periods: accumulation months (YYYY-MM) older than the month they arrived in that received usage since the key's last computation; the computation looks at them, then clears them (usage of any earlier month, not a full-history scan).
-- parked_at, parked_reason, rejection_code, rejections: a key parked after repeated terminal rejections of the same kind (db/parking.ts).
ALTER TABLE "remittance_keys" ADD COLUMN "late_periods" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "remittance_keys" ADD COLUMN "rejection_code" text;--> statement-breakpoint
ALTER TABLE "remittance_keys" ADD COLUMN "rejections" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "remittance_keys" ADD COLUMN "parked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "remittance_keys" ADD COLUMN "parked_reason" text;--> statement-breakpoint
CREATE INDEX "remittance_keys_parked" ON "remittance_keys" USING btree ("key") WHERE "remittance_keys"."parked_at" IS NOT NULL;
