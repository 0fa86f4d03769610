//! The SQL of a conversion, built from catalog names (never from user text).
//! Bodies are dollar-quoted with a tag absent from them ([`DollarQuoted`]):
//! an identifier may contain `$`.

use crate::db::{DollarQuoted, Ident, QualifiedName, Statement};

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

fn function(name: &QualifiedName, body: String) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS {}",
        DollarQuoted::new(body)
    )
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
    name: &QualifiedName,
    new: &QualifiedName,
    cols: &Columns,
    id: &Ident,
    time: &Ident,
    lock_key: i32,
    bucket_rows: i64,
) -> String {
    let body = format!(
        "
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
",
        list = cols.list(),
        new_values = cols.prefixed("NEW"),
        set = cols.set_excluded(),
    );
    function(name, body)
}

/// The reverse mirror (after cutover, until cleanup): writes on the new
/// (partitioned) table repeated on the old one, so a rollback loses nothing.
pub fn reverse_function(
    name: &QualifiedName,
    old: &QualifiedName,
    cols: &Columns,
    id: &Ident,
    old_key: &str,
) -> String {
    let body = format!(
        "
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
",
        list = cols.list(),
        new_values = cols.prefixed("NEW"),
        set = cols.set_excluded(),
    );
    function(name, body)
}

/// Trigger name on both tables.
pub const TRIGGER: &str = "strata_convert_mirror";

/// The mirror trigger, `ENABLE ALWAYS`: a trigger enabled the default way
/// does not fire for sessions with `session_replication_role = replica`
/// (logical replication apply, some bulk loaders), and their writes would
/// be missing from the other table at cutover.
pub fn create_trigger(table: &QualifiedName, function: &QualifiedName) -> Vec<Statement> {
    vec![
        Statement::Sql(format!(
            "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
        )),
        Statement::Sql(format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {TRIGGER}")),
    ]
}

pub fn drop_trigger(table: &QualifiedName) -> Statement {
    Statement::Sql(format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}"))
}

/// Autovacuum on either table (likely on fresh partitions after a
/// backfill) holds SHARE UPDATE EXCLUSIVE for as long as it runs; PostgreSQL
/// cancels it only after `deadlock_timeout` (1 s) of a conflicting wait,
/// longer than our lock_timeout. So each swap attempt first cancels the
/// autovacuum workers on the tables involved, as the server itself would
/// (they come back later). Without the privilege to do so, nothing happens.
pub fn cancel_autovacuum(tables: &[&QualifiedName]) -> Statement {
    let regs = tables
        .iter()
        .map(|t| format!("to_regclass({})", crate::db::literal(&t.to_string())))
        .collect::<Vec<_>>()
        .join(", ");
    let body = format!(
        " BEGIN
            PERFORM pg_catalog.pg_cancel_backend(a.pid)
               FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_locks l ON l.pid = a.pid
              WHERE a.backend_type = 'autovacuum worker' AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                                            WHERE datname = current_database())
                AND (l.relation IN ({regs})
                     OR l.relation IN (SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent IN ({regs})));
         EXCEPTION WHEN insufficient_privilege THEN NULL;
         END "
    );
    Statement::Sql(format!("DO {}", DollarQuoted::new(body)))
}

/// `ALTER INDEX schema.a RENAME TO b` for each pair (or back, `reverse`).
pub fn renames(
    schema: &Ident,
    pairs: &[(String, String)],
    reverse: bool,
) -> Result<Vec<Statement>, crate::db::IdentError> {
    pairs
        .iter()
        .map(|(a, b)| {
            let (from, to) = if reverse { (b, a) } else { (a, b) };
            Ok(Statement::Sql(format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                schema,
                Ident::new(from.clone())?,
                Ident::new(to.clone())?
            )))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_holding_the_default_tag_cannot_end_the_body() {
        let cols = Columns(vec![Ident::new("a$strata$b").unwrap()]);
        let f = QualifiedName::new("strata", "f").unwrap();
        let t = QualifiedName::new("Odd\"Schema", "Ev ents").unwrap();
        let sql = reverse_function(&f, &t, &cols, &Ident::new("id").unwrap(), "id");
        let tag = "$strata_1$";
        assert_eq!(sql.matches(tag).count(), 2, "{sql}");
        assert!(sql.ends_with(tag));
    }
}
