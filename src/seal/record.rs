//! The seal record: the canonical bytes the seal hash (and the signature)
//! are taken over, in the row encoding's field format.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::encoding::{push_field, push_i64, push_text, Tag};
use super::merkle::Hash;

/// The first field of every seal record: names the format.
pub const FORMAT: &str = "strata-seal-v1";

/// What a seal hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealRecord {
    /// `schema.table`, unquoted.
    pub table: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub row_count: i64,
    pub root: Hash,
    /// The previous period's seal hash; `None` for the first seal.
    pub prev_hash: Option<Hash>,
    pub sealed_at: DateTime<Utc>,
}

impl SealRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        push_text(&mut out, Tag::Text, Some(FORMAT));
        push_text(&mut out, Tag::Text, Some(&self.table));
        push_i64(
            &mut out,
            Tag::Timestamp,
            Some(self.period_start.timestamp_micros()),
        );
        push_i64(
            &mut out,
            Tag::Timestamp,
            Some(self.period_end.timestamp_micros()),
        );
        push_i64(&mut out, Tag::Int8, Some(self.row_count));
        push_field(&mut out, Tag::Bytes, Some(&self.root));
        push_field(
            &mut out,
            Tag::Bytes,
            self.prev_hash.as_ref().map(|h| &h[..]),
        );
        push_i64(
            &mut out,
            Tag::Timestamp,
            Some(self.sealed_at.timestamp_micros()),
        );
        out
    }

    /// SHA-256 of [`SealRecord::encode`].
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.encode()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let base = SealRecord {
            table: "public.audit_logs".into(),
            period_start: t("2025-01-01T00:00:00Z"),
            period_end: t("2025-02-01T00:00:00Z"),
            row_count: 3,
            root: [1; 32],
            prev_hash: None,
            sealed_at: t("2025-02-02T00:00:00Z"),
        };
        let variants = [
            SealRecord {
                table: "public.audit_log".into(),
                ..base.clone()
            },
            SealRecord {
                period_end: t("2025-02-01T00:00:01Z"),
                ..base.clone()
            },
            SealRecord {
                row_count: 4,
                ..base.clone()
            },
            SealRecord {
                root: [2; 32],
                ..base.clone()
            },
            SealRecord {
                prev_hash: Some([0; 32]),
                ..base.clone()
            },
            SealRecord {
                sealed_at: t("2025-02-03T00:00:00Z"),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
    }
}
