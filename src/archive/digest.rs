//! Two hashes of a period's rows.
//!
//! The *content hash* is `convert verify`'s formula,
//! `sum(hashtextextended(ROW(cols)::text, 0)::numeric)` with the row count:
//! PostgreSQL computes it over the partition at archive time and over the
//! restored table, so a restore is checked the way a conversion is.
//!
//! The *row digest* is what strata can compute from the Parquet files alone
//! (without PostgreSQL), to check an upload as read back from the store:
//! for each row, every stored column as text (`v` + text, or `n` for NULL;
//! integers in decimal, timestamps as microseconds since the epoch, other
//! types as PostgreSQL's text form), joined by U+001F; the row's value is
//! the first 8 bytes of its SHA-256 as a big-endian signed integer; the
//! digest is their sum (exact). The same is computed in SQL over the
//! partition in the export's snapshot.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use sha2::{Digest, Sha256};

use super::columns::{Column, Kind};

/// `ROW(...)::text` renders timestamps in the session's TimeZone and
/// DateStyle: every hash of archived rows is computed under these.
pub const HASH_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1";

/// The SQL aggregate of the row digest over `FROM` rows, as text.
pub fn sql(cols: &[Column]) -> String {
    let parts: Vec<String> = cols.iter().map(Column::digest_expr).collect();
    format!(
        "coalesce(sum(('x' || encode(substr(sha256(convert_to(concat_ws(chr(31), {}), 'UTF8')), 1, 8), 'hex'))::bit(64)::int8::numeric), 0)::text",
        parts.join(", ")
    )
}

/// `convert verify`'s content hash over `FROM` rows, as text.
pub fn content_sql(cols: &[Column]) -> String {
    format!(
        "coalesce(sum(hashtextextended(ROW({})::text, 0)::numeric), 0)::text",
        super::columns::list(cols)
    )
}

/// The running row digest of Parquet batches.
#[derive(Default)]
pub struct RowDigest {
    pub rows: u64,
    sum: i128,
    buf: String,
}

impl RowDigest {
    pub fn add(&mut self, batch: &RecordBatch, cols: &[Column]) {
        for row in 0..batch.num_rows() {
            self.buf.clear();
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    self.buf.push('\u{1f}');
                }
                let a = batch.column(i);
                if a.is_null(row) {
                    self.buf.push('n');
                    continue;
                }
                self.buf.push('v');
                match c.kind {
                    Kind::Int64 => {
                        let v = a.as_primitive::<Int64Type>().value(row);
                        self.buf.push_str(&v.to_string());
                    }
                    Kind::Timestamp => {
                        let v = a.as_primitive::<TimestampMicrosecondType>().value(row);
                        self.buf.push_str(&v.to_string());
                    }
                    Kind::Json | Kind::Text => self.buf.push_str(a.as_string::<i32>().value(row)),
                }
            }
            let h = Sha256::digest(self.buf.as_bytes());
            let v = i64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
            self.sum += v as i128;
            self.rows += 1;
        }
    }

    pub fn value(&self) -> String {
        self.sum.to_string()
    }
}
