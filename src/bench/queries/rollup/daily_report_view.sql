-- Daily report from the rollup view audit_logs_daily: $1 day start, $2 next day.
SELECT severity, status, sum(count)::bigint AS count FROM audit_logs_daily WHERE bucket >= $1 AND bucket < $2 GROUP BY severity, status ORDER BY severity, status
