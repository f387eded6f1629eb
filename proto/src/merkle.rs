//! RFC 6962 / RFC 9162 Merkle trees over a node's ingest log: hashing, roots, inclusion and
//! consistency proofs, and their verification.
//!
//! Leaves are entry hashes; the leaf hash is `SHA-256(0x00 || entry hash)`, an interior node
//! `SHA-256(0x01 || left || right)`, and the empty tree's root `SHA-256("")`. Proof generation
//! reads subtree hashes through [`Subtrees`], so a store can serve them from disk; verification
//! follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 and is checked against the transparency-dev test
//! vectors.

use sha2::{Digest, Sha256};

use crate::keys::Hash;

/// Why a proof or request is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index outside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// Sizes that cannot be compared (first larger than second, or zero).
    #[error("invalid sizes for a consistency proof: {first} and {second}")]
    BadSizes {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// The proof has the wrong number of hashes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root differs.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// The hash of a leaf.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    Hash::from_bytes(h.finalize().into())
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    Hash::from_bytes(h.finalize().into())
}

/// The root of the empty tree.
pub fn empty_root() -> Hash {
    Hash::from_bytes(Sha256::digest(b"").into())
}

/// A tree built leaf by leaf, holding only the roots of its perfect subtrees (at most 64
/// hashes): the state of an auditor that checks a log's signed roots as it reads the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash), heights strictly decreasing from the left.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash (see [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.nodes.last() {
            if h != node.0 {
                break;
            }
            self.nodes.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the tree so far: the perfect subtrees folded from the right (RFC 6962's split
    /// rule gives exactly this).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some((_, last)) => it.fold(*last, |acc, (_, h)| node_hash(h, &acc)),
        }
    }
}

/// Source of subtree hashes for proof generation.
pub trait Subtrees {
    /// The leaf hash at `index`.
    fn leaf(&self, index: u64) -> Hash;

    /// The hash of the leaves `[start, end)` (non-empty). The default recomputes it; a store
    /// overrides it to serve stored perfect subtrees.
    fn range(&self, start: u64, end: u64) -> Hash {
        range_root(self, start, end)
    }
}

/// The root of `[start, end)` computed from [`Subtrees::leaf`] by the RFC 6962 split rule.
pub fn range_root<S: Subtrees + ?Sized>(s: &S, start: u64, end: u64) -> Hash {
    let n = end - start;
    if n == 1 {
        return s.leaf(start);
    }
    let k = split(n);
    node_hash(&s.range(start, start + k), &s.range(start + k, end))
}

/// Leaf hashes held in memory.
impl Subtrees for [Hash] {
    fn leaf(&self, index: u64) -> Hash {
        self[index as usize]
    }
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root of a tree of `size` leaves.
pub fn root<S: Subtrees + ?Sized>(s: &S, size: u64) -> Hash {
    if size == 0 {
        empty_root()
    } else {
        s.range(0, size)
    }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 `PATH`).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`].
pub fn inclusion_proof<S: Subtrees + ?Sized>(
    s: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(s, index, 0, size, &mut proof);
    Ok(proof)
}

fn path<S: Subtrees + ?Sized>(s: &S, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(s, m, start, start + k, out);
        out.push(s.range(start + k, end));
    } else {
        path(s, m - k, start + k, end, out);
        out.push(s.range(start, start + k));
    }
}

/// The consistency proof between the trees of `first` and `second` leaves (RFC 6962 `PROOF`).
///
/// # Errors
/// [`MerkleError::BadSizes`] unless `0 < first <= second`.
pub fn consistency_proof<S: Subtrees + ?Sized>(
    s: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, MerkleError> {
    if first == 0 || first > second {
        return Err(MerkleError::BadSizes { first, second });
    }
    let mut proof = Vec::new();
    if first < second {
        subproof(s, first, 0, second, true, &mut proof);
    }
    Ok(proof)
}

fn subproof<S: Subtrees + ?Sized>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(s.range(start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(s, m, start, start + k, whole, out);
        out.push(s.range(start + k, end));
    } else {
        subproof(s, m - k, start + k, end, false, out);
        out.push(s.range(start, start + k));
    }
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with `root`.
///
/// # Errors
/// [`MerkleError`].
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(MerkleError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::WrongLength);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `first` leaves with `first_root` is a prefix of the tree of `second`
/// leaves with `second_root`.
///
/// # Errors
/// [`MerkleError`]; `first == 0` is refused (nothing to prove).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if first == 0 || first > second {
        return Err(MerkleError::BadSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(MerkleError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    let (fr, sr) = reconstruct(first, second, first_root, proof)?;
    if fr != *first_root || sr != *second_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// The roots of the first `first` leaves and of all `second` leaves that a consistency proof
/// from `first` to `second` leaves computes on its own, when `first` is not a power of two (the
/// proof then holds every hash the first root is computed from; for a power of two it omits that
/// root, which the verifier supplies). When the second root is a signed one, the proof shows what
/// that tree holds at `first`, whatever root was signed for `first`: [`verify_consistency`] from
/// the first root returned to it passes.
pub fn implied_roots(first: u64, second: u64, proof: &[Hash]) -> Option<(Hash, Hash)> {
    if first == 0 || first >= second || first.is_power_of_two() {
        return None;
    }
    reconstruct(first, second, &Hash::ZERO, proof).ok()
}

/// RFC 9162 section 2.1.4.2: the first and second roots a consistency proof computes
/// (`first_root` is used only when `first` is a power of two; `0 < first < second`).
fn reconstruct(
    first: u64,
    second: u64,
    first_root: &Hash,
    proof: &[Hash],
) -> Result<(Hash, Hash), MerkleError> {
    if proof.is_empty() {
        return Err(MerkleError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return Err(MerkleError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::WrongLength);
    }
    Ok((fr, sr))
}
