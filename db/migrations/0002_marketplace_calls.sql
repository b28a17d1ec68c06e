CREATE TABLE "marketplace_calls" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"rate_key" text NOT NULL,
	"at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "marketplace_calls_key_at" ON "marketplace_calls" USING btree ("rate_key","at");