ALTER TABLE "usage_pulls" ADD COLUMN "rejected" integer DEFAULT 0 NOT NULL;
