//! A running job's latest progress line in its row, for `GET /admin/jobs/{id}`
//! and the dashboard's Jobs page.
//!
//! The job's own session is busy with the job (and often inside its
//! transaction), so the line is written from a pooled connection by a task
//! of its own: the job only replaces the latest line in a watch channel and
//! never waits for the database; at most one UPDATE a second, and the last
//! line is written when the job ends, before its outcome is.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the line may be written.
const EVERY: Duration = Duration::from_secs(1);

/// The job's side: hand it every line.
pub struct ProgressSink(watch::Sender<Option<String>>);

impl ProgressSink {
    pub fn set(&self, line: String) {
        self.0.send_replace(Some(line));
    }
}

/// Starts the writer of job `id`'s progress. Drop the sink, then await the
/// handle, to have the last line written.
pub fn recorder(pool: Pool, id: i64) -> (ProgressSink, JoinHandle<()>) {
    let (tx, mut rx) = watch::channel(None::<String>);
    let task = tokio::spawn(async move {
        let mut written: Option<String> = None;
        loop {
            let open = rx.changed().await.is_ok();
            let line = rx.borrow_and_update().clone();
            if line.is_some() && line != written {
                if let Err(e) = write(&pool, id, line.as_deref()).await {
                    // Progress is a courtesy: the job goes on without it.
                    tracing::debug!(job = id, error = %e, "could not record the job's progress");
                }
                written = line;
            }
            if !open {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
    (ProgressSink(tx), task)
}

async fn write(pool: &Pool, id: i64, line: Option<&str>) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    // Lines name relations and counts; a line is capped so that a long error
    // cannot bloat the jobs table.
    let line = line.map(|l| l.chars().take(500).collect::<String>());
    client
        .execute(
            "UPDATE strata.jobs SET progress = $2, progress_at = now() WHERE id = $1",
            &[&id, &line],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
