//! The SQL of a conversion, built from catalog names (never from user text).

use crate::db::{Ident, QualifiedName};

/// The column list `a, b, c` and the `NEW.a, NEW.b, NEW.c` / `EXCLUDED` forms.
pub struct Columns(pub Vec<Ident>);

impl Columns {
    pub fn list(&self) -> String {
        self.0
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn prefixed(&self, prefix: &str) -> String {
        self.0
            .iter()
            .map(|c| format!("{prefix}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn set_excluded(&self) -> String {
        self.0
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The forward mirror: every write on the old table, repeated on the new one
/// in the writer's own transaction.
///
/// UPDATE and DELETE first take the id bucket's advisory lock (shared), which
/// the backfill holds exclusively while it copies that bucket: a write never
/// interleaves with the copy of its row, so the copy can neither resurrect a
/// deleted row nor overwrite a newer version. INSERT needs no lock: a new row
/// is written by the trigger before the backfill can see it, and the
/// backfill's `ON CONFLICT DO NOTHING` keeps the trigger's version.
#[allow(clippy::too_many_arguments)]
pub fn forward_function(
    function: &QualifiedName,
    new: &QualifiedName,
    cols: &Columns,
    id: &Ident,
    time: &Ident,
    lock_key: i32,
    bucket_rows: i64,
) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $strata$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_catalog.pg_advisory_xact_lock_shared({lock_key}, (OLD.{id} / {bucket_rows})::int4);
        IF TG_OP = 'DELETE' OR NEW.{id} IS DISTINCT FROM OLD.{id} OR NEW.{time} IS DISTINCT FROM OLD.{time} THEN
            DELETE FROM {new} WHERE {id} = OLD.{id} AND {time} = OLD.{time};
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO {new} ({list}) VALUES ({new_values})
            ON CONFLICT ({id}, {time}) DO UPDATE SET {set};
    END IF;
    RETURN NULL;
END
$strata$",
        list = cols.list(),
        new_values = cols.prefixed("NEW"),
        set = cols.set_excluded(),
    )
}

/// The reverse mirror (after cutover, until cleanup): writes on the new
/// (partitioned) table repeated on the old one, so a rollback loses nothing.
pub fn reverse_function(
    function: &QualifiedName,
    old: &QualifiedName,
    cols: &Columns,
    id: &Ident,
    old_key: &str,
) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $strata$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND (TG_OP = 'DELETE' OR NEW.{id} IS DISTINCT FROM OLD.{id}) THEN
        DELETE FROM {old} WHERE {id} = OLD.{id};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO {old} ({list}) VALUES ({new_values})
            ON CONFLICT ({old_key}) DO UPDATE SET {set};
    END IF;
    RETURN NULL;
END
$strata$",
        list = cols.list(),
        new_values = cols.prefixed("NEW"),
        set = cols.set_excluded(),
    )
}

/// Trigger name on both tables.
pub const TRIGGER: &str = "strata_convert_mirror";

pub fn create_trigger(table: &QualifiedName, function: &QualifiedName) -> String {
    format!(
        "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
}

pub fn drop_trigger(table: &QualifiedName) -> String {
    format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")
}
