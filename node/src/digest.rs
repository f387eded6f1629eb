//! The head digest: 65,536 bucket summaries of every subject's head, kept current by the ledger's
//! writer, which peers compare to find the subjects where two ledgers differ (see `proto::sync`).

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
    pub fn count(&self) -> u64 {
        self.leaves.iter().map(|b| u64::from(b.count)).sum()
    }
}

/// Whether `subject` starts with `prefix`.
pub fn has_prefix(subject: &PublicKey, prefix: &[u8]) -> bool {
    subject.as_bytes().starts_with(prefix)
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
}
