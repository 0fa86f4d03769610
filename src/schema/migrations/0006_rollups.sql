-- strata migration 6: rollups (continuous aggregates) of managed tables.
--
-- Per table, an invalidation threshold: writes to times below it are
-- logged (one [lo, hi] range per statement) because rollups may already
-- hold those buckets; writes above it are read live by the views anyway.
CREATE TABLE strata.rollup_tables (
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    time_column TEXT NOT NULL,
    threshold TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (schema_name, table_name)
);

-- Per rollup: its definition, where its partial state lives, and the
-- watermark below which buckets are materialized (above it the view
-- aggregates base rows live).
CREATE TABLE strata.rollups (
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    name TEXT NOT NULL,
    spec JSONB NOT NULL,
    storage_name TEXT NOT NULL,
    view_name TEXT NOT NULL,
    watermark TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    refreshed_at TIMESTAMPTZ,
    PRIMARY KEY (schema_name, table_name, name),
    FOREIGN KEY (schema_name, table_name)
        REFERENCES strata.rollup_tables (schema_name, table_name) ON DELETE CASCADE
);

-- Ranges of the time column written below the threshold since the last
-- refresh (and ranges strata itself changed: a partition dropped,
-- detached, attached, restored). A refresh deletes exactly the rows it
-- consumed, so ranges logged meanwhile survive.
CREATE TABLE strata.rollup_invalidations (
    id BIGSERIAL PRIMARY KEY,
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    lo TIMESTAMPTZ NOT NULL,
    hi TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (lo <= hi)
);
CREATE INDEX rollup_invalidations_table ON strata.rollup_invalidations (schema_name, table_name, lo);

-- The statement trigger of a managed table and of each of its partitions
-- (a write made directly to a partition fires only the partition's).
-- Arguments: time column, parent schema, parent table. SECURITY DEFINER:
-- the application's role writes audit_logs but need not see strata's schema.
CREATE FUNCTION strata.rollup_invalidate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    th timestamptz;
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT r.threshold INTO th FROM strata.rollup_tables r
     WHERE r.schema_name = TG_ARGV[1] AND r.table_name = TG_ARGV[2];
    IF th IS NULL OR th = '-infinity' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        lo := '-infinity';
        hi := th;
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT min(%1$I), max(%1$I) FROM n', TG_ARGV[0]) INTO lo, hi;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT min(%1$I), max(%1$I) FROM o', TG_ARGV[0]) INTO lo, hi;
    ELSE
        -- An update may move a row in time or change a dimension: both the
        -- old and the new times are touched. Two ranges, so a row moved
        -- from one year to another does not invalidate the months between.
        EXECUTE format('SELECT min(%1$I), max(%1$I) FROM o', TG_ARGV[0]) INTO lo, hi;
        IF lo IS NOT NULL AND lo < th THEN
            INSERT INTO strata.rollup_invalidations (schema_name, table_name, lo, hi)
            VALUES (TG_ARGV[1], TG_ARGV[2], lo, hi);
        END IF;
        EXECUTE format('SELECT min(%1$I), max(%1$I) FROM n', TG_ARGV[0]) INTO lo, hi;
    END IF;
    IF lo IS NOT NULL AND lo < th THEN
        INSERT INTO strata.rollup_invalidations (schema_name, table_name, lo, hi)
        VALUES (TG_ARGV[1], TG_ARGV[2], lo, hi);
    END IF;
    RETURN NULL;
END
$$;
