-- Events per day of one month from the base table (session TimeZone is UTC): $1 month start, $2 next month.
SELECT date_trunc('day', created_at) AS day, count(*)::bigint AS events FROM audit_logs WHERE created_at >= $1 AND created_at < $2 GROUP BY 1 ORDER BY 1
