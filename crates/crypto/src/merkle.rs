//! RFC 6962 Merkle tree hashing for the audit log: leaf and interior hashes with the `0x00` and
//! `0x01` prefixes, the tree head (MTH), audit paths (PATH) and consistency proofs (PROOF),
//! computed from a source of leaf hashes that may hold cached roots of complete subtrees, and
//! their verification through the `ct-merkle` crate (an independent implementation of the same
//! RFC, so the proofs this module makes are checked by code it does not share).

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// A SHA-256 node of the tree.
pub type Hash = [u8; 32];

/// The leaf hash of `data`: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new_with_prefix([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The interior hash of two children: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new_with_prefix([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where a tree's hashes come from.
pub trait LeafSource {
    /// The leaf hash at `index`, if the source holds it.
    fn leaf(&self, index: u64) -> Option<Hash>;
    /// The root of leaves `lo..hi` if the source has it cached (a complete subtree).
    fn subtree(&self, _lo: u64, _hi: u64) -> Option<Hash> {
        None
    }
}

impl LeafSource for [Hash] {
    fn leaf(&self, index: u64) -> Option<Hash> {
        self.get(usize::try_from(index).ok()?).copied()
    }
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH over leaves `lo..hi` (`lo < hi`), or `None` if the source lacks a leaf it needs.
pub fn root<S: LeafSource + ?Sized>(source: &S, lo: u64, hi: u64) -> Option<Hash> {
    if hi - lo == 1 {
        return source.leaf(lo);
    }
    if let Some(cached) = source.subtree(lo, hi) {
        return Some(cached);
    }
    let k = split(hi - lo);
    Some(node_hash(
        &root(source, lo, lo + k)?,
        &root(source, lo + k, hi)?,
    ))
}

/// The tree head of the first `size` leaves (the empty root for none).
pub fn tree_root<S: LeafSource + ?Sized>(source: &S, size: u64) -> Option<Hash> {
    if size == 0 {
        Some(empty_root())
    } else {
        root(source, 0, size)
    }
}

/// The audit path of leaf `index` in the tree of the first `size` leaves, from the leaf's
/// sibling up (RFC 6962 §2.1.1). `None` if `index >= size` or a leaf is missing.
pub fn inclusion_path<S: LeafSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Option<Vec<Hash>> {
    if index >= size {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0, size);
    // Walk down, collecting siblings top-down; the path lists them bottom-up.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(root(source, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(root(source, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Some(path)
}

/// The consistency proof between the trees of the first `old` and first `new` leaves
/// (RFC 6962 §2.1.2). Empty when `old` is 0 or equals `new`; `None` if `old > new` or a leaf
/// is missing.
pub fn consistency_proof<S: LeafSource + ?Sized>(
    source: &S,
    old: u64,
    new: u64,
) -> Option<Vec<Hash>> {
    if old > new {
        return None;
    }
    if old == 0 || old == new {
        return Some(Vec::new());
    }
    let mut proof = Vec::new();
    subproof(source, old, 0, new, true, &mut proof)?;
    Some(proof)
}

/// SUBPROOF(m, D[lo..hi], b), appending in the RFC's order.
fn subproof<S: LeafSource + ?Sized>(
    source: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Option<()> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(root(source, lo, hi)?);
        }
        return Some(());
    }
    let k = split(n);
    if m <= k {
        subproof(source, m, lo, lo + k, whole, out)?;
        out.push(root(source, lo + k, hi)?);
    } else {
        subproof(source, m - k, lo + k, hi, false, out)?;
        out.push(root(source, lo, lo + k)?);
    }
    Some(())
}

/// Whether `path` proves that the leaf with data `leaf_data` is leaf `index` of the tree of
/// `size` leaves whose head is `root`.
pub fn verify_inclusion(
    leaf_data: &[u8],
    index: u64,
    size: u64,
    root: &Hash,
    path: &[Hash],
) -> bool {
    if index >= size {
        return false;
    }
    let head = RootHash::<Sha256>::new((*root).into(), size);
    let proof =
        InclusionProof::<Sha256>::from_digests(path.iter().map(|h| GenericArray::from_slice(h)));
    head.verify_inclusion(&leaf_data, index, &proof).is_ok()
}

/// Whether `proof` proves that the tree of `old_size` leaves with head `old_root` is a
/// prefix of the tree of `new_size` leaves with head `new_root`.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let old = RootHash::<Sha256>::new((*old_root).into(), old_size);
    let new = RootHash::<Sha256>::new((*new_root).into(), new_size);
    let proof =
        ConsistencyProof::<Sha256>::from_digests(proof.iter().map(|h| GenericArray::from_slice(h)));
    new.verify_consistency(&old, &proof).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    fn data(i: u64) -> [u8; 32] {
        crate::sha256(&i.to_be_bytes())
    }

    /// Leaves cached in complete aligned blocks of four, as the engine caches them.
    struct Blocked(Vec<Hash>);
    impl LeafSource for Blocked {
        fn leaf(&self, index: u64) -> Option<Hash> {
            self.0.leaf(index)
        }
        fn subtree(&self, lo: u64, hi: u64) -> Option<Hash> {
            (lo.is_multiple_of(4) && hi - lo == 4 && hi <= self.0.len() as u64)
                .then(|| root(&self.0[..], lo, hi))
                .flatten()
        }
    }

    #[test]
    fn proofs_match_an_independent_implementation_for_every_small_tree() {
        let mut reference = MemoryBackedTree::<Sha256, [u8; 32]>::new();
        let mut leaves: Vec<Hash> = Vec::new();
        for size in 1..=40u64 {
            reference.push(data(size - 1));
            leaves.push(leaf_hash(&data(size - 1)));
            let blocked = Blocked(leaves.clone());
            let head: Hash = reference.root().as_bytes().as_slice().try_into().unwrap();
            assert_eq!(tree_root(&leaves[..], size), Some(head), "root of {size}");
            assert_eq!(
                tree_root(&blocked, size),
                Some(head),
                "cached root of {size}"
            );
            for index in 0..size {
                let path = inclusion_path(&blocked, index, size).unwrap();
                let theirs = reference.prove_inclusion(index as usize);
                assert_eq!(path.concat(), theirs.as_bytes(), "path {index} of {size}");
                assert!(verify_inclusion(&data(index), index, size, &head, &path));
                assert!(!verify_inclusion(
                    &data(index + 1),
                    index,
                    size,
                    &head,
                    &path
                ));
                let other = leaf_hash(b"another head");
                assert!(!verify_inclusion(&data(index), index, size, &other, &path));
            }
            for old in 1..=size {
                let proof = consistency_proof(&blocked, old, size).unwrap();
                let theirs = reference.prove_consistency((size - old) as usize);
                assert_eq!(proof.concat(), theirs.as_bytes(), "proof {old}..{size}");
                let old_root = tree_root(&leaves[..], old).unwrap();
                assert!(verify_consistency(old, &old_root, size, &head, &proof));
                let wrong = leaf_hash(b"not the old tree");
                assert!(!verify_consistency(old, &wrong, size, &head, &proof));
            }
        }
    }

    #[test]
    fn edge_cases_refuse_rather_than_panic() {
        let leaves: Vec<Hash> = (0..5).map(|i| leaf_hash(&data(i))).collect();
        assert_eq!(inclusion_path(&leaves[..], 5, 5), None);
        assert_eq!(inclusion_path(&leaves[..], 0, 9), None, "missing leaves");
        assert_eq!(consistency_proof(&leaves[..], 6, 5), None);
        assert_eq!(consistency_proof(&leaves[..], 0, 5), Some(vec![]));
        assert_eq!(tree_root(&leaves[..], 0), Some(empty_root()));
        let head = tree_root(&leaves[..], 5).unwrap();
        assert!(verify_consistency(0, &empty_root(), 5, &head, &[]));
        assert!(!verify_consistency(6, &head, 5, &head, &[]));
        assert!(!verify_inclusion(&data(0), 7, 5, &head, &[]));
        assert!(!verify_inclusion(&data(0), 0, 5, &head, &[head; 70]));
    }
}
