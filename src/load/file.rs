//! Reading NDJSON and CSV input one validated row at a time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::Utc;

use super::row::{self, AuditRow, InputRow, Invalid, Origin, Rules};
use super::LoadError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Ndjson,
    Csv,
}

impl FileFormat {
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" | "json" => Some(FileFormat::Ndjson),
            "csv" => Some(FileFormat::Csv),
            _ => None,
        }
    }
}

enum Inner {
    Ndjson(std::io::Lines<BufReader<File>>),
    Csv(csv::StringRecordsIntoIter<File>, csv::StringRecord),
}

pub struct RowSource {
    inner: Inner,
    path: String,
    line: u64,
    bytes: u64,
}

impl RowSource {
    pub fn open(path: &Path, format: Option<FileFormat>) -> Result<RowSource, LoadError> {
        let shown = path.display().to_string();
        let read_err = |source| LoadError::Read {
            path: shown.clone(),
            source,
        };
        let format = format
            .or_else(|| FileFormat::from_path(path))
            .ok_or_else(|| {
                LoadError::Usage(format!(
                    "cannot tell the format of {shown} from its name; pass --format ndjson|csv"
                ))
            })?;
        let file = File::open(path).map_err(read_err)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let inner = match format {
            FileFormat::Ndjson => Inner::Ndjson(BufReader::new(file).lines()),
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(file);
                let headers = reader
                    .headers()
                    .map_err(|e| LoadError::BadLine {
                        path: shown.clone(),
                        line: 1,
                        field: None,
                        message: e.to_string(),
                        raw: String::new(),
                    })?
                    .clone();
                Inner::Csv(reader.into_records(), headers)
            }
        };
        Ok(RowSource {
            inner,
            path: shown,
            line: if format == FileFormat::Csv { 1 } else { 0 },
            bytes,
        })
    }

    /// A rough row count for the progress bar (file size / typical row size).
    pub fn estimated_lines(&self) -> u64 {
        (self.bytes / 400).max(1)
    }

    fn bad(&self, invalid: Invalid, raw: String) -> LoadError {
        LoadError::BadLine {
            path: self.path.clone(),
            line: self.line,
            field: invalid.field,
            message: invalid.reason,
            raw,
        }
    }

    /// The next row, `None` at the end. Blank NDJSON lines are skipped.
    pub fn next_row(&mut self) -> Option<Result<AuditRow, LoadError>> {
        loop {
            self.line += 1;
            let (parsed, raw): (Result<InputRow, Invalid>, String) = match &mut self.inner {
                Inner::Ndjson(lines) => match lines.next()? {
                    // The line was consumed; only its bytes were wrong.
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => (
                        Err(Invalid {
                            field: None,
                            reason: "the line is not valid UTF-8".to_string(),
                        }),
                        String::new(),
                    ),
                    Err(e) => {
                        return Some(Err(LoadError::Read {
                            path: self.path.clone(),
                            source: e,
                        }))
                    }
                    Ok(l) if l.trim().is_empty() => continue,
                    Ok(l) => (row::parse(&l), l),
                },
                Inner::Csv(records, headers) => {
                    let next = records.next()?;
                    // A quoted field may span lines: the record's own start
                    // line is what the user needs to find it.
                    let at = match &next {
                        Ok(rec) => rec.position().map(|p| p.line()),
                        Err(e) => e.position().map(|p| p.line()),
                    };
                    if let Some(line) = at {
                        self.line = line;
                    }
                    match next {
                        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                            return Some(Err(LoadError::Read {
                                path: self.path.clone(),
                                source: std::io::Error::other(e.to_string()),
                            }))
                        }
                        Err(e) => (
                            Err(Invalid {
                                field: None,
                                reason: e.to_string(),
                            }),
                            String::new(),
                        ),
                        Ok(rec) => (csv_row(headers, &rec), csv_text(&rec)),
                    }
                }
            };
            let rules = Rules {
                origin: Origin::File,
                now: Utc::now(),
            };
            return Some(
                parsed
                    .and_then(|r| r.validate(&rules))
                    .map_err(|e| self.bad(e, raw)),
            );
        }
    }
}

/// CSV cells are text: empty means NULL, numbers and JSON are parsed.
fn csv_row(headers: &csv::StringRecord, rec: &csv::StringRecord) -> Result<InputRow, Invalid> {
    let bad = |field: Option<&str>, reason: String| Invalid {
        field: field.map(str::to_string),
        reason,
    };
    let mut obj = serde_json::Map::new();
    for (h, v) in headers.iter().zip(rec.iter()) {
        let value = if v.is_empty() {
            serde_json::Value::Null
        } else if matches!(h, "user_id" | "resource_id") {
            match v.trim().parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => return Err(bad(Some(h), format!("{h} {v:?} is not a whole number"))),
            }
        } else {
            serde_json::Value::String(v.to_string())
        };
        obj.insert(h.to_string(), value);
    }
    if rec.len() != headers.len() {
        return Err(bad(
            None,
            format!("{} fields, but the header has {}", rec.len(), headers.len()),
        ));
    }
    // Through text, because `details` is kept as raw JSON text.
    let text = serde_json::Value::Object(obj).to_string();
    row::parse(&text)
}

/// A CSV record as one line of CSV again, for the rejects file.
fn csv_text(rec: &csv::StringRecord) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = w.write_record(rec);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}
