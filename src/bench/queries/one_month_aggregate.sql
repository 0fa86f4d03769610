-- Every row of one month, aggregated: $1 month start, $2 next month.
SELECT action, count(*) FROM audit_logs WHERE created_at >= $1 AND created_at < $2 GROUP BY action ORDER BY action
