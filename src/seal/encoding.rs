//! The canonical encoding of one `audit_logs` row (docs/seal-format.md): the
//! bytes a leaf hash is taken over. Short enough to reimplement from the doc.

use sha2::{Digest, Sha256};

/// One field's type tag. NULL has its own tag and no length, so NULL and an
/// empty string never encode alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    Null = 0,
    Int8 = 1,
    Text = 2,
    Jsonb = 3,
    Inet = 4,
    Timestamp = 5,
    Bytes = 6,
}

/// The columns of `audit_logs` in encoding order with their tags.
/// `search_vector` is left out: it is generated from the others.
pub const COLUMNS: &[(&str, Tag)] = &[
    ("id", Tag::Int8),
    ("user_id", Tag::Int8),
    ("action", Tag::Text),
    ("resource_type", Tag::Text),
    ("resource_id", Tag::Int8),
    ("details", Tag::Jsonb),
    ("ip_address", Tag::Inet),
    ("user_agent", Tag::Text),
    ("status", Tag::Text),
    ("severity", Tag::Text),
    ("created_at", Tag::Timestamp),
];

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Appends one field: tag, then (unless NULL) a 4-byte big-endian length
/// and the value's bytes.
pub fn push_field(out: &mut Vec<u8>, tag: Tag, value: Option<&[u8]>) {
    match value {
        None => out.push(Tag::Null as u8),
        Some(v) => {
            out.push(tag as u8);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

pub fn push_i64(out: &mut Vec<u8>, tag: Tag, value: Option<i64>) {
    push_field(
        out,
        tag,
        value.map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
    );
}

pub fn push_text(out: &mut Vec<u8>, tag: Tag, value: Option<&str>) {
    push_field(out, tag, value.map(str::as_bytes));
}

/// RFC 6962 leaf hash: SHA-256(0x00 || encoding).
pub fn leaf_hash(encoding: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(encoding);
    h.finalize().into()
}

/// A row in the shape the proof and the offline checker use: every column
/// as its canonical text (ints in decimal, timestamps in Unix microseconds).
pub type RowFields = Vec<(&'static str, Option<String>)>;

/// Encodes fields given as canonical text (see [`RowFields`]).
pub fn encode_fields(fields: &RowFields) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256);
    for ((name, tag), (_, value)) in COLUMNS.iter().zip(fields) {
        match (tag, value) {
            (_, None) => out.push(Tag::Null as u8),
            (Tag::Int8 | Tag::Timestamp, Some(v)) => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("{name}: {v:?} is not an int64"))?;
                push_i64(&mut out, *tag, Some(n));
            }
            (_, Some(v)) => push_text(&mut out, *tag, Some(v)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(details: Option<&str>, agent: Option<&str>) -> RowFields {
        let v = |s: &str| Some(s.to_string());
        vec![
            ("id", v("1")),
            ("user_id", v("42")),
            ("action", v("login")),
            ("resource_type", None),
            ("resource_id", None),
            ("details", details.map(str::to_string)),
            ("ip_address", v("10.0.0.1/32")),
            ("user_agent", agent.map(str::to_string)),
            ("status", v("ok")),
            ("severity", v("info")),
            ("created_at", v("1735689600000000")),
        ]
    }

    #[test]
    fn fixed_vector() {
        // The vector docs/seal-format.md repeats.
        let enc = encode_fields(&fields(Some("{\"a\": 1}"), Some(""))).unwrap();
        assert_eq!(
            hex::encode(&enc),
            "01000000080000000000000001\
             0100000008000000000000002a\
             02000000056c6f67696e\
             00\
             00\
             03000000087b2261223a20317d\
             040000000b31302e302e302e312f3332\
             0200000000\
             02000000026f6b\
             0200000004696e666f\
             050000000800062a99ba0c6000"
        );
        // Computed with Python's hashlib from the bytes above.
        assert_eq!(
            hex::encode(leaf_hash(&enc)),
            "7aa2b4445fbd783a9331cc8c0e66053b99223eb829eaeb2c4921e96e2ee30f78"
        );
    }

    #[test]
    fn null_is_not_empty() {
        let a = encode_fields(&fields(None, None)).unwrap();
        let b = encode_fields(&fields(None, Some(""))).unwrap();
        assert_ne!(leaf_hash(&a), leaf_hash(&b));
    }

    #[test]
    fn length_prefix_keeps_fields_apart() {
        // "ab" + "c" and "a" + "bc" must not collide.
        let mut x = Vec::new();
        push_text(&mut x, Tag::Text, Some("ab"));
        push_text(&mut x, Tag::Text, Some("c"));
        let mut y = Vec::new();
        push_text(&mut y, Tag::Text, Some("a"));
        push_text(&mut y, Tag::Text, Some("bc"));
        assert_ne!(x, y);
    }
}
