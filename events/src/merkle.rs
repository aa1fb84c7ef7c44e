//! The Merkle tree that signed checkpoints commit to (RFC 9162 §2.1: leaves hashed with a
//! `0x00` prefix, inner nodes with `0x01`, the left subtree the largest power of two).
//!
//! The hash chain proves order, but checking one record against it needs every record
//! before it. A checkpoint therefore also signs the Merkle root of the chain hashes it covers,
//! so an evidence bundle can prove one user's records were in the log with a few sibling
//! hashes each, without carrying (and disclosing) everybody else's events.
use crate::chain::Hash;
use sha2::{Digest, Sha256};

/// The hash of a leaf (one event's chain hash).
pub fn leaf(value: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(value);
    h.finalize().into()
}

/// The hash of an inner node.
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

/// Builds the root over a stream of leaves in O(log n) memory, one leaf at a time: the
/// checkpoint writer folds up to a checkpoint's worth of chain hashes without holding them.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Complete subtrees, left to right, sizes strictly decreasing powers of two.
    peaks: Vec<(u32, Hash)>,
    leaves: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, value: &Hash) {
        let mut height = 0u32;
        let mut hash = leaf(value);
        while let Some(&(h, left)) = self.peaks.last() {
            if h != height {
                break;
            }
            self.peaks.pop();
            hash = node(&left, &hash);
            height += 1;
        }
        self.peaks.push((height, hash));
        self.leaves += 1;
    }

    pub fn len(&self) -> u64 {
        self.leaves
    }

    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// The root: the peaks folded right to left, which is exactly RFC 9162's split at the
    /// largest power of two (each peak is the left subtree of everything after it).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, last)) = peaks.next() else { return empty_root() };
        peaks.fold(last, |right, (_, left)| node(left, &right))
    }
}

/// All levels of a tree, for proving many leaves of one checkpoint (evidence export).
#[derive(Debug, Clone)]
pub struct Tree {
    /// `levels[0]` are the leaf hashes; each next level pairs the one below, an odd last node
    /// moving up unchanged (the same tree as RFC 9162's recursive definition).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(values: &[Hash]) -> Tree {
        let mut levels = vec![values.iter().map(leaf).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below.chunks(2).map(|p| if p.len() == 2 { node(&p[0], &p[1]) } else { p[0] }).collect();
            levels.push(up);
        }
        Tree { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(&r) if self.size() > 0 => r,
            _ => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`: sibling hashes from the bottom up.
    pub fn proof(&self, index: u64) -> Option<Vec<Hash>> {
        if index >= self.size() {
            return None;
        }
        let mut i = index as usize;
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// Whether `value` is leaf `index` of the tree of `size` leaves with `root` (RFC 9162
/// §2.1.3.2). Every sibling must be used: a longer or shorter proof fails.
pub fn verify_inclusion(value: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut i, mut last) = (index, size - 1);
    let mut hash = leaf(value);
    let mut siblings = proof.iter();
    while last > 0 {
        if i % 2 == 1 {
            let Some(s) = siblings.next() else { return false };
            hash = node(s, &hash);
        } else if i < last {
            let Some(s) = siblings.next() else { return false };
            hash = node(&hash, s);
        }
        // else: the last node of an odd level moves up unchanged.
        i /= 2;
        last /= 2;
    }
    siblings.next().is_none() && &hash == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: u64) -> Vec<Hash> {
        (0..n).map(|i| Sha256::digest(i.to_be_bytes()).into()).collect()
    }

    /// RFC 9162's recursive definition, to compare the two builders with.
    fn reference(v: &[Hash]) -> Hash {
        match v.len() {
            0 => empty_root(),
            1 => leaf(&v[0]),
            n => {
                // The largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node(&reference(&v[..k]), &reference(&v[k..]))
            }
        }
    }

    #[test]
    fn given_any_size_when_built_either_way_then_the_root_is_rfc_9162s() {
        for n in 0..70 {
            let v = values(n);
            let mut b = RootBuilder::new();
            v.iter().for_each(|x| b.push(x));
            assert_eq!(b.root(), reference(&v), "streaming, {n} leaves");
            assert_eq!(Tree::new(&v).root(), reference(&v), "levels, {n} leaves");
        }
    }

    #[test]
    fn given_every_leaf_when_proved_then_the_proof_verifies_only_for_that_leaf() {
        for n in 1..40 {
            let v = values(n);
            let t = Tree::new(&v);
            for i in 0..n {
                let p = t.proof(i).unwrap();
                assert!(verify_inclusion(&v[i as usize], i, n, &p, &t.root()), "{i} of {n}");
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(!verify_inclusion(&v[i as usize], other, n, &p, &t.root()), "{i} as {other} of {n}");
                    assert!(!verify_inclusion(&v[other as usize], i, n, &p, &t.root()), "leaf {other} at {i}");
                }
            }
        }
    }

    #[test]
    fn given_a_proof_with_a_sibling_added_removed_or_changed_when_verified_then_it_fails() {
        let v = values(13);
        let t = Tree::new(&v);
        let p = t.proof(6).unwrap();
        let root = t.root();
        let mut longer = p.clone();
        longer.push(root);
        assert!(!verify_inclusion(&v[6], 6, 13, &longer, &root));
        assert!(!verify_inclusion(&v[6], 6, 13, &p[..p.len() - 1], &root));
        let mut changed = p.clone();
        changed[1][0] ^= 1;
        assert!(!verify_inclusion(&v[6], 6, 13, &changed, &root));
        // A proof binds the tree's shape only as far as its path goes (6 of 12 has the same
        // path as 6 of 13): the size must come from the signed checkpoint, never the bundle.
        assert!(!verify_inclusion(&v[6], 6, 7, &p, &root), "another tree shape");
        assert!(!verify_inclusion(&v[6], 13, 13, &p, &root), "index past the end");
        assert!(t.proof(13).is_none());
    }
}
