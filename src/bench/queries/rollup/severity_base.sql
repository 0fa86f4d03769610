-- Every row of the table by severity, from the base table.
SELECT severity, count(*)::bigint AS count FROM audit_logs GROUP BY severity ORDER BY severity
