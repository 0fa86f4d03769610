//! Checks of the server as a whole: wraparound, cache, replication slots.

use serde_json::json;
use tokio_postgres::Client;

use super::{plural, CheckResult, HealthError, HealthThresholds, Status, MAX_LISTED};
use crate::db::{literal, DbError};
use crate::format;

/// PostgreSQL stops assigning transaction IDs 3 million short of 2^31.
const XID_LIMIT: i64 = 2_147_483_647;

pub async fn xid_wraparound(
    client: &Client,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(include_str!("database_xid.sql"), &[])
        .await
        .map_err(DbError::query("reading database transaction ID ages"))?;
    let databases: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let (oldest, age) = databases.first().cloned().unwrap_or_default();
    let status = Status::at_least(age, t.xid_age_warning, t.xid_age_critical);
    let message = format!(
        "oldest database {oldest}: transaction ID age {} ({:.1}% of the wraparound limit)",
        format::count(age.max(0) as u64),
        age as f64 * 100.0 / XID_LIMIT as f64
    );
    let evidence = json!({
        "databases": databases.iter().map(|(d, a)| json!({"database": d, "xid_age": a})).collect::<Vec<_>>(),
        "warning": t.xid_age_warning,
        "critical": t.xid_age_critical,
        "limit": XID_LIMIT,
    });
    let mut c = CheckResult::new("xid_wraparound", status, message, evidence);
    if status != Status::Ok {
        c = c.fix(format!(
            "VACUUM (FREEZE, VERBOSE) the oldest tables of database {oldest} (vacuumdb --freeze --jobs=4 {oldest}); \
             check that autovacuum is not blocked by idle transactions or inactive replication slots"
        ));
    }
    Ok(c)
}

pub async fn cache_hit_ratio(
    client: &Client,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let r = client
        .query_one(include_str!("cache_hit.sql"), &[])
        .await
        .map_err(DbError::query("reading cache statistics"))?;
    let (hit, read): (i64, i64) = (r.get(0), r.get(1));
    let total = hit + read;
    let ratio = (total > 0).then(|| hit as f64 / total as f64);
    let evidence = json!({
        "heap_blks_hit": hit,
        "heap_blks_read": read,
        "ratio": ratio,
        "warning_below": t.cache_hit_warning,
        "min_blocks": t.cache_hit_min_blocks,
    });
    // A fresh or restarted server has read everything once: its ratio says
    // nothing about whether the working set fits in memory.
    let Some(ratio) = ratio.filter(|_| total >= t.cache_hit_min_blocks) else {
        let message = format!(
            "not enough data: {} heap blocks accessed, {} needed to judge",
            format::count(total.max(0) as u64),
            format::count(t.cache_hit_min_blocks.max(0) as u64)
        );
        return Ok(CheckResult::new(
            "cache_hit_ratio",
            Status::Ok,
            message,
            evidence,
        ));
    };
    let status = if ratio < t.cache_hit_warning {
        Status::Warning
    } else {
        Status::Ok
    };
    let message = format!(
        "heap cache hit ratio {:.2}% over {} blocks",
        ratio * 100.0,
        format::count(total as u64)
    );
    let mut c = CheckResult::new("cache_hit_ratio", status, message, evidence);
    if status != Status::Ok {
        c = c.fix("raise shared_buffers (or memory) so the working set fits; `strata partitions list` shows which partitions are large");
    }
    Ok(c)
}

pub async fn replication_slots(client: &Client) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(include_str!("replication_slots.sql"), &[])
        .await
        .map_err(DbError::query("reading replication slots"))?;
    let slots: Vec<(String, Option<i64>)> = rows
        .iter()
        .map(|r| (r.get("slot_name"), r.get("retained_bytes")))
        .collect();
    let evidence = json!({
        "inactive": rows.iter().take(MAX_LISTED).map(|r| json!({
            "slot_name": r.get::<_, String>("slot_name"),
            "slot_type": r.get::<_, Option<String>>("slot_type"),
            "database": r.get::<_, Option<String>>("database"),
            "retained_wal_bytes": r.get::<_, Option<i64>>("retained_bytes"),
        })).collect::<Vec<_>>(),
    });
    if slots.is_empty() {
        return Ok(CheckResult::new(
            "replication_slots",
            Status::Ok,
            "no inactive replication slot",
            evidence,
        ));
    }
    // An inactive slot keeps every WAL segment since its restart_lsn: the
    // disk fills, and a logical slot also holds back vacuum's catalog horizon.
    let named: Vec<String> = slots
        .iter()
        .map(|(name, bytes)| match bytes {
            Some(b) => format!("{name} ({} of WAL retained)", format::bytes(*b as u64)),
            None => name.clone(),
        })
        .collect();
    let message = format!(
        "{} inactive: {}",
        plural(slots.len(), "replication slot", "replication slots"),
        named.join(", ")
    );
    Ok(
        CheckResult::new("replication_slots", Status::Warning, message, evidence).fix(format!(
            "reconnect the consumer, or if it is gone: SELECT pg_drop_replication_slot({})",
            literal(&slots[0].0)
        )),
    )
}
