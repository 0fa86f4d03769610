//! The bulk loader: generated rows or NDJSON/CSV files, through COPY in
//! batches. Each batch is one COPY statement, hence one transaction: a bad
//! input line stops the load before its batch is sent, so nothing of a
//! partial batch is ever committed.

mod file;
mod generate;
mod row;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use serde::Serialize;
use tokio_postgres::Client;

pub use file::{FileFormat, RowSource};
pub use generate::{Generator, SERVER_SIDE_SQL, USERS};
pub use row::{
    parse as parse_row, AuditRow, InputRow, Invalid, Origin, Rules, Window, COPY_COLUMNS,
    MAX_DETAILS_BYTES, RESERVED_NAMESPACES, SERVER_MARKER, SEVERITIES, STATUSES,
};

use crate::db::{DbError, QualifiedName};
use crate::progress::Progress;

pub const DEFAULT_BATCH_ROWS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{path}: line {line}: {message}")]
    BadLine {
        path: String,
        line: u64,
        /// The column at fault, when one is.
        field: Option<String>,
        message: String,
        /// The line as read (a CSV record re-encoded), empty when unreadable.
        raw: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub rows: u64,
    pub skipped: u64,
    /// Where the skipped lines were written (`--rejects`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejects_file: Option<String>,
    pub batches: u64,
    pub elapsed_ms: u128,
    pub rows_per_sec: f64,
}

impl LoadReport {
    fn new(rows: u64, skipped: u64, batches: u64, elapsed: Duration) -> LoadReport {
        LoadReport {
            rows,
            skipped,
            rejects_file: None,
            batches,
            elapsed_ms: elapsed.as_millis(),
            rows_per_sec: rows as f64 / elapsed.as_secs_f64().max(1e-9),
        }
    }
}

/// Sends one batch of COPY text. Autocommit makes it one transaction.
async fn copy_batch(client: &Client, table: &QualifiedName, data: String) -> Result<(), DbError> {
    let sql = format!("COPY {table} ({COPY_COLUMNS}) FROM STDIN");
    let sink = client
        .copy_in(&sql)
        .await
        .map_err(DbError::query("starting COPY"))?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data))
        .await
        .map_err(DbError::query("sending COPY data"))?;
    sink.finish()
        .await
        .map_err(DbError::query("finishing COPY"))?;
    Ok(())
}

/// What to generate: `rows` rows spread over `[from, to)`.
#[derive(Clone, Copy, Debug)]
pub struct Generate {
    pub rows: u64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub seed: u64,
    pub batch_rows: usize,
}

/// Loads generated rows.
pub async fn load_generated(
    client: &Client,
    table: &QualifiedName,
    what: Generate,
    show_progress: bool,
) -> Result<LoadReport, LoadError> {
    let Generate {
        rows,
        from,
        to,
        seed,
        batch_rows,
    } = what;
    if from >= to {
        return Err(LoadError::Usage(format!(
            "--from ({from}) must be before --to ({to})"
        )));
    }
    let started = Instant::now();
    let mut progress = Progress::new("load", rows, show_progress);
    let batch_rows = batch_rows.max(1) as u64;
    // The next batch is generated on a blocking thread while the server
    // ingests the current one: on two cores that overlap is most of the
    // client's overhead.
    let make = move |mut gen: Generator, first: u64| {
        let n = batch_rows.min(rows - first);
        let mut buf = String::with_capacity(n as usize * 420);
        for i in first..first + n {
            gen.row(i).encode(&mut buf);
        }
        (gen, buf, n)
    };
    let mut next = Some(tokio::task::spawn_blocking(move || {
        make(Generator::new(seed, from, to, rows), 0)
    }));
    let mut done = 0u64;
    let mut batches = 0u64;
    while let Some(task) = next.take() {
        let (gen, buf, n) = task.await.expect("row generation panicked");
        if n == 0 {
            break;
        }
        if done + n < rows {
            let first = done + n;
            next = Some(tokio::task::spawn_blocking(move || make(gen, first)));
        }
        copy_batch(client, table, buf).await?;
        done += n;
        batches += 1;
        progress.add(n);
    }
    progress.finish();
    Ok(LoadReport::new(done, 0, batches, started.elapsed()))
}

/// The rejects file of `load --file --rejects FILE`: one JSON object per bad
/// line, `{"line", "field", "reason", "text"}`, so nothing of the input is lost
/// and the lines can be fixed and loaded again.
struct Rejects {
    path: String,
    out: std::io::BufWriter<std::fs::File>,
}

impl Rejects {
    fn create(path: &Path) -> Result<Rejects, LoadError> {
        let shown = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        Ok(Rejects {
            path: shown,
            out: std::io::BufWriter::new(file),
        })
    }

    fn write(
        &mut self,
        line: u64,
        field: Option<&str>,
        reason: &str,
        raw: &str,
    ) -> Result<(), LoadError> {
        use std::io::Write;
        let record = serde_json::json!({
            "line": line,
            "field": field,
            "reason": reason,
            "text": (!raw.is_empty()).then_some(raw),
        });
        writeln!(self.out, "{record}").map_err(|source| LoadError::Read {
            path: self.path.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<String, LoadError> {
        use std::io::Write;
        self.out.flush().map_err(|source| LoadError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }
}

/// What to do with a line that fails validation.
#[derive(Clone, Copy, Debug, Default)]
pub enum BadLines<'a> {
    /// Stop the load (its batch is not sent).
    #[default]
    Stop,
    /// Skip and count it (`--skip-bad`).
    Skip,
    /// Skip it and write it with its line number and reason to this file.
    Reject(&'a Path),
}

/// Loads an NDJSON or CSV file. A malformed line stops the load (its batch is
/// not sent; earlier batches stay committed and are reported) unless `bad`
/// says to skip such lines, or to write them to a rejects file.
pub async fn load_file(
    client: &Client,
    table: &QualifiedName,
    path: &Path,
    format: Option<FileFormat>,
    bad: BadLines<'_>,
    batch_rows: usize,
    show_progress: bool,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let mut source = RowSource::open(path, format)?;
    let mut rejects = match bad {
        BadLines::Reject(p) => Some(Rejects::create(p)?),
        _ => None,
    };
    let total = source.estimated_lines();
    let mut progress = Progress::new("load", total, show_progress);
    let (mut done, mut skipped, mut batches) = (0u64, 0u64, 0u64);
    loop {
        let mut buf = String::new();
        let mut n = 0u64;
        while n < batch_rows.max(1) as u64 {
            match source.next_row() {
                None => break,
                Some(Ok(row)) => {
                    row.encode(&mut buf);
                    n += 1;
                }
                // A read error is the file's, not a line's: never skippable
                // (the reader would fail the same way forever).
                Some(Err(LoadError::BadLine {
                    line,
                    field,
                    message,
                    raw,
                    ..
                })) if rejects.is_some() => {
                    let r = rejects.as_mut().expect("checked");
                    r.write(line, field.as_deref(), &message, &raw)?;
                    skipped += 1;
                }
                Some(Err(e))
                    if matches!(bad, BadLines::Skip) && matches!(e, LoadError::BadLine { .. }) =>
                {
                    tracing::warn!("{e}; skipped");
                    skipped += 1;
                }
                Some(Err(e)) => {
                    progress.finish();
                    return Err(match e {
                        LoadError::BadLine {
                            path,
                            line,
                            field,
                            message,
                            raw,
                        } => LoadError::BadLine {
                            path,
                            line,
                            field,
                            message: format!(
                                "{message} (nothing of this batch was written; {done} rows from earlier batches were \
                                 committed; fix the line, or pass --skip-bad to skip such lines or --rejects FILE to \
                                 set them aside)"
                            ),
                            raw,
                        },
                        other => other,
                    });
                }
            }
        }
        if n == 0 {
            break;
        }
        copy_batch(client, table, buf).await?;
        done += n;
        batches += 1;
        progress.add(n);
    }
    progress.finish();
    let mut report = LoadReport::new(done, skipped, batches, started.elapsed());
    if let Some(r) = rejects {
        let path = r.finish()?;
        if show_progress && skipped > 0 {
            eprintln!(
                "{skipped} bad lines written to {path}, each with its line number and reason"
            );
        }
        report.rejects_file = Some(path);
    }
    Ok(report)
}

/// Runs the server-side generator for `rows` rows: the ceiling a client
/// loader is measured against (same table, same indexes).
pub async fn server_side_insert(
    client: &Client,
    rows: u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let n = rows as i64;
    client
        .execute(SERVER_SIDE_SQL, &[&n, &from, &to])
        .await
        .map_err(DbError::query("running the server-side generator"))?;
    Ok(LoadReport::new(rows, 0, 1, started.elapsed()))
}
