CREATE TABLE "hour_closes" (
	"hour" timestamp with time zone PRIMARY KEY NOT NULL,
	"closed_by" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "marketplace_records" (
	"id" text PRIMARY KEY NOT NULL,
	"marketplace" text NOT NULL,
	"identity" text NOT NULL,
	"remittance_hour" timestamp with time zone NOT NULL,
	"customer" jsonb NOT NULL,
	"dimension" text NOT NULL,
	"quantity" integer NOT NULL,
	"status" text NOT NULL,
	"error_code" text,
	"reason" text,
	"receipt_id" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"attempt_open" boolean DEFAULT false NOT NULL,
	"in_doubt" boolean DEFAULT false NOT NULL,
	"last_error" text,
	"deadline" timestamp with time zone NOT NULL,
	"billed_on" timestamp with time zone,
	"workflow_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "marketplace_records_quantity_positive" CHECK ("marketplace_records"."quantity" > 0)
);
--> statement-breakpoint
ALTER TABLE "remittances" ALTER COLUMN "workflow_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "remittances" ADD COLUMN "record_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "marketplace_records_identity_hour" ON "marketplace_records" USING btree ("identity","remittance_hour");--> statement-breakpoint
CREATE INDEX "marketplace_records_status" ON "marketplace_records" USING btree ("status","marketplace","updated_at");--> statement-breakpoint
ALTER TABLE "remittances" ADD CONSTRAINT "remittances_record_id_marketplace_records_id_fk" FOREIGN KEY ("record_id") REFERENCES "public"."marketplace_records"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "remittances_record" ON "remittances" USING btree ("record_id");--> statement-breakpoint
ALTER TABLE "remittance_keys" DROP COLUMN "scheduled_hour";--> statement-breakpoint
ALTER TABLE "remittances" DROP COLUMN "attempts";--> statement-breakpoint
ALTER TABLE "remittances" DROP COLUMN "attempt_open";--> statement-breakpoint
ALTER TABLE "remittances" DROP COLUMN "in_doubt";--> statement-breakpoint
ALTER TABLE "remittances" DROP COLUMN "last_error";