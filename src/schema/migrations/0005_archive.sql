-- Archives of partitions as Parquet files on object storage (src/archive/).
-- One row per archived period; the manifest in the store is the proof, this
-- row is strata's index of it (list, report, metrics) and its state.
CREATE TABLE strata.archives (
    table_schema   text        NOT NULL,
    table_name     text        NOT NULL,
    period         text        NOT NULL,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    store_url      text        NOT NULL,
    manifest_key   text        NOT NULL,
    row_count      bigint      NOT NULL,
    content_hash   text        NOT NULL,
    store_bytes    bigint      NOT NULL,
    -- What the partition took in PostgreSQL when it was archived.
    heap_bytes     bigint      NOT NULL,
    total_bytes    bigint      NOT NULL,
    -- archived (partition still there) | dropped | restored
    state          text        NOT NULL DEFAULT 'archived'
                   CHECK (state IN ('archived', 'dropped', 'restored')),
    archived_at    timestamptz NOT NULL DEFAULT now(),
    verified_at    timestamptz,
    verify_ok      boolean,
    verify_error   text,
    dropped_at     timestamptz,
    restored_at    timestamptz,
    job_id         bigint,
    PRIMARY KEY (table_schema, table_name, period_start)
);
