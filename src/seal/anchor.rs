//! The external anchor (`seal_anchor_to = "file:///path"`): one line per
//! seal, `<table> <period start> <seal hash hex>`, appended and synced. The
//! database cannot rewrite it; put it on storage it cannot reach
//! (another host's mount, a WORM volume).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::SealError;

fn bad(path: &Path, why: impl Into<String>) -> SealError {
    SealError::Anchor {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

pub fn line(table: &str, period_start: &str, seal_hash: &[u8]) -> String {
    format!("{table} {period_start} {}\n", hex::encode(seal_hash))
}

/// Appends one seal's line; fsyncs before returning.
pub fn append(path: &Path, text: &str) -> Result<(), SealError> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| bad(path, e.to_string()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| bad(path, e.to_string()))?;
    f.sync_all().map_err(|e| bad(path, e.to_string()))
}

/// Every `(table, period start)` with the hashes anchored for it, in order.
pub fn read(path: &Path) -> Result<HashMap<(String, String), Vec<String>>, SealError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(bad(path, e.to_string())),
    };
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        if let [table, period, hash] = parts[..] {
            out.entry((table.into(), period.into()))
                .or_default()
                .push(hash.to_string());
        }
    }
    Ok(out)
}
