//! Reading a partition's rows as leaf hashes in seal order, `(created_at,
//! id)`. One `COPY ... (FORMAT binary)` streams them unsorted and the order
//! is made here: the server's sort of a month was 40 % of a verify (1.6 s of
//! 2.4 s at 555,000 rows), sorting 48-byte entries here takes a few ms. The
//! binary forms of int8 and timestamptz are the encoding's big-endian
//! integers already, jsonb's is a version byte and then exactly its text
//! (`jsonb_send`), text arrives as UTF-8: encoding a row is mostly copying.

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::encoding::{push_field, push_i64, Tag, COLUMNS, PG_EPOCH_MICROS};
use super::merkle::Hash;
use super::SealError;
use crate::db::{DbError, QualifiedName};

/// One row as the tree sees it; sorting these gives the seal order. Ties
/// (possible only if the primary key was dropped) fall back to the leaf, so
/// the order never depends on how the server happened to return rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub created_at_us: i64,
    pub id: i64,
    pub leaf: Hash,
}

/// The rows of a partition, sorted, and the encoding of the one row asked
/// for, if it was there.
pub struct Scanned {
    pub entries: Vec<Entry>,
    pub wanted: Option<Vec<u8>>,
}

/// Rows between progress reports.
pub const PROGRESS_EVERY: u64 = 100_000;

fn select_sql(partition: &QualifiedName) -> String {
    // Fixed column list (encoding order); jsonb and inet as their canonical
    // text (docs/seal-format.md says why that text is canonical).
    format!(
        "COPY (SELECT id, user_id, action, resource_type, resource_id, details, \
         ip_address::text, user_agent, status, severity, created_at FROM {partition}) \
         TO STDOUT (FORMAT binary)"
    )
}

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Hashes every row of `partition` and sorts them into seal order;
/// `progress(rows)` every [`PROGRESS_EVERY`] rows. `want` = `(id,
/// created_at µs)` keeps that row's encoding (for a proof). Runs in the
/// caller's transaction if there is one (the sealer holds the partition's
/// lock then).
pub async fn scan(
    client: &Client,
    partition: &QualifiedName,
    want: Option<(i64, i64)>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Scanned, SealError> {
    let context = || format!("reading {}", partition.display_unquoted());
    let stream = client
        .copy_out(select_sql(partition).as_str())
        .await
        .map_err(DbError::query(context()))?;
    futures_util::pin_mut!(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut start = 0usize;
    let mut header_done = false;
    let mut entries = Vec::new();
    let mut wanted = None;
    let mut enc = Vec::with_capacity(512);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(DbError::query(context()))?;
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        buf.extend_from_slice(&chunk);
        if !header_done {
            if buf.len() < HEADER.len() + 8 {
                continue;
            }
            if &buf[..HEADER.len()] != HEADER {
                return Err(SealError::Format("COPY binary header".into()));
            }
            let ext = u32::from_be_bytes(buf[15..19].try_into().unwrap()) as usize;
            start = 19 + ext;
            header_done = true;
        }
        while let Some((used, row)) = parse_tuple(&buf[start..], &mut enc)? {
            let Some((id, created_at_us)) = row else {
                start = buf.len();
                break;
            };
            entries.push(Entry {
                created_at_us,
                id,
                leaf: super::encoding::leaf_hash(&enc),
            });
            if want == Some((id, created_at_us)) {
                wanted = Some(enc.clone());
            }
            if (entries.len() as u64).is_multiple_of(PROGRESS_EVERY) {
                progress(entries.len() as u64);
            }
            start += used;
        }
    }
    entries.sort_unstable();
    Ok(Scanned { entries, wanted })
}

type Parsed = Option<(usize, Option<(i64, i64)>)>;

/// One tuple from the front of `b` into `enc`: `None` if incomplete,
/// `Some((bytes used, None))` at the trailer.
fn parse_tuple(b: &[u8], enc: &mut Vec<u8>) -> Result<Parsed, SealError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fields = i16::from_be_bytes([b[0], b[1]]);
    if fields == -1 {
        return Ok(Some((2, None)));
    }
    if fields as usize != COLUMNS.len() {
        return Err(SealError::Format(format!("{fields} fields in a row")));
    }
    enc.clear();
    let mut at = 2usize;
    let (mut id, mut created) = (0i64, 0i64);
    for (i, (_, tag)) in COLUMNS.iter().enumerate() {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            push_field(enc, *tag, None);
            continue;
        }
        let len = len as usize;
        if b.len() < at + len {
            return Ok(None);
        }
        let v = &b[at..at + len];
        at += len;
        match tag {
            Tag::Timestamp => {
                let pg = i64::from_be_bytes(
                    v.try_into()
                        .map_err(|_| SealError::Format("timestamptz".into()))?,
                );
                created = pg + PG_EPOCH_MICROS;
                push_i64(enc, Tag::Timestamp, Some(created));
            }
            Tag::Jsonb => {
                // jsonb_send: version 1, then jsonb_out's text.
                if v.first() != Some(&1) {
                    return Err(SealError::Format("jsonb binary version".into()));
                }
                push_field(enc, Tag::Jsonb, Some(&v[1..]));
            }
            Tag::Int8 => {
                if i == 0 {
                    id = i64::from_be_bytes(
                        v.try_into().map_err(|_| SealError::Format("int8".into()))?,
                    );
                }
                push_field(enc, Tag::Int8, Some(v));
            }
            _ => push_field(enc, *tag, Some(v)),
        }
    }
    Ok(Some((at, Some((id, created)))))
}

/// A row's fields as canonical text, decoded from its encoding (for proofs).
pub fn fields_of(encoding: &[u8]) -> super::encoding::RowFields {
    let mut out = Vec::with_capacity(COLUMNS.len());
    let mut at = 0usize;
    for (name, _) in COLUMNS {
        let tag = encoding[at];
        at += 1;
        if tag == Tag::Null as u8 {
            out.push((*name, None));
            continue;
        }
        let len = u32::from_be_bytes(encoding[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        let v = &encoding[at..at + len];
        at += len;
        let text = if tag == Tag::Int8 as u8 || tag == Tag::Timestamp as u8 {
            i64::from_be_bytes(v.try_into().unwrap()).to_string()
        } else {
            String::from_utf8_lossy(v).into_owned()
        };
        out.push((*name, Some(text)));
    }
    out
}
