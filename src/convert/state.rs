//! The conversion's durable state: its phase and its row in `strata.conversions`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::ConvertError;
use crate::config::TableSpec;
use crate::db::{DbError, Ident, QualifiedName};
use crate::index::fit_name;

/// Phases, in order; stored as their text in `strata.conversions.phase`.
/// `RolledBack` returns to the state before `CutOver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The row exists; the new table and trigger are being made. A row left
    /// in this phase is an interrupted start.
    Starting,
    Started,
    Backfilling,
    Backfilled,
    Indexed,
    Verified,
    CutOver,
    RolledBack,
    Cleaned,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Starting,
        Phase::Started,
        Phase::Backfilling,
        Phase::Backfilled,
        Phase::Indexed,
        Phase::Verified,
        Phase::CutOver,
        Phase::RolledBack,
        Phase::Cleaned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Started => "started",
            Phase::Backfilling => "backfilling",
            Phase::Backfilled => "backfilled",
            Phase::Indexed => "indexed",
            Phase::Verified => "verified",
            Phase::CutOver => "cut_over",
            Phase::RolledBack => "rolled_back",
            Phase::Cleaned => "cleaned",
        }
    }

    /// Whether the backfill is behind this phase.
    pub fn backfill_done(self) -> bool {
        self > Phase::Backfilling
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = ConvertError;
    fn from_str(s: &str) -> Result<Phase, ConvertError> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ConvertError::UnknownPhase(s.to_string()))
    }
}

/// A conversion's row in `strata.conversions`.
#[derive(Clone, Debug, Serialize)]
pub struct Conversion {
    pub id: i64,
    pub table: String,
    pub phase: Phase,
    pub watermark: Option<i64>,
    pub backfill_until: Option<i64>,
    pub rows_copied: i64,
    pub rows_total_estimate: Option<i64>,
    pub new_table: Option<String>,
    pub old_table: Option<String>,
    pub batch_rows: i64,
    pub bucket_rows: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub cutover_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub timings: serde_json::Value,
}

const COLUMNS: &str = "id, schema_name || '.' || table_name, phase, watermark, backfill_until, rows_copied,
    rows_total_estimate, new_table, old_table, batch_rows, bucket_rows, started_at, updated_at, verified_at,
    cutover_at, finished_at, last_error, timings";

fn conversion(r: &tokio_postgres::Row) -> Result<Conversion, ConvertError> {
    Ok(Conversion {
        id: r.get(0),
        table: r.get(1),
        phase: r.get::<_, String>(2).parse()?,
        watermark: r.get(3),
        backfill_until: r.get(4),
        rows_copied: r.get(5),
        rows_total_estimate: r.get(6),
        new_table: r.get(7),
        old_table: r.get(8),
        batch_rows: r.get(9),
        bucket_rows: r.get(10),
        started_at: r.get(11),
        updated_at: r.get(12),
        verified_at: r.get(13),
        cutover_at: r.get(14),
        finished_at: r.get(15),
        last_error: r.get(16),
        timings: r.get(17),
    })
}

/// A read of strata's own tables: a database never migrated gets told so.
pub(super) fn metadata_error(
    context: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> ConvertError {
    move |e| {
        if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
            ConvertError::NotMigrated
        } else {
            DbError::query(context)(e).into()
        }
    }
}

async fn one(
    client: &Client,
    table: &QualifiedName,
    filter: &str,
) -> Result<Option<Conversion>, ConvertError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM strata.conversions WHERE schema_name = $1 AND table_name = $2 {filter}"
    );
    let row = client
        .query_opt(&sql, &[&table.schema.as_str(), &table.name.as_str()])
        .await
        .map_err(metadata_error("reading the conversion"))?;
    row.as_ref().map(conversion).transpose()
}

/// The active (unfinished) conversion of `table`, if any.
pub async fn active(
    client: &Client,
    table: &QualifiedName,
) -> Result<Option<Conversion>, ConvertError> {
    one(client, table, "AND finished_at IS NULL").await
}

/// The newest conversion of `table`, finished or not.
pub async fn latest(
    client: &Client,
    table: &QualifiedName,
) -> Result<Option<Conversion>, ConvertError> {
    one(client, table, "ORDER BY id DESC LIMIT 1").await
}

pub(super) async fn set_phase(client: &Client, id: i64, phase: Phase) -> Result<(), ConvertError> {
    client
        .execute(
            "UPDATE strata.conversions SET phase = $2, updated_at = now(), last_error = NULL,
                    timings = timings || jsonb_build_object($2::text, now())
              WHERE id = $1",
            &[&id, &phase.as_str()],
        )
        .await
        .map_err(DbError::query("recording the phase"))?;
    Ok(())
}

pub(super) async fn require(client: &Client, spec: &TableSpec) -> Result<Conversion, ConvertError> {
    active(client, &spec.name)
        .await?
        .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))
}

pub(super) fn wrong(c: &Conversion, what: &'static str, needs: &'static str) -> ConvertError {
    ConvertError::WrongPhase {
        table: c.table.clone(),
        phase: c.phase,
        what,
        needs,
    }
}

/// Rows per id bucket: the unit the backfill locks while it copies.
pub const BUCKET_ROWS: i64 = 50_000;

/// The first key of the conversion's two-key advisory locks (the bucket is
/// the second): distinct per conversion, so two tables never collide.
pub(super) fn lock_key(conversion_id: i64) -> i32 {
    (0x5354_0000_i64 + conversion_id % 0xFFFF) as i32
}

/// Names of everything a conversion of `spec` creates.
pub struct Names {
    pub table: QualifiedName,
    pub new: QualifiedName,
    pub old: QualifiedName,
    pub forward: QualifiedName,
    pub reverse: QualifiedName,
    pub id: Ident,
    pub time: Ident,
}

impl Names {
    pub fn new(spec: &TableSpec, conversion_id: i64) -> Result<Names, ConvertError> {
        let base = spec.name.name.as_str();
        Ok(Names {
            table: spec.name.clone(),
            new: spec
                .name
                .sibling(&fit_name(&format!("{base}_strata_new")))?,
            old: spec.name.sibling(&fit_name(&format!("{base}_old")))?,
            forward: QualifiedName::new("strata", &format!("convert_forward_{conversion_id}"))?,
            reverse: QualifiedName::new("strata", &format!("convert_reverse_{conversion_id}"))?,
            id: Ident::new("id")?,
            time: spec.time_column.clone(),
        })
    }

    /// The spec of the new table while it has its temporary name: partitions
    /// are named for the final table, no retention runs during the
    /// conversion, and its indexes get names that cannot collide with the
    /// old table's (they are renamed at cutover).
    pub(super) fn new_spec(&self, spec: &TableSpec, start: chrono::NaiveDate) -> TableSpec {
        let mut s = spec.clone();
        s.name = self.new.clone();
        s.name_template = spec
            .name_template
            .replace("{table}", spec.name.name.as_str());
        s.retention = None;
        s.start = start;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_round_trips_through_its_stored_text() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!("starting".parse::<Phase>().unwrap(), Phase::Starting);
        assert!(matches!(
            "bogus".parse::<Phase>(),
            Err(ConvertError::UnknownPhase(_))
        ));
    }
}
