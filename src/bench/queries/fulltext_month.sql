-- Full-text search within one month: $1 month start, $2 next month, $3 tsquery.
SELECT count(*) FROM audit_logs WHERE created_at >= $1 AND created_at < $2 AND search_vector @@ pg_catalog.to_tsquery('simple', $3)
