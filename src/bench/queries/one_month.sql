-- The seed's one-month query: $1 month start, $2 next month.
SELECT * FROM audit_logs WHERE created_at >= $1 AND created_at < $2 LIMIT 10000
