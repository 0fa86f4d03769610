//! `strata archive run`: every period past `archive_after` goes to the
//! store (upload to a temporary key, read back and compare, move to the
//! final key, manifest last); with `retention_mode = "archive"`, periods
//! past retention are dropped once their manifest is re-read and checked.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::manifest::{self, FileEntry, Hash, Manifest};
use super::store::{Store, TMP_PREFIX};
use super::{catalog, drop, export, ArchiveError};
use crate::config::{Config, Interval, RetentionMode, TableSpec};
use crate::db::QualifiedName;
use crate::ops::{Progress, ProgressFn};
use crate::partition::{self, period, Bound, ExistingPartition};

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show what would be archived, dropped and cleaned; change nothing.
    pub dry_run: bool,
}

/// One period archived by this run.
#[derive(Clone, Debug, Serialize)]
pub struct Archived {
    pub period: String,
    pub partition: String,
    pub rows: i64,
    pub store_bytes: u64,
    pub heap_bytes: i64,
    pub total_bytes: i64,
    pub millis: u64,
    pub manifest: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    pub table: String,
    pub store: String,
    /// The server's clock: what is due follows it, never a pretended time.
    pub now: DateTime<Utc>,
    pub dry_run: bool,
    /// Periods past archive_after with no archive yet.
    pub due: Vec<String>,
    pub archived: Vec<Archived>,
    /// Already archived, partition still here.
    pub already_archived: Vec<String>,
    /// Partitions dropped after their manifest was re-read and checked.
    pub dropped: Vec<drop::Dropped>,
    /// Drops the safety rules or a check refused, with the reason.
    pub refused: Vec<String>,
    /// Temporary keys of an interrupted run, removed.
    pub orphans_removed: Vec<String>,
}

/// A partition strata owns, with its range and period label.
#[derive(Clone, Debug)]
pub struct Owned {
    pub name: QualifiedName,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub period: String,
}

pub fn label(interval: Interval, from: DateTime<Utc>) -> String {
    match interval {
        Interval::Month => from.format("%Y-%m").to_string(),
        _ => from.format("%Y-%m-%d").to_string(),
    }
}

/// The store directory name of the table: `audit_logs`, or `schema.table`
/// outside `public`.
pub fn table_dir(spec: &TableSpec) -> String {
    if spec.name.schema.as_str() == "public" {
        spec.name.name.as_str().to_string()
    } else {
        spec.name.display_unquoted()
    }
}

pub fn owned(spec: &TableSpec, parts: &[ExistingPartition]) -> Vec<Owned> {
    let mut out: Vec<Owned> = parts
        .iter()
        .filter(|p| !p.detach_pending)
        .filter_map(|p| {
            let Bound::Range {
                from: Some(from),
                to: Some(to),
            } = p.bound
            else {
                return None;
            };
            let own = period::is_boundary(spec.interval, from)
                && period::next(spec.interval, from) == to
                && p.name.schema == spec.name.schema
                && p.name.name.as_str()
                    == period::render_name(&spec.name_template, spec.name.name.as_str(), from);
            own.then(|| Owned {
                name: p.name.clone(),
                from,
                to,
                period: label(spec.interval, from),
            })
        })
        .collect();
    out.sort_by_key(|o| o.from);
    out
}

pub async fn run(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    o: &RunOptions,
    job: i64,
    progress: ProgressFn<'_>,
) -> Result<Value, ArchiveError> {
    let store = super::store_of(spec)?;
    let after = spec
        .archive_after
        .or(match spec.retention_mode {
            RetentionMode::Archive => spec.retention,
            _ => None,
        })
        .ok_or_else(|| {
            ArchiveError::Usage(format!(
                "{} has no archive_after (and no retention_mode = \"archive\" with a retention)",
                spec.name.display_unquoted()
            ))
        })?;
    let now = crate::ops::real_now(client)
        .await
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    let cutoff = period::retention_cutoff(after, now);
    let current = period::floor(spec.interval, now);
    let snap = partition::snapshot(client, spec)
        .await
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    let parts = owned(spec, &snap.partitions);
    let records = catalog::records(client, spec).await?;
    let dir = table_dir(spec);
    let mut out = RunOutcome {
        table: spec.name.display_unquoted(),
        store: store.url.clone(),
        now,
        dry_run: o.dry_run,
        due: Vec::new(),
        archived: Vec::new(),
        already_archived: Vec::new(),
        dropped: Vec::new(),
        refused: Vec::new(),
        orphans_removed: Vec::new(),
    };
    // Holding the table's lock, no other archiver of this table runs: any
    // temporary key is an interrupted run's.
    let orphans = store.list(&format!("{TMP_PREFIX}/table={dir}")).await?;
    for (key, _) in orphans {
        if !o.dry_run {
            store.delete(&key).await?;
        }
        out.orphans_removed.push(key);
    }
    // A drop committed by a run that died before recording it.
    for r in records.iter().filter(|r| r.state == "archived") {
        if !parts.iter().any(|p| p.from == r.period_start) && !o.dry_run {
            catalog::set_state(client, spec, r.period_start, "dropped").await?;
        }
    }
    for p in parts.iter().filter(|p| p.to <= cutoff && p.to <= current) {
        let recorded = records
            .iter()
            .any(|r| r.period_start == p.from && r.state != "dropped");
        let present = recorded && manifest::load(&store, &dir, &p.period).await?.is_some();
        if present {
            out.already_archived.push(p.period.clone());
            continue;
        }
        out.due.push(p.period.clone());
        if o.dry_run {
            continue;
        }
        let a = archive_one(client, spec, &store, p, job, progress).await?;
        out.archived.push(a);
    }
    if spec.retention_mode == RetentionMode::Archive {
        drop::due(
            client, config, spec, &store, now, &snap, &parts, o.dry_run, job, &mut out, progress,
        )
        .await?;
    }
    Ok(serde_json::to_value(&out).expect("outcome serializes"))
}

/// The test hook `STRATA_ARCHIVE_FAIL_AFTER=<point>`: the process exits at
/// that point, as if killed there (for the crash-safety tests; never set
/// it in production).
pub fn fail_point(point: &str) {
    if std::env::var("STRATA_ARCHIVE_FAIL_AFTER").is_ok_and(|v| v == point) {
        eprintln!("STRATA_ARCHIVE_FAIL_AFTER={point}: exiting");
        std::process::exit(70);
    }
}

/// Archives one partition: export in one snapshot, upload to a temporary
/// key, read back and compare, move to the final key, manifest last.
pub async fn archive_one(
    client: &mut Client,
    spec: &TableSpec,
    store: &Store,
    p: &Owned,
    job: i64,
    progress: ProgressFn<'_>,
) -> Result<Archived, ArchiveError> {
    let started = Instant::now();
    let dir = table_dir(spec);
    let ex = export::export(client, &p.name, &spec.time_column, &p.period, progress).await?;
    let local_sha = manifest::sha256_hex(&ex.file);
    let final_key = manifest::part_key(&dir, &p.period, 0);
    let tmp_key = format!("{TMP_PREFIX}/{}", manifest::part_key(&dir, &p.period, 0))
        .replace("/part-", &format!("/job-{job}-part-"));
    let size = ex.file.len() as u64;
    store.put(&tmp_key, ex.file.clone()).await?;
    fail_point("upload");
    // What the store holds, not what was sent, is compared with the
    // partition as the snapshot saw it.
    let back = store
        .get(&tmp_key)
        .await?
        .ok_or_else(|| ArchiveError::Mismatch(format!("{tmp_key} vanished after upload")))?;
    let rb = manifest::read_back(&tmp_key, back, &ex.columns)?;
    let mut problems = Vec::new();
    if rb.sha256 != local_sha {
        problems.push(format!("SHA-256 {} read back, {local_sha} sent", rb.sha256));
    }
    if rb.rows as i64 != ex.rows {
        problems.push(format!(
            "{} rows read back, {} in the partition",
            rb.rows, ex.rows
        ));
    }
    if rb.row_digest != ex.row_digest {
        problems.push(format!(
            "row digest {} read back, {} in the partition",
            rb.row_digest, ex.row_digest
        ));
    }
    if !problems.is_empty() {
        store.delete(&tmp_key).await?;
        return Err(ArchiveError::Mismatch(format!(
            "{tmp_key}: {}",
            problems.join("; ")
        )));
    }
    store.copy(&tmp_key, &final_key).await?;
    store.delete(&tmp_key).await?;
    fail_point("copy");
    let placed = store
        .get(&final_key)
        .await?
        .ok_or_else(|| ArchiveError::Mismatch(format!("{final_key} missing after the copy")))?;
    if manifest::sha256_hex(&placed) != local_sha {
        return Err(ArchiveError::Mismatch(format!(
            "{final_key}: SHA-256 differs from the verified upload after the copy"
        )));
    }
    let seal = catalog::seal(client, spec, p.from).await?;
    let m = Manifest {
        format: manifest::FORMAT.into(),
        table: spec.name.display_unquoted(),
        period: p.period.clone(),
        period_start: p.from,
        period_end: p.to,
        row_count: ex.rows,
        content_hash: Hash {
            algorithm: manifest::CONTENT_HASH_ALGORITHM.into(),
            value: ex.content_hash.clone(),
        },
        row_digest: Hash {
            algorithm: manifest::ROW_DIGEST_ALGORITHM.into(),
            value: ex.row_digest.clone(),
        },
        files: vec![FileEntry {
            key: final_key,
            bytes: size,
            rows: ex.rows,
            sha256: local_sha,
        }],
        schema: ex.columns.clone(),
        sort: vec![spec.time_column.as_str().to_string(), "id".into()],
        strata_version: env!("CARGO_PKG_VERSION").into(),
        archived_at: crate::ops::real_now(client)
            .await
            .map_err(|e| ArchiveError::Failed(e.to_string()))?,
        seal,
        heap_bytes: ex.heap_bytes,
        total_bytes: ex.total_bytes,
    };
    let mkey = manifest::manifest_key(&dir, &p.period);
    let body = serde_json::to_vec_pretty(&m).expect("manifest serializes");
    store.put(&mkey, body.into()).await?;
    catalog::record(client, spec, &store.url, &m, &mkey, job).await?;
    let millis = started.elapsed().as_millis() as u64;
    progress(&Progress::Line {
        message: format!(
            "archived {} ({}): {} rows, {} in the store ({} heap + indexes), {:.0} rows/s incl. read-back",
            p.period,
            p.name.display_unquoted(),
            ex.rows,
            crate::format::bytes(size),
            crate::format::bytes(ex.total_bytes.max(0) as u64),
            ex.rows as f64 / started.elapsed().as_secs_f64().max(1e-6)
        ),
    });
    Ok(Archived {
        period: p.period.clone(),
        partition: p.name.display_unquoted(),
        rows: ex.rows,
        store_bytes: size,
        heap_bytes: ex.heap_bytes,
        total_bytes: ex.total_bytes,
        millis,
        manifest: mkey,
    })
}
