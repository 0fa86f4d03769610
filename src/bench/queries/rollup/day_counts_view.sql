-- Events per day of one month from the rollup audit_logs_daily through its range function: $1 month start, $2 next month.
SELECT date_trunc('day', bucket) AS day, sum(count)::bigint AS events FROM strata.audit_logs_daily_range($1, $2) GROUP BY 1 ORDER BY 1
