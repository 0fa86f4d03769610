-- strata migration 7: sealed months. A seal is a Merkle root over every row
-- of a closed period, chained to the previous period's seal and optionally
-- signed (docs/seal-format.md). The archive's manifest copies a seals row.

CREATE TABLE strata.seals (
    id BIGSERIAL PRIMARY KEY,
    table_schema TEXT NOT NULL,
    table_name TEXT NOT NULL,
    -- The partition as it was named when sealed (retention may rename it).
    partition_schema TEXT NOT NULL,
    partition_name TEXT NOT NULL,
    period_start TIMESTAMPTZ NOT NULL,
    period_end TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL,
    root BYTEA NOT NULL,
    -- NULL only for the first seal of a table.
    prev_hash BYTEA,
    seal_hash BYTEA NOT NULL,
    signature BYTEA,
    key_id TEXT,
    sealed_at TIMESTAMPTZ NOT NULL,
    format INTEGER NOT NULL DEFAULT 1,
    UNIQUE (table_schema, table_name, period_start)
);

-- What verify needs to name rows: per chunk of 1,024 rows (in (created_at,
-- id) order) its subtree hash, the ids (delta varints) and the first 4 bytes
-- of each leaf hash. See docs/seals.md for the cost.
CREATE TABLE strata.seal_chunks (
    seal_id BIGINT NOT NULL REFERENCES strata.seals (id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    root BYTEA NOT NULL,
    ids BYTEA NOT NULL,
    leaves BYTEA NOT NULL,
    PRIMARY KEY (seal_id, chunk)
);

-- The guard of a sealed partition. Row triggers, not statement triggers: an
-- INSERT or UPDATE routed through the parent fires the partition's row
-- triggers but not its statement triggers. TG_ARGV[0] names the seal.
CREATE FUNCTION strata.seal_refuse() RETURNS trigger
LANGUAGE plpgsql AS $strata$
BEGIN
    RAISE EXCEPTION '% on %.% refused: the partition is sealed (%)',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'sealed periods are read-only; see strata seal list';
END
$strata$;
