//! Per-chunk summaries of a sealed period (docs/seals.md): for each
//! [`CHUNK_ROWS`] rows in seal order, the subtree root, the ids (zigzag
//! delta varints: consecutive ids cost a byte) and the first
//! [`LEAF_PREFIX`] bytes of each leaf hash. The full roots prove; the
//! prefixes only name rows once a root has shown a difference.

use super::merkle::{self, Hash, CHUNK_ROWS};

pub const LEAF_PREFIX: usize = 4;

/// One chunk, as stored in `strata.seal_chunks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub root: Hash,
    pub ids: Vec<i64>,
    pub leaves: Vec<[u8; LEAF_PREFIX]>,
}

/// Collects leaves into chunks as rows stream by.
#[derive(Default)]
pub struct Builder {
    pub chunks: Vec<Chunk>,
    leaves: Vec<Hash>,
    ids: Vec<i64>,
}

impl Builder {
    pub fn push(&mut self, id: i64, leaf: Hash) {
        self.leaves.push(leaf);
        self.ids.push(id);
        if self.leaves.len() == CHUNK_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.leaves.is_empty() {
            return;
        }
        self.chunks.push(Chunk {
            root: merkle::root(&self.leaves),
            ids: std::mem::take(&mut self.ids),
            leaves: self.leaves.iter().map(prefix).collect(),
        });
        self.leaves.clear();
    }

    /// The chunks and the whole tree's root.
    pub fn finish(mut self) -> (Vec<Chunk>, Hash) {
        self.flush();
        let roots: Vec<Hash> = self.chunks.iter().map(|c| c.root).collect();
        let root = merkle::root_of_chunks(&roots);
        (self.chunks, root)
    }
}

pub fn prefix(h: &Hash) -> [u8; LEAF_PREFIX] {
    h[..LEAF_PREFIX].try_into().expect("32 > 4")
}

pub fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() + 8);
    let mut prev = 0i64;
    for &id in ids {
        let d = id.wrapping_sub(prev);
        let mut z = ((d << 1) ^ (d >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        prev = id;
    }
    out
}

pub fn decode_ids(b: &[u8]) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    let (mut prev, mut z, mut shift) = (0i64, 0u64, 0u32);
    for &byte in b {
        if shift > 63 {
            return None;
        }
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            prev = prev.wrapping_add(d);
            out.push(prev);
            z = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(out)
}

pub fn encode_leaves(leaves: &[[u8; LEAF_PREFIX]]) -> Vec<u8> {
    leaves.concat()
}

pub fn decode_leaves(b: &[u8]) -> Vec<[u8; LEAF_PREFIX]> {
    b.chunks_exact(LEAF_PREFIX)
        .map(|c| c.try_into().expect("exact"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_consecutive_ids_cost_a_byte() {
        let ids = vec![1, 2, 3, 1000, 7, i64::MAX, i64::MIN, 0, -5];
        assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        let run: Vec<i64> = (5_000_000..5_001_024).collect();
        assert!(encode_ids(&run).len() <= 1024 + 4);
        assert!(decode_ids(&[0x80]).is_none(), "a cut varint is refused");
    }
}
