//! Counts per time bucket and severity, read from a rollup view when one
//! can answer exactly, else from the base table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use crate::config::RollupSpec;
use crate::db::{DbError, QualifiedName};

#[derive(Clone, Debug, Serialize)]
pub struct SeverityCount {
    pub start: DateTime<Utc>,
    /// `none` for rows without a severity.
    pub severity: String,
    pub count: i64,
}

/// Where the numbers came from.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "source", content = "view")]
pub enum Source {
    Rollup(String),
    Base,
}

/// The truncation units a caller may ask for.
pub const UNITS: &[&str] = &["hour", "day", "month"];

/// Rows per `unit` (hour, day, month; UTC) and severity in `[from, to)`.
///
/// A rollup answers when it has severity as a dimension, its bucket is no
/// coarser than `unit`, and `from`/`to` fall on its bucket boundaries (a
/// partial bucket cannot be cut out of partial state); the coarsest such
/// rollup is read. Its view is exact, so either source gives the same
/// numbers, the rollup in far less time.
pub async fn severity_counts(
    client: &Client,
    table: &QualifiedName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unit: &str,
) -> Result<(Vec<SeverityCount>, Source), DbError> {
    let unit = UNITS.iter().find(|u| **u == unit).copied().unwrap_or("day");
    let view = pick(client, table, from, to, unit).await?;
    let sql = match &view {
        // The range function reads only the buckets asked for (the view
        // would aggregate its whole live part first).
        Some(Picked {
            range: Some(f), ..
        }) => format!(
            "/* strata */ SELECT pg_catalog.date_trunc($1, bucket, 'UTC'), coalesce(severity::text, 'none'), sum(count)::bigint
               FROM {f}($2, $3) GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        Some(Picked { view, .. }) => format!(
            "/* strata */ SELECT pg_catalog.date_trunc($1, bucket, 'UTC'), coalesce(severity::text, 'none'), sum(count)::bigint
               FROM {view} WHERE bucket >= $2 AND bucket < $3 GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        None => format!(
            "/* strata */ SELECT pg_catalog.date_trunc($1, created_at, 'UTC'), coalesce(severity::text, 'none'), count(*)
               FROM {table} WHERE created_at >= $2 AND created_at < $3 GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    };
    let source = match &view {
        Some(p) => Source::Rollup(p.view.display_unquoted()),
        None => Source::Base,
    };
    let rows = client
        .query(&sql, &[&unit, &from, &to])
        .await
        .map_err(DbError::query("counting audit rows"))?;
    let out = rows
        .iter()
        .map(|r| SeverityCount {
            start: r.get(0),
            severity: r.get(1),
            count: r.get(2),
        })
        .collect();
    Ok((out, source))
}

/// The rollup that answers, and its range function when it has one (a
/// rollup installed by an older strata has the view only until the next
/// `config apply`).
struct Picked {
    view: QualifiedName,
    range: Option<QualifiedName>,
}

async fn pick(
    client: &Client,
    table: &QualifiedName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unit: &str,
) -> Result<Option<Picked>, DbError> {
    let present: bool = client
        .query_one("SELECT to_regclass('strata.rollups') IS NOT NULL", &[])
        .await
        .map_err(DbError::query("looking for strata.rollups"))?
        .get(0);
    if !present {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT spec, view_name,
                    date_trunc('day', $3::timestamptz, 'UTC') = $3 AND date_trunc('day', $4::timestamptz, 'UTC') = $4,
                    date_trunc('hour', $3::timestamptz, 'UTC') = $3 AND date_trunc('hour', $4::timestamptz, 'UTC') = $4,
                    storage_name,
                    to_regprocedure('strata.' || quote_ident(storage_name || '_range')
                                    || '(timestamptz, timestamptz)') IS NOT NULL
               FROM strata.rollups WHERE schema_name = $1 AND table_name = $2",
            &[&table.schema.as_str(), &table.name.as_str(), &from, &to],
        )
        .await
        .map_err(DbError::query("reading strata.rollups"))?;
    let mut best: Option<(u8, Picked)> = None;
    for r in rows {
        let Ok(spec) = serde_json::from_value::<RollupSpec>(r.get::<_, Value>(0)) else {
            continue;
        };
        if !spec.dimensions.iter().any(|d| d.as_str() == "severity") {
            continue;
        }
        let (day_aligned, hour_aligned): (bool, bool) = (r.get(2), r.get(3));
        let rank = match spec.bucket {
            crate::config::Bucket::Day if unit != "hour" && day_aligned => 2,
            crate::config::Bucket::Hour if hour_aligned => 1,
            _ => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| rank > *b) {
            let range = if r.get::<_, bool>(5) {
                Some(QualifiedName::new(
                    "strata",
                    &format!("{}_range", r.get::<_, String>(4)),
                )?)
            } else {
                None
            };
            let view = table.sibling(&r.get::<_, String>(1))?;
            best = Some((rank, Picked { view, range }));
        }
    }
    Ok(best.map(|(_, v)| v))
}
