-- Daily report from the base table: $1 day start, $2 next day.
SELECT severity, status, count(*)::bigint AS count FROM audit_logs WHERE created_at >= $1 AND created_at < $2 GROUP BY severity, status ORDER BY severity, status
