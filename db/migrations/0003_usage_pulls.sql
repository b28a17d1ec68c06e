CREATE TABLE "usage_pulls" (
	"hour" timestamp with time zone PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"tallies" integer,
	"pulled_at" timestamp with time zone,
	CONSTRAINT "usage_pulls_status_known" CHECK ("usage_pulls"."status" IN ('pulling', 'pulled', 'failed'))
);
--> statement-breakpoint
CREATE INDEX "usage_pulls_status" ON "usage_pulls" USING btree ("status","hour");