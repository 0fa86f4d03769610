-- Whether a listing of $1's partitions (user_walk_partitions.sql) still
-- holds, as cheaply as the catalog allows (it is paid on every read):
-- $1 still names the table listed ($2, its oid then); the membership
-- fingerprint (each pg_inherits row's partition and xmin: an attach, detach,
-- new or dropped partition changes it, and a bound changes only by detach
-- and attach); and the bytes of the partitions listed as empty ($3), still
-- 0 while none has a row. A renamed partition is caught by the walk itself
-- (a name gone, or rows outside the bounds listed under it).
SELECT $1::text::regclass::oid = $2::oid,
       (SELECT count(*)::text || ' ' || coalesce(sum(i.inhrelid::int8 * 4294967296 + i.xmin::text::int8), 0)::text
          FROM pg_catalog.pg_inherits i
         WHERE i.inhparent = $2::oid),
       (SELECT coalesce(sum(pg_catalog.pg_relation_size(o)), 0)::int8
          FROM pg_catalog.unnest($3::oid[]) o)
