-- strata migration 3: what the operations runtime records.
-- Every job says who started it and from where, and what it planned.
ALTER TABLE strata.jobs
    ADD COLUMN origin TEXT,
    ADD COLUMN actor TEXT,
    ADD COLUMN plan JSONB;

-- Partitions retention detached: renamed out of the live names (so a
-- re-created period never collides with them) and dropped only by an
-- explicit policy (detached_drop_after) or by hand.
CREATE TABLE strata.detached_partitions (
    id BIGSERIAL PRIMARY KEY,
    parent_schema TEXT NOT NULL,
    parent_table TEXT NOT NULL,
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    original_name TEXT NOT NULL,
    range_from TIMESTAMPTZ NOT NULL,
    range_to TIMESTAMPTZ NOT NULL,
    detached_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    dropped_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX detached_partitions_live
    ON strata.detached_partitions (schema_name, table_name) WHERE dropped_at IS NULL;
