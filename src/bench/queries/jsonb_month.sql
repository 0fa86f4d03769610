-- JSONB containment within one month: $1 month start, $2 next month, $3 document.
SELECT count(*) FROM audit_logs WHERE created_at >= $1 AND created_at < $2 AND details @> $3::jsonb
