//! A user's newest rows without a time range: partitions walked newest to
//! oldest; the pages, concatenated, are the full ORDER BY of the table.

mod common;

use common::{seeded, stderr, strata};
use strata::api::user_walk::newest_for_user;
use strata::db::QualifiedName;

#[tokio::test]
async fn pages_concatenated_equal_the_full_order_across_partitions() {
    let db = seeded(3_000).await;
    let client = db.client().await;
    // Rows on partition boundaries, equal times (ties broken by id), and
    // rows in the default partition (past the partitions made), for user 5.
    client
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at) VALUES
               (5, 'edge', '2025-03-01 00:00+00'), (5, 'edge', '2025-03-01 00:00+00'),
               (5, 'edge', '2025-02-28 23:59:59.999999+00'), (5, 'far', '2031-05-05 00:00+00'),
               (5, 'far', '2024-01-01 00:00+00'), (5, 'edge', '2025-06-30 23:59:59+00')",
        )
        .await
        .unwrap();
    let in_default: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_logs_default WHERE user_id = 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_default, 2, "two rows outside the partitions made");
    let table = QualifiedName::new("public", "audit_logs").unwrap();
    for (user, limit) in [
        (5i64, 3i64),
        (5, 1),
        (5, 100),
        (1, 7),
        (2, 50),
        (999_999, 10),
    ] {
        let expected: Vec<i64> = client
            .query(
                "SELECT id FROM audit_logs WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
                &[&user],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut got = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (rows, next) = newest_for_user(&client, &table, user, after, limit)
                .await
                .unwrap();
            assert!(rows.len() as i64 <= limit);
            got.extend(rows.iter().map(|r| r.id));
            pages += 1;
            assert!(pages < 10_000, "the walk ends");
            match next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(got, expected, "user {user}, {limit} a page");
        if !expected.is_empty() && expected.len() as i64 % limit != 0 {
            assert_eq!(
                pages,
                expected.len() as i64 / limit + 1,
                "no empty last page"
            );
        }
    }
    // The command line walks the same way.
    let out = strata(&db, &["events", "--user-id", "5", "--limit", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["items"][0]["action"], "far", "{v}");
    assert_eq!(v["items"][1]["action"], "edge", "{v}");
    assert!(v["next_cursor"].is_string(), "{v}");
}

/// The walk reuses its partition list between calls (checked against the
/// catalog in the same round trip as the first page): a premade partition
/// that gets rows, a partition dropped, one made by hand and a partition
/// detached each show at once.
#[tokio::test]
async fn the_reused_partition_list_follows_the_catalog() {
    let db = seeded(3_000).await;
    let client = db.client().await;
    let table = QualifiedName::new("public", "audit_logs").unwrap();
    let check = |what: &'static str| {
        let client = &client;
        let table = &table;
        async move {
            let expected: Vec<i64> = client
                .query(
                    "SELECT id FROM audit_logs WHERE user_id = 5 ORDER BY created_at DESC, id DESC LIMIT 10",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Twice: the first call may read the list afresh, the second
            // reuses it.
            for _ in 0..2 {
                let (rows, _) = newest_for_user(client, table, 5, None, 10).await.unwrap();
                let got: Vec<i64> = rows.iter().map(|r| r.id).collect();
                assert_eq!(got, expected, "{what}");
            }
            expected
        }
    };
    check("before any change").await;
    // 2026-02 was made empty (premake) and left out of the list.
    let id: i64 = client
        .query_one(
            "INSERT INTO audit_logs (user_id, action, created_at)
             VALUES (5, 'premade', '2026-02-10 00:00+00') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(check("a premade partition got a row").await[0], id);
    client
        .batch_execute("DROP TABLE audit_logs_2026_02")
        .await
        .unwrap();
    assert_ne!(check("the partition was dropped").await[0], id);
    client
        .batch_execute(
            "CREATE TABLE audit_logs_2030_01 PARTITION OF audit_logs
               FOR VALUES FROM ('2030-01-01 00:00+00') TO ('2030-02-01 00:00+00')",
        )
        .await
        .unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO audit_logs (user_id, action, created_at)
             VALUES (5, 'new', '2030-01-05 00:00+00') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(check("a partition made by hand").await[0], id);
    client
        .batch_execute("ALTER TABLE audit_logs DETACH PARTITION audit_logs_2030_01")
        .await
        .unwrap();
    assert_ne!(check("the partition was detached").await[0], id);
}
