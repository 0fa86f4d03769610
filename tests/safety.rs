//! The operations runtime's safety rules, each tried against a real server
//! the way an operator could break it: a pretended time, a run from another
//! directory, a detach followed by a re-created period, a row stamped in the
//! year 9999, a lock held by someone else, a second maintenance run.

mod common;

use std::time::{Duration, Instant};

use common::{config_file, stderr, stdout, strata, strata_cmd, TestDb};

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn partitions(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'public.audit_logs'::regclass ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

const DROP_24: &str = "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"24 months\"\nretention_mode = \"drop\"\n";

/// Finding 1: `--now` in the future with `retention_mode = "drop"` dropped
/// live partitions, the current month included. Now a pretended time only
/// creates; what it would drop is shown, and nothing is dropped.
#[tokio::test]
async fn a_pretended_time_never_drops() {
    let db = TestDb::migrated().await;
    let cfg = config_file("strata.toml", DROP_24);
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "load",
            "--rows",
            "2000",
            "--from",
            "2025-01-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let c = db.client().await;
    let before = partitions(&c).await;
    let rows = count(&c, "SELECT count(*) FROM audit_logs").await;
    assert_eq!(rows, 2000);

    let out = strata(&db, &["--config", &cfg, "maintain", "--now", "2029-06-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("pretending it is 2029-06-01"), "{text}");
    let after = partitions(&c).await;
    for p in &before {
        assert!(
            after.contains(p),
            "{p} was dropped by a pretended time: {text}"
        );
    }
    assert!(
        after.len() > before.len(),
        "partitions for 2029 were created"
    );
    assert_eq!(count(&c, "SELECT count(*) FROM audit_logs").await, 2000);

    // `plan --now` shows what retention would do then, marked as not done.
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "partitions",
            "plan",
            "--now",
            "2029-06-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would drop public.audit_logs_2025_01"),
        "{}",
        stdout(&out)
    );

    // A load whose rows end years ahead never runs retention.
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "load",
            "--rows",
            "10",
            "--from",
            "2029-01-01",
            "--to",
            "2029-02-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after_load = partitions(&c).await;
    for p in &before {
        assert!(after_load.contains(p), "{p} was dropped by a load");
    }
    assert_eq!(count(&c, "SELECT count(*) FROM audit_logs").await, 2010);
}

/// Finding 2: the stored spec was overwritten by whatever configuration the
/// current directory had (or the defaults): retention silently turned off.
#[tokio::test]
async fn the_stored_spec_is_the_source_of_truth() {
    let db = TestDb::migrated().await;
    let detach12 =
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"12 months\"\n";
    let cfg = config_file("strata.toml", detach12);
    let out = strata(&db, &["--config", &cfg, "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = db.client().await;
    let stored: serde_json::Value = c
        .query_one("SELECT spec FROM strata.managed_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored["retention"]["count"], 12, "{stored}");

    // From a directory without a configuration: the stored spec, not the
    // defaults (which have no retention).
    let out = strata(&db, &["config", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("\"12 months\""), "{shown}");
    assert!(shown.contains("database"), "{shown}");
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stored_after: serde_json::Value = c
        .query_one("SELECT spec FROM strata.managed_tables", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, stored_after);

    // A differing configuration is refused with exit 2, naming the key and
    // both values, and changes nothing.
    let cfg24 = config_file("strata.toml", &detach12.replace("12 months", "24 months"));
    let parts_before = partitions(&c).await;
    let out = strata(&db, &["--config", &cfg24, "maintain"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("retention is \"12 months\" in the database but \"24 months\""),
        "{err}"
    );
    assert!(err.contains("strata config apply"), "{err}");
    assert_eq!(partitions(&c).await, parts_before);
    // Read-only commands refuse too: a report of a spec nobody stored.
    let out = strata(&db, &["--config", &cfg24, "health"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // `config apply` stores it, as a job that records both versions.
    let out = strata(&db, &["--config", &cfg24, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("retention \"12 months\" -> \"24 months\""),
        "{}",
        stdout(&out)
    );
    let job: (String, serde_json::Value, String) = {
        let r = c
            .query_one(
                "SELECT state, result, origin FROM strata.jobs WHERE kind = 'config_apply'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(job.0, "succeeded");
    assert_eq!(job.1["previous"]["retention"]["count"], 12);
    assert_eq!(job.1["stored"]["retention"]["count"], 24);
    assert_eq!(job.2, "cli");
    let out = strata(&db, &["--config", &cfg24, "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Finding 3: detached partitions stayed under the live names, listed
/// nowhere, and collided with a re-created period.
#[tokio::test]
async fn detached_partitions_are_renamed_recorded_and_dropped_by_policy() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    let cfg = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\n",
    );
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "load",
            "--rows",
            "1000",
            "--from",
            "2025-01-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = count(&c, "SELECT count(*) FROM audit_logs").await;

    // Retention of 12 months by the real clock: 2025's early months go.
    let out = strata(&db, &["--config", &cfg, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let detach = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"12 months\"\n",
    );
    assert!(strata(&db, &["--config", &detach, "config", "apply"])
        .status
        .success());
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("plan: detach public.audit_logs_2025_01"),
        "{}",
        stdout(&out)
    );
    let live = partitions(&c).await;
    assert!(
        !live.contains(&"audit_logs_2025_01".to_string()),
        "{live:?}"
    );
    // Renamed out of the live names, rows kept, recorded.
    let kept = count(
        &c,
        "SELECT count(*) FROM public.audit_logs_2025_01_detached",
    )
    .await;
    assert!(kept > 0);
    let out = strata(&db, &["partitions", "list", "--detached", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["original_name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"audit_logs_2025_01"), "{listed}");
    assert_eq!(
        count(&c, "SELECT count(*) FROM audit_logs").await + detached_rows(&c).await,
        rows
    );

    // Back to no retention (someone changes their mind): January is wanted
    // again and is re-created without colliding with the detached table.
    assert!(strata(&db, &["--config", &cfg, "config", "apply"])
        .status
        .success());
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(partitions(&c)
        .await
        .contains(&"audit_logs_2025_01".to_string()));

    // Detached tables are dropped only by detached_drop_after.
    let drop_policy = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"12 months\"\ndetached_drop_after = \"1 day\"\n",
    );
    assert!(strata(&db, &["--config", &drop_policy, "config", "apply"])
        .status
        .success());
    c.execute(
        "UPDATE strata.detached_partitions SET detached_at = now() - interval '2 days' WHERE original_name = 'audit_logs_2025_01'",
        &[],
    )
    .await
    .unwrap();
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone: bool = c
        .query_one(
            "SELECT to_regclass('public.audit_logs_2025_01_detached') IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(gone, "{}", stdout(&out));
    // The others were detached less than a day ago: still there.
    assert!(
        count(
            &c,
            "SELECT count(*) FROM strata.detached_partitions WHERE dropped_at IS NULL"
        )
        .await
            > 0
    );
}

async fn detached_rows(c: &tokio_postgres::Client) -> i64 {
    let names: Vec<String> = c
        .query(
            "SELECT quote_ident(schema_name) || '.' || quote_ident(table_name) FROM strata.detached_partitions WHERE dropped_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut n = 0;
    for t in names {
        n += count(c, &format!("SELECT count(*) FROM {t}")).await;
    }
    n
}

/// Finding 4: one POST of rows stamped in far years made `maintain` create
/// a partition per period found in the default partition.
#[tokio::test]
async fn far_away_rows_make_no_partitions_and_creation_is_bounded() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = partitions(&c).await.len();
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, created_at)
         SELECT 1, 'x', make_timestamptz(y, 1, 1, 0, 0, 0, 'UTC') FROM generate_series(2100, 9999, 10) y;
         INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'x', '0001-01-01 00:00:00+00');",
    )
    .await
    .unwrap();
    let out = strata(&db, &["partitions", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(partitions(&c).await.len(), before, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("outside the window"),
        "{}",
        stderr(&out)
    );
    // The rows are still there, in the default partition.
    assert_eq!(
        count(&c, "SELECT count(*) FROM audit_logs_default").await,
        791
    );

    // A daily table from 2025-01-01 wants ~730 partitions: 48 per run
    // unless --yes, and the run says so (exit 3).
    let daily = TestDb::migrated().await;
    let cfg = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\ninterval = \"1 day\"\nstart = \"2025-01-01\"\n",
    );
    let out = strata(&daily, &["--config", &cfg, "maintain"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("held back by max_new_partitions"),
        "{}",
        stderr(&out)
    );
    let dc = daily.client().await;
    assert_eq!(partitions(&dc).await.len(), 48 + 1);
    // The current day and those ahead were created first.
    let today: bool = dc
        .query_one(
            "SELECT to_regclass('public.audit_logs_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM_DD')) IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(today);
    let out = strata(&daily, &["--config", &cfg, "maintain", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(partitions(&dc).await.len() > 700);
}

/// Finding 5: `partitions apply` hung for as long as another session held
/// ACCESS EXCLUSIVE on the parent. Now every command gives up within a
/// bounded time and names the blocking session.
#[tokio::test]
async fn a_held_lock_makes_commands_fail_fast_naming_the_blocker() {
    let db = TestDb::migrated().await;
    assert!(strata(&db, &["maintain"]).status.success());
    for relation in ["public.audit_logs", "public.audit_logs_default"] {
        let holder = db.client().await;
        holder
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        let pid: i32 = holder
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        for args in [
            &["partitions", "apply"][..],
            &["maintain"],
            &["partitions", "plan"],
        ] {
            let started = Instant::now();
            let out = strata(&db, args);
            let took = started.elapsed();
            assert!(
                !out.status.success(),
                "{args:?} with {relation} locked succeeded"
            );
            assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(
                all.contains(&format!("pid {pid}")),
                "{args:?}, {relation}: {all}"
            );
        }
        holder.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Finding 6: `schedule run maintain` waited for the table's maintenance
/// lock inside a statement, and deadlocked with a REINDEX CONCURRENTLY.
/// Now it never waits: a busy table is exit 3 "already running".
#[tokio::test]
async fn a_scheduled_run_refuses_a_busy_table_instead_of_waiting() {
    let db = TestDb::migrated().await;
    assert!(strata(&db, &["maintain"]).status.success());
    let holder = db.client().await;
    // What a running reindex (or any maintenance) of the table holds.
    assert!(
        strata::db::try_advisory_lock(&holder, "maintain:public.audit_logs")
            .await
            .unwrap()
    );
    for job in ["maintain", "vacuum"] {
        let started = Instant::now();
        let out = strata_cmd(&db)
            .args(["schedule", "run", job])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(3), "{job}: {}", stderr(&out));
        assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    }
    for args in [
        &["maintain"][..],
        &["vacuum", "audit_logs"],
        &["reindex", "audit_logs"],
    ] {
        let out = strata(&db, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    }
}

/// Every command that reads or changes the table, against an ACCESS
/// EXCLUSIVE holder on the parent and on one partition. Behind the parent
/// each exits non-zero within 30 s naming the blocking pid (health reports
/// the lock naming it). Behind one partition, the commands that must touch
/// it (vacuum, analyze, reindex) fail the same way, and the catalog reads
/// (index plan, stats, report, health) answer at once without its lock,
/// the locked partition included.
#[tokio::test]
async fn every_command_is_bounded_behind_an_access_exclusive_holder() {
    let db = TestDb::migrated().await;
    assert!(strata(&db, &["maintain"]).status.success());
    let month: String = db
        .client()
        .await
        .query_one(
            "SELECT 'public.audit_logs_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let touch: [&[&str]; 3] = [
        &["vacuum", "audit_logs"],
        &["analyze", "audit_logs"],
        &["reindex", "audit_logs"],
    ];
    let reads: [&[&str]; 4] = [
        &["indexes", "apply"],
        &["stats", "partitions"],
        &["stats", "indexes"],
        &["report"],
    ];
    for (relation, parent) in [
        ("public.audit_logs".to_string(), true),
        (month.clone(), false),
    ] {
        let holder = db.client().await;
        holder
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        let pid: i32 = holder
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        for args in touch.iter().chain(&reads) {
            let started = Instant::now();
            let out = strata(&db, args);
            let took = started.elapsed();
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
            if parent || touch.contains(args) {
                assert!(
                    !out.status.success(),
                    "{args:?} with {relation} locked succeeded: {all}"
                );
                assert!(
                    all.contains(&format!("pid {pid}")),
                    "{args:?}, {relation}: {all}"
                );
            } else {
                assert!(out.status.success(), "{args:?}, {relation}: {all}");
                if *args == ["stats", "partitions"] {
                    let short = month.trim_start_matches("public.");
                    assert!(all.contains(short), "{args:?} lists {short}: {all}");
                }
            }
        }
        let started = Instant::now();
        let out = strata(&db, &["--json", "health"]);
        assert!(started.elapsed() < Duration::from_secs(30));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if parent {
            let text = report.to_string();
            assert!(
                text.contains(&format!("pid {pid}")) || text.contains(&pid.to_string()),
                "{report:#}"
            );
        } else {
            assert!(
                report["checks"].as_array().is_some_and(|c| !c.is_empty()),
                "{report:#}"
            );
        }
        holder.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// The messages and exit codes the review found wrong.
#[tokio::test]
async fn messages_and_exit_codes() {
    let db = TestDb::migrated().await;
    // An unknown job kind is a usage error, not an empty list.
    let out = strata(&db, &["jobs", "list", "--kind", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("kinds: "), "{}", stderr(&out));
    assert!(strata(&db, &["jobs", "list", "--kind", "maintain"])
        .status
        .success());
    // A retention no date arithmetic can hold is refused, not a panic.
    let cfg = config_file(
        "strata.toml",
        "[[table]]\nretention = \"4000000000 days\"\n",
    );
    let out = strata(&db, &["--config", &cfg, "partitions", "plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("table[0].retention"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
    // `--json schedule run` of a failing job exits non-zero.
    let holder = db.client().await;
    assert!(
        strata::db::try_advisory_lock(&holder, "maintain:public.audit_logs")
            .await
            .unwrap()
    );
    let out = strata(&db, &["--json", "schedule", "run", "vacuum"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    // A maintain blocked by another run says what holds it, not that
    // "partition maintenance" runs.
    let out = strata(&db, &["maintain"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("maintenance of this table is already running"),
        "{}",
        stderr(&out)
    );
}

/// Finding 10: names from the catalog reach SQL only as identifiers. A
/// managed table whose schema, name and columns are hostile goes through
/// every operation, and nothing but what strata means runs.
#[tokio::test]
async fn hostile_catalog_names_go_through_every_operation() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute(
        r#"CREATE SCHEMA "Odd""Schema";
           CREATE TABLE "Odd""Schema"."Ev ents" (LIKE public.audit_logs INCLUDING DEFAULTS INCLUDING GENERATED)
             PARTITION BY RANGE (created_at);
           ALTER TABLE "Odd""Schema"."Ev ents" ADD PRIMARY KEY (id, created_at),
             ADD COLUMN "a$strata$b" text, ADD COLUMN "x;DROP" int,
             ADD COLUMN "$strata$;CREATE TABLE public.pwned();--" text;
           CREATE TABLE "Odd""Schema"."Ev ents_default" PARTITION OF "Odd""Schema"."Ev ents" DEFAULT;
           INSERT INTO "Odd""Schema"."Ev ents" (id, user_id, action, created_at, "a$strata$b", "x;DROP")
             SELECT g, g, 'user.login', now() - g * interval '1 day', 'v' || g, g FROM generate_series(1, 400) g;"#,
    )
    .await
    .unwrap();
    let cfg = config_file(
        "strata.toml",
        "[[table]]\nname = 'Odd\"Schema.Ev ents'\nstart = \"2025-06-01\"\n[maintenance]\nmove_batch_rows = 50\n",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg.as_str()];
        all.extend_from_slice(args);
        strata(&db, &all)
    };
    for args in [
        &["maintain"][..],
        &["indexes", "apply"],
        &["vacuum", "\"Odd\"\"Schema\".\"Ev ents\""],
        &["analyze", "\"Odd\"\"Schema\".\"Ev ents\""],
        &["reindex", "\"Odd\"\"Schema\".\"Ev ents\""],
        &["stats", "partitions"],
        &["stats", "indexes"],
        &["partitions", "list"],
        &["report"],
        &["health"],
    ] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // Every row moved out of the default partition into its month, values kept.
    assert_eq!(
        count(
            &c,
            r#"SELECT count(*) FROM "Odd""Schema"."Ev ents_default""#
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            r#"SELECT count(*) FROM "Odd""Schema"."Ev ents" WHERE "a$strata$b" = 'v' || "x;DROP""#
        )
        .await,
        400
    );
    let pwned: bool = c
        .query_one("SELECT to_regclass('public.pwned') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!pwned, "a column name ran as SQL");
}
