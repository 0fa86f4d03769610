//! A user's newest rows without a time range: partitions walked newest to
//! oldest, one bounded query each, stopping once the page is full.
//!
//! A query on the parent with no time range plans and starts an ordered
//! index scan in every partition; a heavy user's page is found in the
//! newest one. The default partition may hold rows of any time, so its top
//! rows are read once and merged in.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::audit_query::{Cursor, LogRow};
use crate::db::{DbError, QualifiedName};

/// A partition to walk: its lower bound when it is a range partition
/// (`Some(None)` for MINVALUE), `None` for one that may hold any time (the
/// default partition, or a bound this code cannot read).
type Part = (QualifiedName, Option<Option<DateTime<Utc>>>);

/// Columns of a page, as `LogRow` reads them.
const COLUMNS: &str = "id, user_id, action::text, resource_type::text, resource_id, details, pg_catalog.abbrev(ip_address), user_agent, status::text, severity::text, created_at";

/// Range partitions newest first, then the others; partitions certainly
/// empty (no heap page) are left out.
///
/// One statement, one round trip: the walk's whole cost next to a plain
/// table's single query is round trips and planning, so the listing reads
/// bounds and emptiness at once instead of a `SET LOCAL TimeZone`
/// transaction around it.
async fn partitions(client: &Client, table: &QualifiedName) -> Result<Vec<Part>, DbError> {
    let rows = client
        .query_typed(
            include_str!("user_walk_partitions.sql"),
            &[(&table.to_string(), Type::TEXT)],
        )
        .await
        .map_err(DbError::query("listing partitions"))?;
    let mut out: Vec<Part> = Vec::new();
    for r in rows {
        if r.get::<_, bool>(3) {
            continue;
        }
        let name = QualifiedName::new(r.get(0), r.get(1))?;
        out.push((name, lower_bound(r.get(2))));
    }
    // Some(Some(newest)) ... Some(None) (MINVALUE), then None.
    out.sort_by_key(|p| std::cmp::Reverse(p.1));
    Ok(out)
}

/// The lower bound of a range partition's bound text (`Some(None)` for
/// MINVALUE); `None` for the default partition and anything else, which the
/// walk then reads as "may hold any time" (always read, merged).
///
/// The text is in the session's DateStyle and TimeZone; with ISO DateStyle
/// (PostgreSQL's default) it carries its UTC offset, so any TimeZone parses
/// exactly; another DateStyle only makes the walk read those partitions
/// like the default one.
fn lower_bound(expr: &str) -> Option<Option<DateTime<Utc>>> {
    let rest = expr.trim().strip_prefix("FOR VALUES FROM (")?;
    if rest.starts_with("MINVALUE") {
        return Some(None);
    }
    let text = rest.strip_prefix('\'')?.split('\'').next()?;
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| Some(t.with_timezone(&Utc)))
}

/// Up to `limit` of `user_id`'s rows in `rel`, newest first, after `after`.
///
/// `query_typed`: an unnamed statement parsed, bound and run in one round
/// trip (a prepared statement would cost a second one per partition), and
/// planned with the values, so it is a custom plan of one partition.
async fn page_of(
    client: &Client,
    rel: &QualifiedName,
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<LogRow>, DbError> {
    let rows = match after {
        None => {
            client
                .query_typed(
                    &format!("/* strata */ SELECT {COLUMNS} FROM {rel} WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"),
                    &[(&user_id, Type::INT8), (&limit, Type::INT8)],
                )
                .await
        }
        Some(c) => {
            client
                .query_typed(
                    &format!("/* strata */ SELECT {COLUMNS} FROM {rel} WHERE user_id = $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"),
                    &[
                        (&user_id, Type::INT8),
                        (&c.created_at, Type::TIMESTAMPTZ),
                        (&c.id, Type::INT8),
                        (&limit, Type::INT8),
                    ],
                )
                .await
        }
    }
    .map_err(DbError::query("reading a user's rows"))?;
    Ok(rows
        .iter()
        .map(|r| LogRow {
            id: r.get(0),
            user_id: r.get(1),
            action: r.get(2),
            resource_type: r.get(3),
            resource_id: r.get(4),
            details: r.get(5),
            ip_address: r.get(6),
            user_agent: r.get(7),
            status: r.get(8),
            severity: r.get(9),
            created_at: r.get(10),
        })
        .collect())
}

/// One page of `user_id`'s rows, newest first (`created_at DESC, id DESC`),
/// after `after`; the cursor of the next page when there is one.
pub async fn newest_for_user(
    client: &Client,
    table: &QualifiedName,
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<LogRow>, Option<Cursor>), DbError> {
    let want = limit + 1;
    let parts = partitions(client, table).await?;
    let mut rows: Vec<LogRow> = Vec::new();
    let mut ranged = 0i64;
    for (rel, lower) in &parts {
        match lower {
            Some(lo) => {
                if ranged >= want {
                    // Every row of this and older partitions is older than
                    // the ones held.
                    continue;
                }
                // Wholly newer than the cursor: nothing after it here.
                if let (Some(lo), Some(c)) = (lo, after) {
                    if *lo > c.created_at {
                        continue;
                    }
                }
                let got = page_of(client, rel, user_id, after, want - ranged).await?;
                ranged += got.len() as i64;
                rows.extend(got);
            }
            None => rows.extend(page_of(client, rel, user_id, after, want).await?),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next = if more {
        rows.last().map(|r| Cursor {
            created_at: r.created_at,
            id: r.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

#[cfg(test)]
mod tests {
    use super::lower_bound;

    #[test]
    fn bounds_parse_with_any_offset() {
        let utc =
            lower_bound("FOR VALUES FROM ('2025-11-01 00:00:00+00') TO ('2025-12-01 00:00:00+00')");
        let cet =
            lower_bound("FOR VALUES FROM ('2025-11-01 01:00:00+01') TO ('2025-12-01 01:00:00+01')");
        let half = lower_bound("FOR VALUES FROM ('2025-11-01 05:30:00.5+05:30') TO (MAXVALUE)");
        assert_eq!(utc, cet);
        assert_eq!(
            utc.unwrap().unwrap().to_rfc3339(),
            "2025-11-01T00:00:00+00:00"
        );
        assert_eq!(
            half.unwrap().unwrap().to_rfc3339(),
            "2025-11-01T00:00:00.500+00:00"
        );
        assert_eq!(
            lower_bound("FOR VALUES FROM (MINVALUE) TO ('2025-01-01 00:00:00+00')"),
            Some(None)
        );
        assert_eq!(lower_bound("DEFAULT"), None);
        assert_eq!(
            lower_bound("FOR VALUES FROM ('Sat Nov 01 00:00:00 2025 UTC') TO (MAXVALUE)"),
            None
        );
    }
}
