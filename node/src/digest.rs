//! The head digest: 65,536 bucket summaries of every subject's head, kept current by the ledger's
//! writer, which peers compare to find the subjects where two ledgers differ (see `proto::sync`).
//! Beside it, one sparse digest per controller over the subjects whose chain names it, for brand
//! nodes that replicate only their own controllers' chains.

use std::collections::{BTreeMap, HashMap};

use proto::keys::PublicKey;
use proto::sync::{bucket_of, head_item, Bucket, Head, FANOUT};

/// Number of leaf buckets (two bytes of subject key).
pub const LEAVES: usize = FANOUT * FANOUT;

/// The digest of every subject head.
#[derive(Clone, Debug)]
pub struct HeadDigest {
    leaves: Vec<Bucket>,
}

impl Default for HeadDigest {
    fn default() -> Self {
        HeadDigest {
            leaves: vec![Bucket::default(); LEAVES],
        }
    }
}

impl HeadDigest {
    /// Replaces a subject's head: `old` (if it had one) leaves the digest, `new` enters.
    pub fn replace(&mut self, old: Option<&Head>, new: &Head) {
        let b = &mut self.leaves[bucket_of(&new.subject)];
        if let Some(o) = old {
            b.toggle(&head_item(o), false);
        }
        b.toggle(&head_item(new), true);
    }

    /// The 256 child summaries of a prefix of 0 or 1 bytes (longer prefixes give the leaves of
    /// their first byte).
    pub fn children(&self, prefix: &[u8]) -> Vec<Bucket> {
        match prefix.first() {
            Some(&b) => {
                let start = usize::from(b) * FANOUT;
                self.leaves[start..start + FANOUT].to_vec()
            }
            None => self
                .leaves
                .chunks(FANOUT)
                .map(|c| {
                    let mut sum = Bucket::default();
                    for b in c {
                        sum.merge(b);
                    }
                    sum
                })
                .collect(),
        }
    }

    /// Number of subjects.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.leaves.iter().map(|b| u64::from(b.count)).sum()
    }
}

/// A digest over few subjects: only the non-empty leaves are kept.
#[derive(Clone, Debug, Default)]
pub struct SparseDigest {
    leaves: BTreeMap<u16, Bucket>,
}

impl SparseDigest {
    fn toggle(&mut self, h: &Head, add: bool) {
        let k = bucket_of(&h.subject) as u16;
        let b = self.leaves.entry(k).or_default();
        b.toggle(&head_item(h), add);
        if b.count == 0 {
            self.leaves.remove(&k);
        }
    }

    /// As [`HeadDigest::children`].
    pub fn children(&self, prefix: &[u8]) -> Vec<Bucket> {
        let mut out = vec![Bucket::default(); FANOUT];
        match prefix.first() {
            Some(&b) => {
                let lo = u16::from(b) << 8;
                for (k, v) in self.leaves.range(lo..=lo | 0xff) {
                    out[usize::from(*k & 0xff)] = *v;
                }
            }
            None => {
                for (k, v) in &self.leaves {
                    out[usize::from(*k >> 8)].merge(v);
                }
            }
        }
        out
    }
}

/// The full digest and the per-controller ones.
#[derive(Clone, Debug, Default)]
pub struct Digests {
    /// Every subject.
    pub all: HeadDigest,
    /// Per controller: the subjects whose chain names it.
    pub by_controller: HashMap<PublicKey, SparseDigest>,
}

impl Digests {
    /// Replaces a subject's head; `old` and `new` come with the controllers their chain names.
    pub fn replace(&mut self, old: Option<(&Head, &[PublicKey])>, new: (&Head, &[PublicKey])) {
        self.all.replace(old.map(|o| o.0), new.0);
        if let Some((h, cs)) = old {
            for c in cs {
                if let Some(d) = self.by_controller.get_mut(c) {
                    d.toggle(h, false);
                }
            }
        }
        for c in new.1 {
            self.by_controller
                .entry(*c)
                .or_default()
                .toggle(new.0, true);
        }
    }

    /// The children of a prefix in one controller's digest (all empty for an unknown one).
    pub fn children_for(&self, controller: &PublicKey, prefix: &[u8]) -> Vec<Bucket> {
        match self.by_controller.get(controller) {
            Some(d) => d.children(prefix),
            None => vec![Bucket::default(); FANOUT],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::keys::Hash;

    #[test]
    fn children_sum_leaves_and_replacement_is_exact() {
        let mut a = HeadDigest::default();
        let mut b = HeadDigest::default();
        let s = PublicKey::from_bytes([7; 32]);
        let h1 = Head {
            subject: s,
            seq: 1,
            hash: Hash::from_bytes([1; 32]),
            forked: false,
        };
        let h2 = Head {
            seq: 2,
            hash: Hash::from_bytes([2; 32]),
            ..h1
        };
        a.replace(None, &h1);
        a.replace(Some(&h1), &h2);
        b.replace(None, &h2);
        assert_eq!(a.children(&[]), b.children(&[]));
        assert_eq!(a.children(&[7]), b.children(&[7]));
        assert_eq!(a.count(), 1);
        assert_eq!(a.children(&[])[7].count, 1);
        let c = HeadDigest::default();
        assert_ne!(a.children(&[]), c.children(&[]));
    }

    #[test]
    fn controller_digests_match_the_full_one_over_their_subjects() {
        let x = PublicKey::from_bytes([1; 32]);
        let y = PublicKey::from_bytes([2; 32]);
        let mut d = Digests::default();
        let mut only_x = HeadDigest::default();
        for i in 0..50u8 {
            let h = Head {
                subject: PublicKey::from_bytes([i; 32]),
                seq: 1,
                hash: Hash::from_bytes([i; 32]),
                forked: false,
            };
            let names: &[PublicKey] = if i % 2 == 0 { &[x] } else { &[y] };
            d.replace(None, (&h, names));
            if i % 2 == 0 {
                only_x.replace(None, &h);
            }
            // A second entry moves the head; the digests follow.
            let h2 = Head { seq: 2, ..h };
            d.replace(Some((&h, names)), (&h2, names));
            if i % 2 == 0 {
                only_x.replace(Some(&h), &h2);
            }
        }
        assert_eq!(d.children_for(&x, &[]), only_x.children(&[]));
        assert_eq!(d.children_for(&x, &[4]), only_x.children(&[4]));
        assert_ne!(d.children_for(&y, &[]), only_x.children(&[]));
        assert_eq!(d.all.count(), 50);
    }
}
