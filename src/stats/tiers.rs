//! Which tier each period of a table is in beyond hot: sealed
//! (`strata.seals`) or archived (`strata.archives`). Shared by
//! `stats partitions` and the dashboard's timeline.

use chrono::{DateTime, Utc};

/// A period beyond the hot tier: sealed (strata.seals) or archived
/// (strata.archives, `archived` with the partition still there or
/// `dropped` once only the store holds it). Restored periods are hot again.
#[derive(Clone, Debug, PartialEq)]
pub struct TierMark {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub period: String,
    pub tier: &'static str,
    /// The partition is gone: only the archive holds the rows.
    pub dropped: bool,
    pub rows: i64,
}

/// Every sealed and archived period of `spec`, in one query. A database
/// migrated before seals or archives existed has no such periods.
pub async fn tiers(
    client: &tokio_postgres::Client,
    spec: &crate::config::TableSpec,
) -> Result<Vec<TierMark>, crate::db::DbError> {
    let rows = client
        .query(
            "SELECT period_start, period_end, to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'sealed', false, row_count
               FROM strata.seals WHERE table_schema = $1 AND table_name = $2
             UNION ALL
             SELECT period_start, period_end, period, 'archived', state = 'dropped', row_count
               FROM strata.archives
              WHERE table_schema = $1 AND table_name = $2 AND state IN ('archived', 'dropped')",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str()],
        )
        .await
        .map_err(crate::db::DbError::query("reading the sealed and archived periods"))?;
    Ok(rows
        .iter()
        .map(|r| TierMark {
            start: r.get(0),
            end: r.get(1),
            period: r.get(2),
            tier: if r.get::<_, &str>(3) == "sealed" {
                "sealed"
            } else {
                "archived"
            },
            dropped: r.get(4),
            rows: r.get(5),
        })
        .collect())
}

/// The tier of the period starting at `start`: archived over sealed over
/// hot (a month is usually sealed first, archived later).
pub fn tier_of(marks: &[TierMark], start: Option<DateTime<Utc>>) -> &'static str {
    let mut tier = "hot";
    for m in marks.iter().filter(|m| Some(m.start) == start) {
        if m.tier == "archived" {
            return "archived";
        }
        tier = m.tier;
    }
    tier
}
