//! Chain rules: one entry, one link, a whole chain, and fork proofs.
//!
//! A chain is the sequence of entries of one subject, seq 1, 2, 3, ... Each entry names its
//! predecessor's hash in `prev` and is signed by the chain's current signing key, except a rotate
//! entry, which is signed by the recovery key committed to earlier (pre-rotation, as in KERI).
//! The functions here take every entry they need as arguments; nothing reads a store.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use crate::entry::{recovery_commitment, Body, Entry, Kind};
use crate::error::{ChainError, DecodeError, EntryError, ForkError};
use crate::keys::{Hash, PublicKey};
use crate::sig::{self, BatchItem};

/// Verifies one entry on its own: form (already enforced by decoding) and signature by the signer
/// it names; at seq 1 the signer must be the subject.
///
/// # Errors
/// [`EntryError`].
pub fn verify_entry(entry: &Entry) -> Result<(), EntryError> {
    entry.content.check_form()?;
    entry.verify_signature()
}

/// Verifies the link from `prev` to `next`: same subject, `next.seq == prev.seq + 1`,
/// `next.prev == hash(prev)`, and `next.issued_at >= prev.issued_at`.
///
/// # Errors
/// [`ChainError::SubjectMismatch`], [`ChainError::SeqNotIncremental`],
/// [`ChainError::PrevMismatch`] or [`ChainError::TimeWentBack`].
pub fn verify_link(prev: &Entry, next: &Entry) -> Result<(), ChainError> {
    link_check(
        prev.subject(),
        prev.seq(),
        prev.hash(),
        prev.content.issued_at,
        next,
    )
}

fn link_check(
    subject: PublicKey,
    seq: u64,
    hash: Hash,
    issued_at: u64,
    next: &Entry,
) -> Result<(), ChainError> {
    let n = &next.content;
    if n.subject != subject {
        return Err(ChainError::SubjectMismatch {
            seq: n.seq,
            expected: subject,
            found: n.subject,
        });
    }
    if n.seq != seq.saturating_add(1) {
        return Err(ChainError::SeqNotIncremental {
            expected: seq.saturating_add(1),
            found: n.seq,
        });
    }
    if n.prev != hash {
        return Err(ChainError::PrevMismatch {
            seq: n.seq,
            expected: hash,
            found: n.prev,
        });
    }
    if n.issued_at < issued_at {
        return Err(ChainError::TimeWentBack {
            seq: n.seq,
            previous: issued_at,
            found: n.issued_at,
        });
    }
    Ok(())
}

/// The state of a chain's keys and head after a verified prefix: what the next entry must link
/// to and who may sign it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The chain's subject.
    pub subject: PublicKey,
    /// Seq of the last entry.
    pub seq: u64,
    /// Hash of the last entry.
    pub hash: Hash,
    /// issued_at of the last entry.
    pub issued_at: u64,
    /// The key that signs the next non-rotate entry.
    pub signing_key: PublicKey,
    /// Commitment to the recovery key that may sign the next rotation.
    pub recovery: Hash,
}

impl ChainHead {
    /// Starts a chain from its first entry, verifying it fully.
    ///
    /// # Errors
    /// [`ChainError::NotFromStart`] unless seq is 1; [`ChainError::Entry`] if invalid.
    pub fn genesis(first: &Entry) -> Result<ChainHead, ChainError> {
        if first.seq() != 1 {
            return Err(ChainError::NotFromStart { found: first.seq() });
        }
        verify_entry(first).map_err(|error| ChainError::Entry { seq: 1, error })?;
        Self::genesis_unverified(first)
    }

    /// Starts a chain from a first entry whose signature the caller has already verified (e.g. in
    /// a batch): checks seq, signer and recovery commitment, not the signature.
    ///
    /// # Errors
    /// [`ChainError::NotFromStart`] or [`ChainError::Entry`].
    pub fn genesis_unverified(first: &Entry) -> Result<ChainHead, ChainError> {
        if first.seq() != 1 {
            return Err(ChainError::NotFromStart { found: first.seq() });
        }
        let c = &first.content;
        if c.signer != c.subject {
            return Err(ChainError::Entry {
                seq: 1,
                error: EntryError::FirstSignerNotSubject,
            });
        }
        let recovery = c.recovery.ok_or(ChainError::Entry {
            seq: 1,
            error: EntryError::Form(DecodeError::RecoveryPresence),
        })?;
        Ok(ChainHead {
            subject: c.subject,
            seq: 1,
            hash: first.hash(),
            issued_at: c.issued_at,
            signing_key: c.subject,
            recovery,
        })
    }

    /// Whether `next.signer` is authorised at the next position: the current signing key for a
    /// grant, withdraw or refuse; a key matching the recovery commitment for a rotate.
    ///
    /// # Errors
    /// [`ChainError::WrongSigner`] or [`ChainError::RecoveryKeyMismatch`].
    pub fn check_authorised(&self, next: &Entry) -> Result<(), ChainError> {
        let c = &next.content;
        if c.kind() == Kind::Rotate {
            if recovery_commitment(&c.signer) != self.recovery {
                return Err(ChainError::RecoveryKeyMismatch { seq: c.seq });
            }
        } else if c.signer != self.signing_key {
            return Err(ChainError::WrongSigner {
                seq: c.seq,
                expected: self.signing_key,
                found: c.signer,
            });
        }
        Ok(())
    }

    /// Checks that `next` may follow this head: link, authorisation and signature.
    ///
    /// # Errors
    /// Any [`ChainError`].
    pub fn check_next(&self, next: &Entry) -> Result<(), ChainError> {
        self.check_next_unsigned(next)?;
        verify_entry(next).map_err(|error| ChainError::Entry {
            seq: next.seq(),
            error,
        })
    }

    /// [`ChainHead::check_next`] without the signature check, for callers that have verified the
    /// signature already (e.g. in a batch).
    ///
    /// # Errors
    /// Any [`ChainError`] except a signature failure.
    pub fn check_next_unsigned(&self, next: &Entry) -> Result<(), ChainError> {
        link_check(self.subject, self.seq, self.hash, self.issued_at, next)?;
        self.check_authorised(next)
    }

    /// Moves the head to `next`, which must have passed [`ChainHead::check_next`]; `hash` is its
    /// entry hash.
    pub fn advance(&mut self, next: &Entry, hash: Hash) {
        self.seq = next.seq();
        self.hash = hash;
        self.issued_at = next.content.issued_at;
        if let Body::Rotate(r) = &next.content.body {
            self.signing_key = r.new_key;
            self.recovery = r.next_recovery;
        }
    }
}

/// Verifies a whole chain from seq 1: every link and key rule in order, and every signature in one
/// batch (falling back to single checks to name a bad entry).
///
/// # Errors
/// The earliest failing entry's [`ChainError`].
pub fn verify_chain(entries: &[Entry]) -> Result<ChainHead, ChainError> {
    let Some(first) = entries.first() else {
        return Err(ChainError::NotFromStart { found: 0 });
    };
    if first.seq() != 1 {
        return Err(ChainError::NotFromStart { found: first.seq() });
    }
    // Structure first (cheap), remembering where it breaks.
    let mut structural: Option<(usize, ChainError)> = None;
    let mut head = match ChainHead::genesis_unverified(first) {
        Ok(h) => Some(h),
        Err(e) => {
            structural = Some((0, e));
            None
        }
    };
    if let Some(h) = head.as_mut() {
        for (i, e) in entries.iter().enumerate().skip(1) {
            if let Err(err) = h.check_next_unsigned(e) {
                structural = Some((i, err));
                break;
            }
            h.advance(e, e.hash());
        }
    }
    // Signatures, in one batch over the entries before the structural failure.
    let upto = structural.as_ref().map_or(entries.len(), |(i, _)| *i);
    if let Err((i, error)) = verify_entries(&entries[..upto]) {
        return Err(ChainError::Entry {
            seq: entries[i].seq(),
            error,
        });
    }
    if let Some((_, err)) = structural {
        return Err(err);
    }
    head.ok_or(ChainError::NotFromStart { found: 0 })
}

/// Verifies the signatures of many entries at once (they need not form a chain: e.g. a node's
/// whole log), in one batch; when the batch fails, each is checked alone to name the first bad one.
/// Also applies the seq-1 rule (signed by the subject). Authorisation of the signer at its
/// position is a chain question ([`ChainHead::check_authorised`]).
///
/// # Errors
/// The index of the first invalid entry and why.
pub fn verify_entries(entries: &[Entry]) -> Result<(), (usize, EntryError)> {
    verify_entries_cached(entries, &mut sig::KeyCache::new(entries.len()))
}

/// [`verify_entries`] with decoded signer keys kept in `cache` across calls (same verdicts; a node
/// or an auditor sees the same subjects' keys again and again). Takes entries or references to
/// entries held elsewhere.
///
/// # Errors
/// The index of the first invalid entry and why.
pub fn verify_entries_cached<E: Borrow<Entry>>(
    entries: &[E],
    cache: &mut sig::KeyCache,
) -> Result<(), (usize, EntryError)> {
    for (i, e) in entries.iter().map(Borrow::borrow).enumerate() {
        // Entries built in memory have not been through the decoder: apply the form rules too.
        e.content
            .check_form()
            .map_err(|f| (i, EntryError::Form(f)))?;
        if e.seq() == 1 && e.content.signer != e.content.subject {
            return Err((i, EntryError::FirstSignerNotSubject));
        }
    }
    let inputs: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.borrow().content.signing_input())
        .collect();
    let items: Vec<BatchItem<'_>> = entries
        .iter()
        .map(Borrow::borrow)
        .zip(inputs.iter())
        .map(|(e, m)| BatchItem {
            key: &e.content.signer,
            message: m,
            signature: &e.signature,
        })
        .collect();
    sig::verify_batch_cached(&items, cache).map_err(|b| (b.index, EntryError::Signature(b.error)))
}

/// The entries a fork proof needs to show who could sign at `seq`: the chain's first entry and
/// every rotate entry before `seq`, taken from a chain prefix.
pub fn key_history(chain: &[Entry], seq: u64) -> Vec<Entry> {
    if seq <= 1 {
        return Vec::new();
    }
    chain
        .iter()
        .filter(|e| e.seq() < seq && (e.seq() == 1 || e.kind() == Kind::Rotate))
        .cloned()
        .collect()
}

/// Proof that a chain's keys signed two different entries at one (subject, seq).
///
/// It carries both entries (ordered by hash) and the chain's key history up to that seq (the
/// first entry and every rotation before it), so anyone can check it without the chain.
///
/// A proof cannot show that its key history is complete: whoever holds a signing key that a
/// later rotation retired can sign two entries at a later seq and leave the rotation out. A node
/// that holds the chain must therefore check both entries against its own key state
/// ([`ChainHead::check_authorised`] at that seq) before it treats the subject as forked; the
/// standalone check is for parties without the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ForkProofJson")]
pub struct ForkProof {
    /// The entry with the lower hash.
    pub a: Entry,
    /// The entry with the higher hash.
    pub b: Entry,
    /// The first entry and the rotations before `a.seq` (empty when `a.seq == 1`).
    pub key_history: Vec<Entry>,
}

/// The JSON form of a fork proof as parsed: unknown fields are rejected and the proof is verified
/// before it becomes a [`ForkProof`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkProofJson {
    a: Entry,
    b: Entry,
    key_history: Vec<Entry>,
}

impl TryFrom<ForkProofJson> for ForkProof {
    type Error = ForkError;

    fn try_from(j: ForkProofJson) -> Result<Self, ForkError> {
        let p = ForkProof {
            a: j.a,
            b: j.b,
            key_history: j.key_history,
        };
        p.verify()?;
        Ok(p)
    }
}

/// Encoding version of a fork proof.
pub const FORK_PROOF_VERSION: u8 = 1;
/// Most entries in a fork proof's key history.
pub const MAX_KEY_HISTORY: usize = 255;

impl ForkProof {
    /// Builds a proof from two conflicting entries (in either order) and the key history, and
    /// verifies it.
    ///
    /// # Errors
    /// [`ForkError`] when the entries do not prove a fork.
    pub fn new(x: Entry, y: Entry, key_history: Vec<Entry>) -> Result<ForkProof, ForkError> {
        let (a, b) = if x.hash() <= y.hash() { (x, y) } else { (y, x) };
        let p = ForkProof { a, b, key_history };
        p.verify()?;
        Ok(p)
    }

    /// The forked subject.
    pub fn subject(&self) -> PublicKey {
        self.a.subject()
    }

    /// The seq at which the chain forked.
    pub fn seq(&self) -> u64 {
        self.a.seq()
    }

    /// Checks the proof on its own.
    ///
    /// # Errors
    /// [`ForkError`] naming the first check that fails.
    pub fn verify(&self) -> Result<(), ForkError> {
        let (a, b) = (&self.a, &self.b);
        if a.subject() != b.subject() || a.seq() != b.seq() {
            return Err(ForkError::DifferentPosition);
        }
        let (ha, hb) = (a.hash(), b.hash());
        if ha == hb {
            return Err(ForkError::SameEntry);
        }
        if ha > hb {
            return Err(ForkError::NotOrdered);
        }
        let seq = a.seq();
        let head = self.replay_history()?;
        for (which, e) in [("a", a), ("b", b)] {
            let check = match &head {
                None => verify_entry(e).map_err(|error| ChainError::Entry { seq, error }),
                Some(h) => h.check_authorised(e).and_then(|()| {
                    verify_entry(e).map_err(|error| ChainError::Entry { seq, error })
                }),
            };
            check.map_err(|error| ForkError::Entry { which, error })?;
        }
        Ok(())
    }

    fn replay_history(&self) -> Result<Option<ChainHead>, ForkError> {
        let seq = self.a.seq();
        let hist = &self.key_history;
        if seq == 1 {
            if !hist.is_empty() {
                return Err(ForkError::KeyHistory(
                    "must be empty for a fork at seq 1".into(),
                ));
            }
            return Ok(None);
        }
        if hist.len() > MAX_KEY_HISTORY {
            return Err(ForkError::KeyHistory("too many entries".into()));
        }
        let Some(first) = hist.first() else {
            return Err(ForkError::KeyHistory("missing the first entry".into()));
        };
        if first.subject() != self.a.subject() {
            return Err(ForkError::KeyHistory(
                "first entry of another subject".into(),
            ));
        }
        let mut head =
            ChainHead::genesis(first).map_err(|e| ForkError::KeyHistory(e.to_string()))?;
        for r in &hist[1..] {
            if r.subject() != head.subject || r.kind() != Kind::Rotate {
                return Err(ForkError::KeyHistory(format!(
                    "seq {}: only rotations of the subject may follow the first entry",
                    r.seq()
                )));
            }
            if r.seq() <= head.seq || r.seq() >= seq {
                return Err(ForkError::KeyHistory(format!(
                    "seq {}: rotations must be in increasing seq order and before the fork",
                    r.seq()
                )));
            }
            head.check_authorised(r)
                .map_err(|e| ForkError::KeyHistory(e.to_string()))?;
            verify_entry(r).map_err(|e| ForkError::KeyHistory(e.to_string()))?;
            head.advance(r, r.hash());
        }
        // The fork's entries follow the history at a later seq; their link is not checked.
        head.seq = seq - 1;
        Ok(Some(head))
    }

    /// Canonical encoding: version byte, then `a`, `b` as u16-length-prefixed entries, then a
    /// one-byte count and each history entry u16-length-prefixed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORK_PROOF_VERSION];
        let put = |e: &Entry, out: &mut Vec<u8>| {
            let b = e.to_bytes();
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(&b);
        };
        put(&self.a, &mut out);
        put(&self.b, &mut out);
        out.push(self.key_history.len().min(MAX_KEY_HISTORY) as u8);
        for e in self.key_history.iter().take(MAX_KEY_HISTORY) {
            put(e, &mut out);
        }
        out
    }

    /// Decodes and verifies a fork proof.
    ///
    /// # Errors
    /// [`ForkError::Decode`] for malformed bytes; otherwise as [`ForkProof::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ForkProof, ForkError> {
        let mut r = crate::encoding::Reader { buf: bytes, pos: 0 };
        let v = r.u8("fork.version")?;
        if v != FORK_PROOF_VERSION {
            return Err(DecodeError::UnknownVersion(v).into());
        }
        let entry = |r: &mut crate::encoding::Reader<'_>| -> Result<Entry, DecodeError> {
            let len = r.u16("fork.entry_len")? as usize;
            Entry::from_bytes(r.take(len, "fork.entry")?)
        };
        let a = entry(&mut r)?;
        let b = entry(&mut r)?;
        let n = r.u8("fork.history_count")? as usize;
        let mut key_history = Vec::with_capacity(n);
        for _ in 0..n {
            key_history.push(entry(&mut r)?);
        }
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                count: bytes.len() - r.pos,
            }
            .into());
        }
        let p = ForkProof { a, b, key_history };
        p.verify()?;
        Ok(p)
    }
}

/// If `existing` and `incoming` are two different entries at the same (subject, seq), and both
/// are valid under `key_history`, returns the fork proof.
pub fn detect_fork(
    existing: &Entry,
    incoming: &Entry,
    key_history: Vec<Entry>,
) -> Option<ForkProof> {
    if existing.subject() != incoming.subject() || existing.seq() != incoming.seq() {
        return None;
    }
    ForkProof::new(existing.clone(), incoming.clone(), key_history).ok()
}
