mod common;

use common::TestDb;
use strata::schema::{self, Migration, SchemaError};

/// The seed's audit_logs, column by column: (name, type, nullable, default).
const SEED_COLUMNS: &[(&str, &str, bool, Option<&str>)] = &[
    (
        "id",
        "bigint",
        false,
        Some("nextval('audit_logs_id_seq'::regclass)"),
    ),
    ("user_id", "bigint", false, None),
    ("action", "character varying(100)", false, None),
    ("resource_type", "character varying(50)", true, None),
    ("resource_id", "bigint", true, None),
    ("details", "jsonb", true, None),
    ("ip_address", "inet", true, None),
    ("user_agent", "text", true, None),
    ("status", "character varying(20)", true, None),
    ("severity", "character varying(20)", true, None),
    (
        "created_at",
        "timestamp with time zone",
        false,
        Some("now()"),
    ),
    ("search_vector", "tsvector", true, None),
];

#[tokio::test]
async fn migrate_on_an_empty_database_builds_the_seed_table_exactly() {
    let db = TestDb::empty().await;
    let mut c = db.client().await;
    let report = schema::migrate(&mut c, false).await.unwrap();
    assert_eq!(report.applied.len(), schema::MIGRATIONS.len());

    let rows = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                    CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                    a.attgenerated::text
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = 'public.audit_logs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap();
    let actual: Vec<(String, String, bool, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected: Vec<(String, String, bool, Option<String>)> = SEED_COLUMNS
        .iter()
        .map(|(n, t, null, d)| (n.to_string(), t.to_string(), *null, d.map(str::to_string)))
        .collect();
    assert_eq!(actual, expected);
    let generated: String = rows.last().unwrap().get(4);
    assert_eq!(generated, "s", "search_vector is a stored generated column");

    // information_schema agrees on types and nullability.
    let is_rows = c
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text, character_maximum_length
               FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'audit_logs'
              ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let varchar: Vec<(String, Option<i32>)> = is_rows
        .iter()
        .filter(|r| r.get::<_, String>(1) == "character varying")
        .map(|r| (r.get(0), r.get(3)))
        .collect();
    assert_eq!(
        varchar,
        vec![
            ("action".into(), Some(100)),
            ("resource_type".into(), Some(50)),
            ("status".into(), Some(20)),
            ("severity".into(), Some(20))
        ]
    );

    let pk: String = c
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'public.audit_logs'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pk, "PRIMARY KEY (id, created_at)");
    let key: String = c
        .query_one(
            "SELECT pg_get_partkeydef('public.audit_logs'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, "RANGE (created_at)");

    for schema_table in [
        "managed_tables",
        "jobs",
        "api_tokens",
        "query_snapshots",
        "conversions",
        "schema_migrations",
    ] {
        let exists: bool = c
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("strata.{schema_table}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!(exists, "strata.{schema_table} exists");
    }
}

#[tokio::test]
async fn a_second_migrate_applies_nothing() {
    let db = TestDb::migrated().await;
    let mut c = db.client().await;
    let report = schema::migrate(&mut c, false).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, schema::MIGRATIONS.len());
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let db = TestDb::empty().await;
    let mut c = db.client().await;
    let report = schema::migrate(&mut c, true).await.unwrap();
    assert_eq!(report.applied.len(), schema::MIGRATIONS.len());
    assert!(report.applied.iter().all(|m| !m.applied));
    let exists: bool = c
        .query_one("SELECT to_regnamespace('strata') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "a dry run must not even create the strata schema");
}

#[tokio::test]
async fn concurrent_migrates_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = strata::db::connect(&url).await.unwrap();
            schema::migrate(&mut c, false)
                .await
                .map(|r| r.applied.len())
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.push(t.await.unwrap().expect("every concurrent migrate succeeds"));
    }
    applied.sort();
    assert_eq!(
        applied,
        vec![0, 0, 0, schema::MIGRATIONS.len()],
        "exactly one run applied the migrations"
    );
    let c = db.client().await;
    let counts: Vec<(i32, i64)> = c
        .query(
            "SELECT version, count(*) FROM strata.schema_migrations GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(counts.len(), schema::MIGRATIONS.len());
    assert!(counts.iter().all(|(_, n)| *n == 1));
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDb::migrated().await;
    let mut c = db.client().await;
    let edited = [Migration {
        version: 1,
        name: "init",
        sql: "SELECT 1; -- edited",
    }];
    let err = schema::migrate_with(&mut c, &edited, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SchemaError::Edited { version: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
    // And the lock was released: a normal migrate still works.
    assert!(schema::migrate(&mut c, false)
        .await
        .unwrap()
        .applied
        .is_empty());
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let db = TestDb::empty().await;
    let mut c = db.client().await;
    let broken = [Migration {
        version: 1,
        name: "broken",
        sql: "CREATE TABLE public.half (x int); SELECT 1/0;",
    }];
    assert!(schema::migrate_with(&mut c, &broken, false).await.is_err());
    let half: bool = c
        .query_one("SELECT to_regclass('public.half') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!half, "the migration's transaction was rolled back");
    let n: i64 = c
        .query_one("SELECT count(*) FROM strata.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
