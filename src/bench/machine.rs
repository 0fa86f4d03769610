//! The machine and server settings printed with the results.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::DbError;

/// Settings that change what the workloads measure.
const SETTINGS: &[&str] = &[
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
    "jit",
    "random_page_cost",
    "synchronous_commit",
    "fsync",
    "synchronize_seqscans",
];

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Of the machine strata runs on (the server's, when it is local).
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    pub load_average_start: Option<f64>,
    pub load_average_end: Option<f64>,
    pub server_version: String,
    pub settings: BTreeMap<String, String>,
}

pub async fn read(client: &Client) -> Result<Machine, DbError> {
    let version: String = client
        .query_one("SELECT pg_catalog.version()", &[])
        .await
        .map_err(DbError::query("reading the server version"))?
        .get(0);
    let names: Vec<&str> = SETTINGS.to_vec();
    let settings = client
        .query(include_str!("settings.sql"), &[&names])
        .await
        .map_err(DbError::query("reading server settings"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: memory_bytes(),
        load_average_start: load_average(),
        load_average_end: None,
        server_version: version,
        settings,
    })
}

/// One-minute load average (Linux), to show how busy the machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
