-- strata migration 2: what an online conversion needs to resume after a
-- crash: the tables involved, the id range to backfill, the lock bucket size.
ALTER TABLE strata.conversions
    ADD COLUMN new_table TEXT,
    ADD COLUMN old_table TEXT,
    ADD COLUMN backfill_until BIGINT,
    ADD COLUMN bucket_rows BIGINT NOT NULL DEFAULT 50000,
    ADD COLUMN batch_rows BIGINT NOT NULL DEFAULT 10000,
    ADD COLUMN verified_at TIMESTAMPTZ,
    ADD COLUMN cutover_at TIMESTAMPTZ;
