-- The settings ($1, names) that matter to the bench, as the session sees them.
SELECT s.name::text, pg_catalog.current_setting(s.name)
  FROM pg_catalog.pg_settings s
 WHERE s.name = ANY ($1::text[])
 ORDER BY s.name;
