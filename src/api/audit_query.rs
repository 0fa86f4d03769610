//! Reading the audit table: filtered keyset pages and bucketed counts.
//!
//! SQL is assembled from fixed fragments; every value the caller sent is a
//! parameter. Each query is prepared and run once, so PostgreSQL plans it
//! with the actual `from`/`to` values and prunes partitions outside them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use utoipa::ToSchema;

use crate::db::{DbError, QualifiedName};

/// Which rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub action: Option<String>,
    pub severity: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    /// JSON the row's `details` must contain (`@>`).
    pub details: Option<Value>,
    /// Words the row must contain: [`SEARCH_CONDITION`].
    pub q: Option<String>,
}

/// A position in the `(created_at DESC, id DESC)` order: the last row seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    /// Opaque to clients; versioned so its format can change.
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "v1:{}:{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let mut parts = text.strip_prefix("v1:")?.split(':');
        let micros: i64 = parts.next()?.parse().ok()?;
        let id: i64 = parts.next()?.parse().ok()?;
        // The bounds the OpenAPI pattern states: 18 digits at most (16 for a
        // time before 1970), so every time fits PostgreSQL's range.
        if parts.next().is_some()
            || !(-9_999_999_999_999_999..=999_999_999_999_999_999).contains(&micros)
            || !(-999_999_999_999_999_999..=999_999_999_999_999_999).contains(&id)
        {
            return None;
        }
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id,
        })
    }
}

/// One stored audit row.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogRow {
    pub id: i64,
    pub user_id: i64,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub created_at: DateTime<Utc>,
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Leads every statement strata sends on behalf of API readers, so that
/// `stats queries` can tell them from the application's own (see
/// `stats/queries.sql`).
const MARKER: &str = "/* strata */";

/// Full-text search, with the words inside dotted, slashed, dashed and
/// underscored values split out on both sides (`q=login` finds `user.login`;
/// migration 4). The left side is exactly the expression of the index
/// `idx_<table>_search_words_gin`, so the planner can use it per partition.
pub const SEARCH_CONDITION: &str =
    " AND strata.search_words(search_vector) @@ strata.search_query($)";

fn push(
    params: &mut Params,
    sql: &mut String,
    fragment: &str,
    value: impl ToSql + Sync + Send + 'static,
) {
    params.push(Box::new(value));
    // `fragment` is a fixed string with `$` where the placeholder goes.
    sql.push_str(&fragment.replace('$', &format!("${}", params.len())));
}

fn conditions(f: &Filter, params: &mut Params) -> String {
    let mut sql = String::new();
    push(params, &mut sql, " WHERE created_at >= $", f.from);
    push(params, &mut sql, " AND created_at < $", f.to);
    if let Some(v) = f.user_id {
        push(params, &mut sql, " AND user_id = $", v);
    }
    if let Some(v) = &f.action {
        push(params, &mut sql, " AND action = $", v.clone());
    }
    if let Some(v) = &f.severity {
        push(params, &mut sql, " AND severity = $", v.clone());
    }
    if let Some(v) = &f.resource_type {
        push(params, &mut sql, " AND resource_type = $", v.clone());
    }
    if let Some(v) = f.resource_id {
        push(params, &mut sql, " AND resource_id = $", v);
    }
    if let Some(v) = &f.details {
        push(params, &mut sql, " AND details @> $", v.clone());
    }
    if let Some(v) = &f.q {
        push(params, &mut sql, SEARCH_CONDITION, v.clone());
    }
    sql
}

fn list_sql(
    table: &QualifiedName,
    f: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> (String, Params) {
    let mut params = Params::new();
    let mut sql = format!(
        "{MARKER} SELECT id, user_id, action::text, resource_type::text, resource_id, details, pg_catalog.abbrev(ip_address), user_agent,
                status::text, severity::text, created_at FROM {table}"
    );
    sql.push_str(&conditions(f, &mut params));
    if let Some(c) = after {
        push(
            &mut params,
            &mut sql,
            " AND (created_at, id) < ($",
            c.created_at,
        );
        push(&mut params, &mut sql, ", $)", c.id);
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC");
    push(&mut params, &mut sql, " LIMIT $", limit);
    (sql, params)
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Up to `limit` rows after `after`, newest first, and the cursor of the
/// next page when there may be one.
pub async fn list(
    client: &Client,
    table: &QualifiedName,
    f: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<LogRow>, Option<Cursor>), DbError> {
    // One row more than asked says whether another page exists.
    let (sql, params) = list_sql(table, f, after, limit + 1);
    let rows = client
        .query(&sql, &refs(&params))
        .await
        .map_err(DbError::query("reading audit rows"))?;
    let mut out: Vec<LogRow> = rows
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
        .collect();
    let more = out.len() as i64 > limit;
    out.truncate(limit.max(0) as usize);
    let next = more
        .then(|| {
            out.last().map(|r| Cursor {
                created_at: r.created_at,
                id: r.id,
            })
        })
        .flatten();
    Ok((out, next))
}

/// The plan (EXPLAIN, JSON) of the page query the API runs for `f`.
pub async fn plan(client: &Client, table: &QualifiedName, f: &Filter) -> Result<Value, DbError> {
    let (sql, params) = list_sql(table, f, None, 100);
    Ok(client
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &refs(&params))
        .await
        .map_err(DbError::query("explaining the audit query"))?
        .get(0))
}

/// The relations a page query would scan, from its plan: shows that
/// partitions outside `from`..`to` are pruned.
pub async fn scanned_relations(
    client: &Client,
    table: &QualifiedName,
    f: &Filter,
) -> Result<Vec<String>, DbError> {
    Ok(plan_values(&plan(client, table, f).await?, "Relation Name"))
}

/// Every distinct value of `key` in a JSON plan (e.g. `Index Name`), sorted.
pub fn plan_values(plan: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect(plan, key, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get(key) {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect(x, key, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, key, out)),
        _ => {}
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    Month,
}

impl Bucket {
    fn unit(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Month => "month",
        }
    }
}

/// Counts of one time bucket (UTC).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BucketCount {
    pub start: DateTime<Utc>,
    pub total: i64,
    /// Rows per severity; `none` for rows without one.
    pub by_severity: std::collections::BTreeMap<String, i64>,
}

/// Rows per bucket and severity over `from`..`to`.
pub async fn summary(
    client: &Client,
    table: &QualifiedName,
    f: &Filter,
    bucket: Bucket,
) -> Result<Vec<BucketCount>, DbError> {
    let only_time = Filter {
        from: f.from,
        to: f.to,
        ..Filter::default()
    };
    if only_time == *f {
        // Only a time range: a rollup view answers it exactly.
        let (rows, _) =
            crate::rollup::severity_counts(client, table, f.from, f.to, bucket.unit()).await?;
        let mut out: Vec<BucketCount> = Vec::new();
        for r in rows {
            if out.last().is_none_or(|b| b.start != r.start) {
                out.push(BucketCount {
                    start: r.start,
                    total: 0,
                    by_severity: Default::default(),
                });
            }
            let b = out.last_mut().expect("just pushed");
            b.total += r.count;
            b.by_severity.insert(r.severity, r.count);
        }
        return Ok(out);
    }
    let mut params = Params::new();
    let mut sql = String::new();
    push(
        &mut params,
        &mut sql,
        concat!(
            "/* strata */",
            " SELECT pg_catalog.date_trunc($, created_at, 'UTC'),"
        ),
        bucket.unit(),
    );
    sql.push_str(&format!(
        " coalesce(severity::text, 'none'), count(*) FROM {table}"
    ));
    sql.push_str(&conditions(f, &mut params));
    sql.push_str(" GROUP BY 1, 2 ORDER BY 1, 2");
    let rows = client
        .query(&sql, &refs(&params))
        .await
        .map_err(DbError::query("counting audit rows"))?;
    let mut out: Vec<BucketCount> = Vec::new();
    for r in rows {
        let start: DateTime<Utc> = r.get(0);
        let n: i64 = r.get(2);
        if out.last().is_none_or(|b| b.start != start) {
            out.push(BucketCount {
                start,
                total: 0,
                by_severity: Default::default(),
            });
        }
        let b = out.last_mut().expect("just pushed");
        b.total += n;
        b.by_severity.insert(r.get(1), n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_740_000_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "zz",
            &hex::encode("v2:1:2"),
            &hex::encode("v1:1"),
            &hex::encode("v1:1:2:3"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_value_is_a_parameter() {
        let f = Filter {
            action: Some("x'; DROP TABLE audit_logs; --".into()),
            q: Some("a & b".into()),
            details: Some(serde_json::json!({"k": "'"})),
            ..Filter::default()
        };
        let table = QualifiedName::new("public", "audit_logs").unwrap();
        let (sql, params) = list_sql(&table, &f, None, 10);
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(sql.matches('\'').count(), 0, "nothing is quoted: {sql}");
        assert!(
            sql.contains("strata.search_words(search_vector) @@ strata.search_query($5)"),
            "{sql}"
        );
        assert_eq!(params.len(), 6);
        assert!(sql.contains("action = $3"), "{sql}");
        assert!(sql.ends_with("LIMIT $6"), "{sql}");
    }
}
