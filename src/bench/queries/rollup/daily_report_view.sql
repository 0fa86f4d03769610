-- Daily report from the rollup audit_logs_daily through its range function (the view's rows with $1 <= bucket < $2): $1 day start, $2 next day.
SELECT severity, status, sum(count)::bigint AS count FROM strata.audit_logs_daily_range($1, $2) GROUP BY severity, status ORDER BY severity, status
