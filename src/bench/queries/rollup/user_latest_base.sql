-- The latest 100 rows of user $1 in one query, the columns and order strata's read path returns: $1 user, $2 limit.
SELECT id, user_id, action::text, resource_type::text, resource_id, details, pg_catalog.abbrev(ip_address), user_agent, status::text, severity::text, created_at FROM audit_logs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2
