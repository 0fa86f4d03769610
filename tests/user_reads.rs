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
