-- Events per day of one month from the rollup view audit_logs_daily: $1 month start, $2 next month.
SELECT date_trunc('day', bucket) AS day, sum(count)::bigint AS events FROM audit_logs_daily WHERE bucket >= $1 AND bucket < $2 GROUP BY 1 ORDER BY 1
