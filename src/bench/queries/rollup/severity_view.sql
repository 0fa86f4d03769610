-- Every row of the table by severity, from the rollup view audit_logs_daily.
SELECT severity, sum(count)::bigint AS count FROM audit_logs_daily GROUP BY severity ORDER BY severity
