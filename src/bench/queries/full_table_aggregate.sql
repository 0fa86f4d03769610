-- Every row of the table: no time range, so nothing to prune.
SELECT severity, count(*) FROM audit_logs GROUP BY severity ORDER BY severity
