-- Inactive replication slots and the WAL each keeps the server from recycling.
SELECT s.slot_name::text AS slot_name,
       s.slot_type,
       s.database::text AS database,
       pg_catalog.pg_wal_lsn_diff(
           CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END,
           s.restart_lsn)::int8 AS retained_bytes
  FROM pg_catalog.pg_replication_slots s
 WHERE NOT s.active
 ORDER BY 4 DESC NULLS LAST, 1;
