//! A user's newest rows without a time range: partitions walked newest to
//! oldest, one bounded query each, stopping once the page is full.
//!
//! A query on the parent with no time range plans and starts an ordered
//! index scan in every partition; a heavy user's page is found in the
//! newest one. The default partition may hold rows of any time, so its top
//! rows are read once and merged in.
//!
//! The partition list is kept between calls (per process and table) and
//! checked against the catalog on each one, in the same round trip as the
//! first partition's page: a plain table answers in one statement, and a
//! second round trip for the list was most of the walk's extra cost.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::audit_query::{Cursor, LogRow};
use crate::db::{DbError, QualifiedName};

/// A partition to walk.
#[derive(Clone, Debug)]
struct Part {
    name: QualifiedName,
    /// The lower bound of a range partition (`Some(None)` for MINVALUE);
    /// `None` for one that may hold any time (the default partition, or a
    /// bound this code cannot read).
    lower: Option<Option<DateTime<Utc>>>,
    /// The upper bound of a range partition, `None` for MAXVALUE or
    /// unknown.
    upper: Option<DateTime<Utc>>,
}

impl Part {
    /// Whether a row at `t` may be in this partition as listed: a row
    /// outside its bounds means the name now belongs to another partition.
    fn holds(&self, t: DateTime<Utc>) -> bool {
        match self.lower {
            None => true,
            Some(lo) => lo.is_none_or(|lo| t >= lo) && self.upper.is_none_or(|hi| t < hi),
        }
    }
}

/// Columns of a page, as `LogRow` reads them.
const COLUMNS: &str = "id, user_id, action::text, resource_type::text, resource_id, details, pg_catalog.abbrev(ip_address), user_agent, status::text, severity::text, created_at";

/// A table's partitions as the walk reads them, and what
/// `user_walk_check.sql` compares to see that they still are.
#[derive(Clone, Debug)]
struct Listing {
    table_oid: u32,
    members: String,
    /// Partitions left out as empty.
    empty: Vec<u32>,
    parts: Vec<Part>,
}

/// Listings by table (quoted name), reused while their check holds.
static LISTINGS: LazyLock<Mutex<HashMap<String, Arc<Listing>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn cached(key: &str) -> Option<Arc<Listing>> {
    LISTINGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
}

fn remember(key: String, listing: Option<Arc<Listing>>) {
    let mut map = LISTINGS.lock().unwrap_or_else(|e| e.into_inner());
    match listing {
        Some(l) => map.insert(key, l),
        None => map.remove(&key),
    };
}

/// Range partitions newest first, then the others; partitions certainly
/// empty (no heap page) are left out. One statement, one round trip.
async fn partitions(client: &Client, table: &QualifiedName) -> Result<Listing, DbError> {
    let rows = client
        .query_typed(
            include_str!("user_walk_partitions.sql"),
            &[(&table.to_string(), Type::TEXT)],
        )
        .await
        .map_err(DbError::query("listing partitions"))?;
    let mut listing = Listing {
        table_oid: 0,
        members: String::new(),
        empty: Vec::new(),
        parts: Vec::new(),
    };
    for r in rows {
        listing.table_oid = r.get(0);
        listing.members = r.get(1);
        let Some(oid) = r.get::<_, Option<u32>>(6) else {
            continue;
        };
        if r.get::<_, bool>(5) {
            listing.empty.push(oid);
            continue;
        }
        let bound: String = r.get(4);
        listing.parts.push(Part {
            name: QualifiedName::new(r.get(2), r.get(3))?,
            lower: lower_bound(&bound),
            upper: upper_bound(&bound),
        });
    }
    // Some(Some(newest)) ... Some(None) (MINVALUE), then None.
    listing.parts.sort_by_key(|p| std::cmp::Reverse(p.lower));
    Ok(listing)
}

/// Whether `listing` still describes `table`'s partitions.
async fn holds(client: &Client, table: &QualifiedName, listing: &Listing) -> Result<bool, DbError> {
    let row = client
        .query_typed(
            include_str!("user_walk_check.sql"),
            &[
                (&table.to_string(), Type::TEXT),
                (&listing.table_oid, Type::OID),
                (&listing.empty, Type::OID_ARRAY),
            ],
        )
        .await
        .map_err(DbError::query("checking the partition list"))?;
    Ok(row.first().is_some_and(|r| {
        r.get::<_, bool>(0) && r.get::<_, String>(1) == listing.members && r.get::<_, i64>(2) == 0
    }))
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

/// The upper bound of a range partition's bound text; `None` for MAXVALUE
/// and anything this code cannot read (then only the lower bound is
/// checked against the rows read).
fn upper_bound(expr: &str) -> Option<DateTime<Utc>> {
    let rest = expr.split(") TO (").nth(1)?;
    let text = rest.strip_prefix('\'')?.split('\'').next()?;
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Up to `limit` of `user_id`'s rows in `rel`, newest first, after `after`.
async fn page_of(
    client: &Client,
    rel: &QualifiedName,
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<LogRow>, DbError> {
    group_of(client, std::slice::from_ref(rel), user_id, after, limit).await
}

/// Up to `limit` of `user_id`'s rows in the partitions `rels` together,
/// newest first, after `after`: one statement (each partition's own top
/// rows, then the top of those), so a user with a few rows a month costs one
/// round trip for several months instead of one each.
///
/// `query_typed`: an unnamed statement parsed, bound and run in one round
/// trip (a prepared statement would cost a second one), and planned with
/// the values, so each branch is a custom plan of one partition.
async fn group_of(
    client: &Client,
    rels: &[QualifiedName],
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<LogRow>, DbError> {
    let filter = match after {
        None => "user_id = $1",
        Some(_) => "user_id = $1 AND (created_at, id) < ($3, $4)",
    };
    let branch = |rel: &QualifiedName| {
        format!(
            "SELECT {COLUMNS} FROM {rel} WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $2"
        )
    };
    let sql = match rels {
        [one] => format!("/* strata */ {}", branch(one)),
        _ => format!(
            "/* strata */ SELECT * FROM ({}) u ORDER BY created_at DESC, id DESC LIMIT $2",
            rels.iter()
                .map(|r| format!("({})", branch(r)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        ),
    };
    let rows = match after {
        None => {
            client
                .query_typed(&sql, &[(&user_id, Type::INT8), (&limit, Type::INT8)])
                .await
        }
        Some(c) => {
            client
                .query_typed(
                    &sql,
                    &[
                        (&user_id, Type::INT8),
                        (&limit, Type::INT8),
                        (&c.created_at, Type::TIMESTAMPTZ),
                        (&c.id, Type::INT8),
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

/// Most partitions read in one statement: each costs planning (its
/// indexes opened, paths costed), a round trip saved is worth a few.
const MAX_GROUP: usize = 8;

/// The first partition the walk reads: where a cached listing's first page
/// is fetched together with its check.
fn first_read(parts: &[Part], after: Option<Cursor>) -> Option<usize> {
    parts.iter().position(|p| match (p.lower, after) {
        (Some(Some(lo)), Some(c)) => lo <= c.created_at,
        _ => true,
    })
}

/// One page of `user_id`'s rows, newest first (`created_at DESC, id DESC`),
/// after `after`; the cursor of the next page when there is one.
///
/// With a cached listing, its check and the first partition's page go out
/// together (pipelined: one round trip, like the plain table's one
/// statement), and the walk goes on only if the listing still holds. A
/// changed list, a partition name gone, or rows outside the bounds listed
/// for a name read the list afresh and walk again.
pub async fn newest_for_user(
    client: &Client,
    table: &QualifiedName,
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<LogRow>, Option<Cursor>), DbError> {
    let key = table.to_string();
    let want = limit + 1;
    if let Some(listing) = cached(&key) {
        let (ok, first) = match first_read(&listing.parts, after) {
            Some(i) => {
                let (ok, page) = tokio::join!(
                    holds(client, table, &listing),
                    page_of(client, &listing.parts[i].name, user_id, after, want)
                );
                (ok?, Some((i, page)))
            }
            None => (holds(client, table, &listing).await?, None),
        };
        if ok {
            let first = match first {
                None => Some(None),
                Some((i, Ok(rows))) => Some(Some((i, rows))),
                Some((_, Err(e))) if !gone(&e) => return Err(e),
                Some((_, Err(_))) => None,
            };
            if let Some(first) = first {
                match walk(client, &listing.parts, user_id, after, limit, first, true).await {
                    Err(e) if gone(&e) => {}
                    Ok(None) => {}
                    Ok(Some(page)) => return Ok(page),
                    Err(e) => return Err(e),
                }
            }
        }
        remember(key.clone(), None);
    }
    let listing = Arc::new(partitions(client, table).await?);
    remember(key, Some(listing.clone()));
    let page = walk(client, &listing.parts, user_id, after, limit, None, false).await?;
    Ok(page.expect("an unguarded walk always answers"))
}

/// A relation that no longer exists (dropped or renamed since the listing).
fn gone(e: &DbError) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
}

type Page = (Vec<LogRow>, Option<Cursor>);

/// The walk over `parts`, with the page of partition `first.0` already read
/// when `first` is given. After the first range partition, the next ones
/// are read in groups sized from the rows found so far (to fill the page in
/// one more statement). `guard`: `None` when a read returns a row outside
/// the bounds listed for what it read (a name now belongs to another
/// partition).
async fn walk(
    client: &Client,
    parts: &[Part],
    user_id: i64,
    after: Option<Cursor>,
    limit: i64,
    mut first: Option<(usize, Vec<LogRow>)>,
    guard: bool,
) -> Result<Option<Page>, DbError> {
    let want = limit + 1;
    // Wholly newer than the cursor: nothing after it there.
    let skipped =
        |p: &Part| matches!((p.lower, after), (Some(Some(lo)), Some(c)) if lo > c.created_at);
    let mut rows: Vec<LogRow> = Vec::new();
    let mut ranged = 0i64;
    let mut group = 1usize;
    let mut i = 0;
    while i < parts.len() {
        let part = &parts[i];
        if part.lower.is_some() && (ranged >= want || skipped(part)) {
            // Past a full page every row of this and older partitions is
            // older than the ones held.
            i += 1;
            continue;
        }
        // This partition, and for a range one the next range partitions
        // up to the group size.
        let mut members = vec![i];
        let mut j = i + 1;
        if part.lower.is_some() {
            while j < parts.len() && members.len() < group && parts[j].lower.is_some() {
                if !skipped(&parts[j]) {
                    members.push(j);
                }
                j += 1;
            }
        }
        let ask = if part.lower.is_some() {
            want - ranged
        } else {
            want
        };
        // The prefetched page was read with `want`, which is also what the
        // walk's first read asks for.
        let held = match &first {
            Some((at, _)) if members == [*at] => first.take().map(|(_, r)| r),
            _ => None,
        };
        let got = match held {
            Some(r) => r,
            None => {
                let rels: Vec<QualifiedName> =
                    members.iter().map(|&m| parts[m].name.clone()).collect();
                group_of(client, &rels, user_id, after, ask).await?
            }
        };
        if guard
            && !got
                .iter()
                .all(|r| members.iter().any(|&m| parts[m].holds(r.created_at)))
        {
            return Ok(None);
        }
        if part.lower.is_some() {
            ranged += got.len() as i64;
            let per = got.len() as f64 / members.len() as f64;
            let need = (want - ranged).max(0) as f64;
            group = if per > 0.0 {
                ((need / per).ceil() as usize + 1).clamp(1, MAX_GROUP)
            } else {
                (members.len() * 2).min(MAX_GROUP)
            };
        }
        rows.extend(got);
        i = j;
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
    Ok(Some((rows, next)))
}

#[cfg(test)]
mod tests {
    use super::{lower_bound, upper_bound};

    #[test]
    fn upper_bounds_parse_and_maxvalue_is_open() {
        assert_eq!(
            upper_bound("FOR VALUES FROM ('2025-11-01 00:00:00+00') TO ('2025-12-01 01:00:00+01')")
                .unwrap()
                .to_rfc3339(),
            "2025-12-01T00:00:00+00:00"
        );
        assert_eq!(
            upper_bound("FOR VALUES FROM ('2025-11-01 00:00:00+00') TO (MAXVALUE)"),
            None
        );
        assert_eq!(upper_bound("DEFAULT"), None);
    }

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
