//! The Merkle tree of RFC 6962 (section 2.1): leaves are `SHA-256(0x00 ||
//! row encoding)`, an inner node is `SHA-256(0x01 || left || right)`, and a
//! tree of n > 1 leaves splits at k, the largest power of two below n. An odd
//! count therefore never duplicates a node: the right subtree is just
//! smaller. Inclusion proofs and their check follow RFC 9162 2.1.3.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Rows per stored chunk. A power of two, so each full chunk is exactly a
/// subtree of the whole tree and the root can be computed from chunk roots.
pub const CHUNK_ROWS: usize = 1024;

pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

fn split(n: usize) -> usize {
    debug_assert!(n > 1);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (already leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The whole tree's root from the roots of consecutive [`CHUNK_ROWS`]
/// chunks (the last may be short): the split points of the leaf tree fall
/// on chunk boundaries, so the same rule applies to chunk roots.
pub fn root_of_chunks(chunks: &[Hash]) -> Hash {
    // The same recursion as `root`, over subtree roots instead of leaves.
    root(chunks)
}

/// The inclusion path of leaf `index` (RFC 6962 PATH): sibling subtree
/// roots from the leaf up.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    path_into(leaves, index, &mut path);
    path
}

fn path_into(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_into(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        path_into(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// RFC 9162 2.1.3.2: does `path` prove `leaf` at `index` in a tree of
/// `size` leaves with root `root`?
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    expected: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *expected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| super::super::encoding::leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_by_hand() {
        let l = leaves(3);
        assert_eq!(root(&[]), empty_root());
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node(&l[0], &l[1]));
        // Three leaves: ((0,1),2), the odd leaf is not duplicated.
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn fixed_vector() {
        // Repeated in docs/seal-format.md.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Five leaves, SHA-256(0x00 || u64 BE i) for i in 0..5; the root
        // computed with Python's hashlib.
        let l = leaves(5);
        assert_eq!(
            hex::encode(root(&l)),
            "cb03def0c5b63bdecbed6cd863c8e61edab23e1ac7ab70281c699183cac2bef6"
        );
    }

    #[test]
    fn chunk_roots_give_the_same_root() {
        for n in [1, 1023, 1024, 1025, 2048, 3000, 5121] {
            let l = leaves(n);
            let chunks: Vec<Hash> = l.chunks(CHUNK_ROWS).map(root).collect();
            assert_eq!(root_of_chunks(&chunks), root(&l), "n = {n}");
        }
    }

    #[test]
    fn every_inclusion_proof_checks_and_a_wrong_one_does_not() {
        for n in 1..=33 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_path(&l, i);
                assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, &p, &r),
                    "n={n} i={i}"
                );
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(!verify_inclusion(&l[i], other as u64, n as u64, &p, &r));
                    assert!(!verify_inclusion(&l[other], i as u64, n as u64, &p, &r));
                }
            }
        }
    }
}
