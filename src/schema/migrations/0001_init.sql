-- strata migration 1: the seed's audit_logs, exactly, plus its search_vector,
-- and strata's metadata schema. Partitions are the partition engine's job:
-- only the DEFAULT partition is made here, so that no insert ever fails for
-- want of a partition (strata moves such rows out again; see `strata maintain`).

-- An existing audit_logs (a plain table to convert with `strata convert`) is
-- left alone: only the strata schema is created then.
DO $strata$
BEGIN
IF to_regclass('public.audit_logs') IS NULL THEN
    CREATE TABLE public.audit_logs (
        id BIGSERIAL,
        user_id BIGINT NOT NULL,
        action VARCHAR(100) NOT NULL,
        resource_type VARCHAR(50),
        resource_id BIGINT,
        details JSONB,
        ip_address INET,
        user_agent TEXT,
        status VARCHAR(20),
        severity VARCHAR(20),
        created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        -- The seed indexes search_vector but never defines it. 'simple' because
        -- audit text is identifiers and codes, not prose to be stemmed; only the
        -- string values of details are indexed, not its keys.
        search_vector TSVECTOR GENERATED ALWAYS AS (
            to_tsvector('simple'::regconfig,
                action || ' ' || coalesce(resource_type, '') || ' ' || coalesce(status, ''))
            || jsonb_to_tsvector('simple'::regconfig, coalesce(details, '{}'::jsonb), '["string"]'::jsonb)
        ) STORED,
        PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at);

    -- The seed's index set, plus (user_id, created_at DESC): without it a heavy
    -- user's latest events are ~60x slower partitioned than on a plain table with
    -- a created_at B-tree (139 ms vs 2.3 ms at 5M rows, BASELINES.md Q5).
    CREATE INDEX idx_audit_logs_created_at_brin ON public.audit_logs
        USING BRIN (created_at) WITH (pages_per_range = 128, autosummarize = on);
    CREATE INDEX idx_audit_logs_user_id ON public.audit_logs (user_id);
    CREATE INDEX idx_audit_logs_action ON public.audit_logs (action);
    CREATE INDEX idx_audit_logs_severity ON public.audit_logs (severity);
    CREATE INDEX idx_audit_logs_user_id_created_at ON public.audit_logs (user_id, created_at DESC);
    -- jsonb_path_ops, not the default jsonb_ops: measured at 1M documents it builds
    -- 2.3x faster, is 35% smaller, ingests 1.5x faster and answers @> as fast or
    -- faster; it does not serve the key-existence operators (?, ?|, ?&).
    -- See ARCHITECTURE.md "Index set" and bench/gin_opclass.sql.
    CREATE INDEX idx_audit_logs_details_gin ON public.audit_logs USING GIN (details jsonb_path_ops) WITH (fastupdate = on);
    CREATE INDEX idx_audit_logs_search_vector_gin ON public.audit_logs USING GIN (search_vector);

    CREATE TABLE public.audit_logs_default PARTITION OF public.audit_logs DEFAULT;
END IF;
END
$strata$;

-- Metadata.

CREATE TABLE strata.managed_tables (
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    spec JSONB NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);

CREATE TABLE strata.jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'missed')),
    -- For scheduled runs: the occurrence this run is for (exactly once each).
    scheduled_for TIMESTAMPTZ,
    owner TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    error TEXT,
    result JSONB
);
CREATE INDEX jobs_kind_created ON strata.jobs (kind, created_at DESC);
CREATE UNIQUE INDEX jobs_one_running ON strata.jobs (kind, target) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_one_per_occurrence ON strata.jobs (kind, target, scheduled_for)
    WHERE scheduled_for IS NOT NULL;

CREATE TABLE strata.api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'reader', 'writer')),
    token_sha256 BYTEA NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE strata.query_snapshots (
    captured_at TIMESTAMPTZ NOT NULL,
    stats_reset TIMESTAMPTZ,
    userid OID NOT NULL,
    dbid OID NOT NULL,
    queryid BIGINT NOT NULL,
    query TEXT NOT NULL,
    calls BIGINT NOT NULL,
    total_exec_time DOUBLE PRECISION NOT NULL,
    rows BIGINT NOT NULL,
    shared_blks_hit BIGINT NOT NULL,
    shared_blks_read BIGINT NOT NULL,
    PRIMARY KEY (captured_at, userid, dbid, queryid)
);

CREATE TABLE strata.conversions (
    id BIGSERIAL PRIMARY KEY,
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    phase TEXT NOT NULL,
    watermark BIGINT,
    rows_copied BIGINT NOT NULL DEFAULT 0,
    rows_total_estimate BIGINT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    last_error TEXT,
    timings JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE UNIQUE INDEX conversions_one_active ON strata.conversions (schema_name, table_name)
    WHERE finished_at IS NULL;
