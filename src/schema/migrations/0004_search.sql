-- strata migration 4: full-text search finds the words inside dotted, slashed,
-- dashed and underscored values. The 'simple' parser keeps `user.login` and
-- `/api/v1/users` as one token each, so `q=login` found nothing.
--
-- search_vector is a stored generated column: changing its expression would
-- rewrite every partition. Instead, strata.search_words() adds each token's
-- parts to it, and an expression index on that is built per partition
-- online (`strata indexes apply`: CREATE INDEX CONCURRENTLY + ATTACH).
-- `GET /audit-logs?q=` searches that same expression, so the index serves it.

-- The vector plus every part of every token split at . / - and _.
CREATE FUNCTION strata.search_words(v pg_catalog.tsvector) RETURNS pg_catalog.tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN v || pg_catalog.to_tsvector('simple'::pg_catalog.regconfig,
        pg_catalog.translate(pg_catalog.array_to_string(pg_catalog.tsvector_to_array(v), ' '), './-_', '    '));

-- A query's words, split the same way: `user.login` asks for user and login.
CREATE FUNCTION strata.search_query(q pg_catalog.text) RETURNS pg_catalog.tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.plainto_tsquery('simple'::pg_catalog.regconfig, pg_catalog.translate(q, './-_', '    '));

-- The index on the partitioned audit_logs made by migration 1 (a table
-- converted later gets it from `strata convert`, which builds the index set).
DO $strata$
BEGIN
IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
            WHERE c.oid = to_regclass('public.audit_logs') AND c.relkind = 'p'
              AND a.attname = 'search_vector' AND NOT a.attisdropped)
   AND to_regclass('public.idx_audit_logs_search_words_gin') IS NULL THEN
    IF NOT EXISTS (SELECT 1 FROM public.audit_logs LIMIT 1) THEN
        -- No rows (a new install): the whole index at once, valid from the start.
        CREATE INDEX idx_audit_logs_search_words_gin ON public.audit_logs
            USING GIN (strata.search_words(search_vector));
    ELSE
        -- Rows exist: never build under a lock that blocks writers. The parent's
        -- index is instant (and INVALID until every partition has one attached);
        -- `strata indexes apply` builds the partitions' online.
        CREATE INDEX idx_audit_logs_search_words_gin ON ONLY public.audit_logs
            USING GIN (strata.search_words(search_vector));
    END IF;
END IF;
END
$strata$;
