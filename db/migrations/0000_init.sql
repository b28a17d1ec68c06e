CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"dry_run" boolean DEFAULT false NOT NULL,
	"request" jsonb NOT NULL,
	"result" jsonb
);
--> statement-breakpoint
CREATE TABLE "contracts" (
	"contract_id" text PRIMARY KEY NOT NULL,
	"org_id" text NOT NULL,
	"billing_provider" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"product_tag" text NOT NULL,
	"start_date" timestamp with time zone NOT NULL,
	"end_date" timestamp with time zone,
	"license_id" text,
	"aws" jsonb,
	"azure" jsonb,
	"metrics" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "remittance_keys" (
	"key" text NOT NULL,
	"billing_provider" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"org_id" text NOT NULL,
	"product_tag" text NOT NULL,
	"metric" text NOT NULL,
	"sla" text NOT NULL,
	"usage" text NOT NULL,
	"change_seq" bigint DEFAULT 1 NOT NULL,
	"computed_seq" bigint DEFAULT 0 NOT NULL,
	"last_change_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "remittance_keys_key_pk" PRIMARY KEY("key")
);
--> statement-breakpoint
CREATE TABLE "remittance_parts" (
	"remittance_id" text NOT NULL,
	"key" text NOT NULL,
	"period" text NOT NULL,
	"bill" integer NOT NULL,
	"claim" numeric NOT NULL,
	"mtd" numeric NOT NULL,
	"coverage" numeric DEFAULT '0' NOT NULL,
	"gratis" boolean DEFAULT false NOT NULL,
	CONSTRAINT "remittance_parts_remittance_id_period_pk" PRIMARY KEY("remittance_id","period")
);
--> statement-breakpoint
CREATE TABLE "remittances" (
	"id" text PRIMARY KEY NOT NULL,
	"key" text NOT NULL,
	"billing_provider" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"org_id" text NOT NULL,
	"product_tag" text NOT NULL,
	"metric" text NOT NULL,
	"sla" text NOT NULL,
	"usage" text NOT NULL,
	"remittance_hour" timestamp with time zone NOT NULL,
	"status" text NOT NULL,
	"bill" integer DEFAULT 0 NOT NULL,
	"claim" numeric DEFAULT '0' NOT NULL,
	"dimension" text,
	"customer" jsonb,
	"license_id" text,
	"error_code" text,
	"reason" text,
	"receipt_id" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"deadline" timestamp with time zone,
	"billed_on" timestamp with time zone,
	"workflow_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "remittances_bill_nonnegative" CHECK ("remittances"."bill" >= 0)
);
--> statement-breakpoint
CREATE TABLE "tallies" (
	"key" text NOT NULL,
	"billing_provider" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"org_id" text NOT NULL,
	"product_tag" text NOT NULL,
	"metric" text NOT NULL,
	"sla" text NOT NULL,
	"usage" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"period" text NOT NULL,
	"value" numeric NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tallies_key_hour_pk" PRIMARY KEY("key","hour"),
	CONSTRAINT "tallies_value_nonnegative" CHECK ("tallies"."value" >= 0)
);
--> statement-breakpoint
ALTER TABLE "remittance_parts" ADD CONSTRAINT "remittance_parts_remittance_id_remittances_id_fk" FOREIGN KEY ("remittance_id") REFERENCES "public"."remittances"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_at" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "contracts_lookup" ON "contracts" USING btree ("org_id","billing_provider","billing_account_id","product_tag");--> statement-breakpoint
CREATE INDEX "remittance_keys_owing" ON "remittance_keys" USING btree ("key") WHERE "remittance_keys"."change_seq" > "remittance_keys"."computed_seq";--> statement-breakpoint
CREATE INDEX "remittance_parts_key_period" ON "remittance_parts" USING btree ("key","period");--> statement-breakpoint
CREATE UNIQUE INDEX "remittances_key_hour" ON "remittances" USING btree ("key","remittance_hour");--> statement-breakpoint
CREATE INDEX "remittances_status" ON "remittances" USING btree ("status","remittance_hour");--> statement-breakpoint
CREATE INDEX "remittances_account" ON "remittances" USING btree ("billing_account_id","remittance_hour");--> statement-breakpoint
CREATE INDEX "remittances_org" ON "remittances" USING btree ("org_id","remittance_hour");--> statement-breakpoint
CREATE INDEX "tallies_key_period_hour" ON "tallies" USING btree ("key","period","hour");