-- The latest 100 events of user $1: no time range, so nothing to prune.
SELECT * FROM audit_logs WHERE user_id = $1 ORDER BY created_at DESC LIMIT 100
