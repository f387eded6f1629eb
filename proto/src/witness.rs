//! Witnessing: C2SP tlog-cosignature (`cosignature/v1`) and the C2SP tlog-witness
//! `add-checkpoint` exchange, and split-view proofs.
//!
//! A witness keeps, per log origin, the latest checkpoint it cosigned. A log offers it a newer
//! checkpoint with a consistency proof from that size ([`AddCheckpoint`]); the witness checks the
//! log's signature and the proof ([`check_add`]) and answers with a timestamped cosignature
//! ([`cosign`]). Two checkpoints signed by one log key for one size with different roots are a
//! [`SplitView`]: self-contained proof that the log showed two histories.
//!
//! Logs are known by their origin: the origin of a consent-ledger node's log is
//! `consent-node/<node key hex>` ([`log_key_of_origin`]), so a witness needs no key list to check
//! a consent-ledger log's signature. Everything here is pure: the caller passes the time and
//! keeps the state.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{Hash, PublicKey, SecretKey, Signature};
use crate::merkle;
use crate::note::{Checkpoint, Note, NoteError, NoteSignature, Verifier};

/// Signature type byte of C2SP Ed25519 cosignatures (`cosignature/v1`).
pub const COSIGNATURE_TYPE: u8 = 0x04;
/// Most consistency proof lines in an add-checkpoint request (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest add-checkpoint request body, in bytes.
pub const MAX_ADD_BODY: usize = crate::note::MAX_NOTE_BYTES + 4096;
/// The origin prefix of consent-ledger node logs.
pub const NODE_ORIGIN_PREFIX: &str = "consent-node/";
/// The key-name prefix of consent-ledger witnesses.
pub const WITNESS_NAME_PREFIX: &str = "consent-witness/";

/// Why a witness refuses a checkpoint; each maps to the C2SP tlog-witness HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request body is malformed, or the old size exceeds the checkpoint's (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The origin is not a log this witness knows (404).
    #[error("unknown log origin")]
    UnknownOrigin,
    /// The origin is the witness's own log, which it does not cosign (404).
    #[error("a witness does not cosign its own log")]
    OwnLog,
    /// No signature by the log's key verifies (403).
    #[error("checkpoint signature: {0}")]
    Forbidden(String),
    /// The old size is not the size the witness last cosigned for the origin (409, with that
    /// size as the body).
    #[error("old size does not match; the witness holds size {0}")]
    SizeConflict(u64),
    /// Same size as the witness holds, different root: the log showed two histories (409).
    #[error("a different root for the size the witness holds: split view")]
    RootConflict,
    /// The consistency proof does not verify (422).
    #[error("consistency proof does not verify")]
    BadProof,
}

impl WitnessError {
    /// The HTTP status code C2SP tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::UnknownOrigin | WitnessError::OwnLog => 404,
            WitnessError::Forbidden(_) => 403,
            WitnessError::SizeConflict(_) | WitnessError::RootConflict => 409,
            WitnessError::BadProof => 422,
        }
    }
}

/// The log key named by a consent-ledger log origin `consent-node/<64 hex digits>`.
pub fn log_key_of_origin(origin: &str) -> Option<PublicKey> {
    let hex_key = origin.strip_prefix(NODE_ORIGIN_PREFIX)?;
    if hex_key.len() != 64 || hex_key.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex_key.parse().ok()
}

/// The note verifier of a consent-ledger log origin.
pub fn log_verifier(origin: &str) -> Option<Verifier> {
    log_key_of_origin(origin).map(|key| Verifier {
        name: origin.to_owned(),
        key,
    })
}

/// The key ID of a cosigner key: `SHA-256(name || 0x0A || 0x04 || key)[:4]`.
pub fn cosigner_key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    crate::note::typed_key_id(name, COSIGNATURE_TYPE, key)
}

/// The message a `cosignature/v1` signs: `cosignature/v1\ntime <t>\n` then the checkpoint text.
pub fn cosigned_message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text.as_bytes());
    m
}

/// A cosigner: a witness name and its Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigner {
    /// The key name, e.g. `consent-witness/<key hex>`.
    pub name: String,
    /// The public key.
    pub key: PublicKey,
}

impl Cosigner {
    /// The cosigner of a consent-ledger witness key: named `consent-witness/<key hex>`.
    pub fn of_key(key: PublicKey) -> Cosigner {
        Cosigner {
            name: format!("{WITNESS_NAME_PREFIX}{key}"),
            key,
        }
    }

    /// The key ID.
    pub fn id(&self) -> [u8; 4] {
        cosigner_key_id(&self.name, &self.key)
    }

    /// The vkey string `name+hex(id)+base64(0x04 || key)`.
    pub fn to_vkey(&self) -> String {
        crate::note::typed_vkey(&self.name, COSIGNATURE_TYPE, &self.key)
    }

    /// Parses a cosigner vkey string (type 0x04).
    ///
    /// # Errors
    /// [`NoteError::BadKey`].
    pub fn from_vkey(s: &str) -> Result<Cosigner, NoteError> {
        let (name, key) = crate::note::parse_typed_vkey(s, COSIGNATURE_TYPE)?;
        Ok(Cosigner { name, key })
    }

    /// Verifies this cosigner's cosignature on `note` and returns its timestamp. Other
    /// signatures are ignored.
    ///
    /// # Errors
    /// [`NoteError::Unsigned`] or [`NoteError::BadSignature`].
    pub fn verify(&self, note: &Note) -> Result<u64, NoteError> {
        let id = self.id();
        let mut found = None;
        for s in note
            .signatures
            .iter()
            .filter(|s| s.name == self.name && s.id == id)
        {
            let bad = || NoteError::BadSignature(self.name.clone());
            if s.signature.len() != 72 {
                return Err(bad());
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&s.signature[..8]);
            let timestamp = u64::from_be_bytes(t);
            if timestamp > i64::MAX as u64 {
                return Err(bad());
            }
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&s.signature[8..]);
            crate::sig::verify(
                &self.key,
                &cosigned_message(timestamp, &note.text),
                &Signature::from_bytes(sig),
            )
            .map_err(|_| bad())?;
            found = Some(timestamp);
        }
        found.ok_or_else(|| NoteError::Unsigned(self.name.clone()))
    }
}

/// Cosigns a checkpoint text at `timestamp` (POSIX seconds): the signature line to add to the
/// checkpoint's note.
pub fn cosign(name: &str, key: &SecretKey, timestamp: u64, checkpoint_text: &str) -> NoteSignature {
    let sig = key.sign(&cosigned_message(timestamp, checkpoint_text));
    let mut payload = timestamp.to_be_bytes().to_vec();
    payload.extend_from_slice(sig.as_bytes());
    NoteSignature {
        name: name.to_owned(),
        id: cosigner_key_id(name, &key.public_key()),
        signature: payload,
    }
}

/// The signature lines of a note, as a witness answers them (`— name base64\n` each).
pub fn signature_lines(sigs: &[NoteSignature]) -> String {
    let note = Note {
        text: String::new(),
        signatures: sigs.to_vec(),
    };
    // A note with empty text serialises as "\n" followed by the lines.
    note.to_text()[1..].to_owned()
}

/// Adds the signature lines of a witness answer to a signed note (lines already present are not
/// repeated).
///
/// # Errors
/// [`NoteError::Malformed`] when the answer is not signature lines.
pub fn add_signature_lines(note: &mut Note, lines: &str) -> Result<(), NoteError> {
    let answer = Note::parse(&format!("x\n\n{lines}"))?;
    for s in answer.signatures {
        if !note.signatures.contains(&s) {
            if note.signatures.len() >= crate::note::MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures".into()));
            }
            note.signatures.push(s);
        }
    }
    Ok(())
}

/// A C2SP tlog-witness `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the witness last cosigned for this origin, as the log believes (0: none).
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size (empty when `old` is 0).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_text(&self) -> String {
        let mut t = format!("old {}\n", self.old);
        for h in &self.proof {
            t.push_str(&B64.encode(h.as_bytes()));
            t.push('\n');
        }
        t.push('\n');
        t.push_str(&self.checkpoint);
        t
    }

    /// Parses a request body strictly.
    ///
    /// # Errors
    /// [`WitnessError::BadRequest`].
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, WitnessError> {
        let bad = |m: &str| WitnessError::BadRequest(m.to_owned());
        if body.len() > MAX_ADD_BODY {
            return Err(bad("request body too large"));
        }
        let s = std::str::from_utf8(body).map_err(|_| bad("request body is not UTF-8"))?;
        let (head, checkpoint) = s
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old_line = lines.next().unwrap_or_default();
        let old = old_line
            .strip_prefix("old ")
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d.len() == 1 || !d.starts_with('0'))
            })
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| bad("first line must be `old <size>` in decimal"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() >= MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad("a proof line is not a base64 32-byte hash"))?;
            proof.push(Hash::from_bytes(h));
        }
        Note::parse(checkpoint).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// What a witness holds for one origin: the latest checkpoint it cosigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The signed note as the log sent it (the evidence, should the log later contradict it).
    pub note: String,
}

/// Checks an add-checkpoint request against what the witness holds for the origin
/// (`held(origin)`), following C2SP tlog-witness. `own` is the witness's own log key, if it runs
/// a log: a witness does not cosign its own log (check 3 of docs/PROTOCOL.md section 17.4). On
/// success returns the checkpoint and its parsed note, which the witness must store (atomically
/// with the check) before it cosigns.
///
/// # Errors
/// [`WitnessError`], in the order of the C2SP checks.
pub fn check_add(
    req: &AddCheckpoint,
    own: Option<&PublicKey>,
    held: impl FnOnce(&str) -> Option<Held>,
) -> Result<(Checkpoint, Note), WitnessError> {
    let note = Note::parse(&req.checkpoint).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
    let cp =
        Checkpoint::from_text(&note.text).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
    let v = log_verifier(&cp.origin).ok_or(WitnessError::UnknownOrigin)?;
    if own == Some(&v.key) {
        return Err(WitnessError::OwnLog);
    }
    note.verify(&v)
        .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
    if req.old > cp.size {
        return Err(WitnessError::BadRequest(
            "old size exceeds the checkpoint size".into(),
        ));
    }
    let current = held(&cp.origin);
    let held_size = current.as_ref().map_or(0, |h| h.size);
    if req.old != held_size {
        return Err(WitnessError::SizeConflict(held_size));
    }
    match current {
        None => {
            if !req.proof.is_empty() {
                return Err(WitnessError::BadProof);
            }
        }
        Some(h) if h.size == cp.size => {
            if h.root != cp.root {
                return Err(WitnessError::RootConflict);
            }
        }
        // Every tree extends the empty one: nothing to prove (RFC 6962 has no proof from 0).
        Some(h) if h.size == 0 => {
            if !req.proof.is_empty() {
                return Err(WitnessError::BadProof);
            }
        }
        Some(h) => {
            merkle::verify_consistency(h.size, cp.size, &h.root, &cp.root, &req.proof)
                .map_err(|_| WitnessError::BadProof)?;
        }
    }
    Ok((cp, note))
}

/// Proof that a log signed two checkpoints that cannot both be true: two checkpoint notes, each
/// carrying a valid signature by the log key of their common origin, either for one tree size
/// with different roots, or for two sizes with a [`Prefix`] showing that the larger tree does not
/// extend the smaller one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitView {
    /// One signed checkpoint note (the smaller of the two texts, so that a proof has one form).
    pub a: String,
    /// The other.
    pub b: String,
    /// For checkpoints of two sizes: what the larger one's tree holds at the smaller size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
}

/// The root that the tree of the larger of two checkpoints has at the smaller one's size, with
/// the consistency proof (RFC 9162 section 2.1.4) from that root to the larger checkpoint's root.
/// When it differs from the root signed for the smaller size, the larger tree does not extend the
/// smaller one: the log showed two histories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    /// The larger tree's root at the smaller size.
    pub root: Hash,
    /// The consistency proof from (smaller size, `root`) to (larger size, larger root).
    pub proof: Vec<Hash>,
}

/// Why a split-view proof is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitViewError {
    /// A note or checkpoint does not parse.
    #[error("{0}")]
    Note(#[from] NoteError),
    /// The origin is not a consent-ledger log origin.
    #[error("unknown log origin")]
    UnknownOrigin,
    /// The two checkpoints differ in origin, or do not conflict (one size with one root; two
    /// sizes without a prefix that contradicts the smaller one).
    #[error("not a split view: {0}")]
    NotConflicting(&'static str),
    /// The notes are not in their canonical order (a < b).
    #[error("the two notes are not in canonical order")]
    Order,
}

impl SplitView {
    /// A proof from two notes of one size, in canonical order.
    pub fn new(x: String, y: String) -> SplitView {
        Self::across(x, y, None)
    }

    /// A proof from two notes, in canonical order, with the prefix that contradicts the smaller
    /// one when their sizes differ.
    pub fn across(x: String, y: String, prefix: Option<Prefix>) -> SplitView {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        SplitView { a, b, prefix }
    }

    /// The proof a witness holding `held` can make when a log offers the larger checkpoint
    /// `offered` (signed note `offered_note`) with a consistency proof that does not verify from
    /// the held one: when the roots the proof computes on its own (see [`merkle::implied_roots`])
    /// are the offered root and, for the held size, another root than the held one.
    pub fn from_failed_offer(
        held: &Held,
        offered_note: &str,
        offered: &Checkpoint,
        proof: &[Hash],
    ) -> Option<SplitView> {
        let (implied, root) = merkle::implied_roots(held.size, offered.size, proof)?;
        if root != offered.root || implied == held.root {
            return None;
        }
        Some(Self::across(
            held.note.clone(),
            offered_note.to_owned(),
            Some(Prefix {
                root: implied,
                proof: proof.to_vec(),
            }),
        ))
    }

    /// Verifies the proof; returns the two checkpoints (same origin; one size with different
    /// roots, or two sizes with a prefix that contradicts the smaller).
    ///
    /// # Errors
    /// [`SplitViewError`].
    pub fn verify(&self) -> Result<(Checkpoint, Checkpoint), SplitViewError> {
        if self.a >= self.b {
            return Err(SplitViewError::Order);
        }
        let ca = Checkpoint::from_text(&Note::parse(&self.a)?.text)?;
        let v = log_verifier(&ca.origin).ok_or(SplitViewError::UnknownOrigin)?;
        let (ca, _) = Checkpoint::open(&self.a, &v)?;
        let (cb, _) = Checkpoint::open(&self.b, &v)?;
        if ca.origin != cb.origin {
            return Err(SplitViewError::NotConflicting("different origins"));
        }
        if ca.size == cb.size {
            if self.prefix.is_some() {
                return Err(SplitViewError::NotConflicting("a prefix for one size"));
            }
            if ca.root == cb.root {
                return Err(SplitViewError::NotConflicting("same root"));
            }
            return Ok((ca, cb));
        }
        let prefix = self.prefix.as_ref().ok_or(SplitViewError::NotConflicting(
            "different sizes without a prefix",
        ))?;
        let (small, large) = if ca.size < cb.size {
            (&ca, &cb)
        } else {
            (&cb, &ca)
        };
        if merkle::verify_consistency(
            small.size,
            large.size,
            &prefix.root,
            &large.root,
            &prefix.proof,
        )
        .is_err()
        {
            return Err(SplitViewError::NotConflicting(
                "the prefix is not the larger tree's",
            ));
        }
        if prefix.root == small.root {
            return Err(SplitViewError::NotConflicting(
                "the larger tree extends the smaller",
            ));
        }
        Ok((ca, cb))
    }

    /// The proof's identifier: SHA-256 of `a || 0x00 || b`.
    pub fn id(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(self.a.as_bytes());
        h.update([0]);
        h.update(self.b.as_bytes());
        Hash::from_bytes(h.finalize().into())
    }

    /// The origin both checkpoints name (unverified; call [`SplitView::verify`] first).
    pub fn origin(&self) -> Option<String> {
        let n = Note::parse(&self.a).ok()?;
        Checkpoint::from_text(&n.text).ok().map(|c| c.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_key() -> SecretKey {
        SecretKey::from_seed([7; 32])
    }

    fn origin() -> String {
        format!("{NODE_ORIGIN_PREFIX}{}", log_key().public_key())
    }

    fn leaves(n: u64, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut b = [salt; 32];
                b[..8].copy_from_slice(&i.to_be_bytes());
                merkle::leaf_hash(&b)
            })
            .collect()
    }

    fn signed(size: u64, salt: u8) -> String {
        let cp = Checkpoint {
            origin: origin(),
            size,
            root: merkle::root(&leaves(size, salt)[..], size),
            extensions: vec![],
        };
        cp.sign(&origin(), &log_key()).expect("sign").to_text()
    }

    fn held_of(note: &str) -> Held {
        let cp = Checkpoint::from_text(&Note::parse(note).expect("note").text).expect("cp");
        Held {
            size: cp.size,
            root: cp.root,
            note: note.to_owned(),
        }
    }

    #[test]
    fn cosignatures_round_trip_and_bind_time_and_text() {
        let w = SecretKey::from_seed([9; 32]);
        let c = Cosigner::of_key(w.public_key());
        assert_eq!(Cosigner::from_vkey(&c.to_vkey()), Ok(c.clone()));
        let mut note = Note::parse(&signed(5, 1)).expect("note");
        let sig = cosign(&c.name, &w, 1_700_000_000, &note.text);
        add_signature_lines(&mut note, &signature_lines(&[sig])).expect("lines");
        assert_eq!(c.verify(&note), Ok(1_700_000_000));
        // The log's own signature still verifies beside it.
        note.verify(&log_verifier(&origin()).expect("v"))
            .expect("log signature");
        // Changing the timestamp bytes breaks it.
        let mut t = note.clone();
        t.signatures[1].signature[7] ^= 1;
        assert!(c.verify(&t).is_err());
        // So does another checkpoint text.
        let mut other = Note::parse(&signed(6, 1)).expect("note");
        other.signatures.push(note.signatures[1].clone());
        assert!(c.verify(&other).is_err());
    }

    #[test]
    fn add_checkpoint_bodies_round_trip_and_bad_ones_are_refused() {
        let req = AddCheckpoint {
            old: 3,
            proof: merkle::consistency_proof(&leaves(8, 1)[..], 3, 8).expect("proof"),
            checkpoint: signed(8, 1),
        };
        assert_eq!(
            AddCheckpoint::parse(req.to_text().as_bytes()),
            Ok(req.clone())
        );
        for bad in [
            "old 01\n\n".to_owned() + &req.checkpoint,
            "old -1\n\n".to_owned() + &req.checkpoint,
            "new 1\n\n".to_owned() + &req.checkpoint,
            "old 1\nnot base64\n\n".to_owned() + &req.checkpoint,
            "old 1\n".to_owned() + &req.checkpoint,
            "old 0\n\nno signatures\n".to_owned(),
            format!("old 1\n{}\n", "AAAA\n".repeat(64)) + &req.checkpoint,
        ] {
            assert!(
                matches!(
                    AddCheckpoint::parse(bad.as_bytes()),
                    Err(WitnessError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_witness_checks_follow_c2sp() {
        let first = AddCheckpoint {
            old: 0,
            proof: vec![],
            checkpoint: signed(3, 1),
        };
        // A witness does not cosign its own log (check 3); another witness does.
        assert_eq!(
            check_add(&first, Some(&log_key().public_key()), |_| None),
            Err(WitnessError::OwnLog)
        );
        let other = SecretKey::from_seed([0x77; 32]).public_key();
        let (cp, _) = check_add(&first, Some(&other), |_| None).expect("first");
        assert_eq!(cp.size, 3);
        let held = held_of(&first.checkpoint);
        // A consistent extension with the right old size.
        let next = AddCheckpoint {
            old: 3,
            proof: merkle::consistency_proof(&leaves(8, 1)[..], 3, 8).expect("proof"),
            checkpoint: signed(8, 1),
        };
        check_add(&next, None, |_| Some(held.clone())).expect("extension");
        // Wrong old size: 409 with the held size.
        let stale = AddCheckpoint {
            old: 0,
            ..next.clone()
        };
        assert_eq!(
            check_add(&stale, None, |_| Some(held.clone())),
            Err(WitnessError::SizeConflict(3))
        );
        // A proof towards another history: 422.
        let forked = AddCheckpoint {
            old: 3,
            proof: merkle::consistency_proof(&leaves(8, 2)[..], 3, 8).expect("proof"),
            checkpoint: signed(8, 2),
        };
        assert_eq!(
            check_add(&forked, None, |_| Some(held.clone())),
            Err(WitnessError::BadProof)
        );
        // Same size, other root: a split view.
        let split = AddCheckpoint {
            old: 3,
            proof: vec![],
            checkpoint: signed(3, 2),
        };
        assert_eq!(
            check_add(&split, None, |_| Some(held.clone())),
            Err(WitnessError::RootConflict)
        );
        // A held empty tree is extended without a proof.
        let empty = held_of(&signed(0, 1));
        check_add(
            &AddCheckpoint {
                old: 0,
                proof: vec![],
                checkpoint: signed(3, 1),
            },
            None,
            |_| Some(empty.clone()),
        )
        .expect("from size 0");
        // old > size: 400.
        let backwards = AddCheckpoint {
            old: 9,
            proof: vec![],
            checkpoint: signed(8, 1),
        };
        assert!(matches!(
            check_add(&backwards, None, |_| None),
            Err(WitnessError::BadRequest(_))
        ));
        // Unknown origin: 404; a signature by another key: 403.
        let foreign = Checkpoint {
            origin: "example.com/log".into(),
            size: 1,
            root: Hash::ZERO,
            extensions: vec![],
        }
        .sign("example.com/log", &log_key())
        .expect("sign")
        .to_text();
        let r = AddCheckpoint {
            old: 0,
            proof: vec![],
            checkpoint: foreign,
        };
        assert_eq!(
            check_add(&r, None, |_| None),
            Err(WitnessError::UnknownOrigin)
        );
        let forged = Checkpoint {
            origin: origin(),
            size: 1,
            root: Hash::ZERO,
            extensions: vec![],
        }
        .sign(&origin(), &SecretKey::from_seed([8; 32]))
        .expect("sign")
        .to_text();
        let r = AddCheckpoint {
            old: 0,
            proof: vec![],
            checkpoint: forged,
        };
        assert!(matches!(
            check_add(&r, None, |_| None),
            Err(WitnessError::Forbidden(_))
        ));
    }

    #[test]
    fn split_view_proofs_verify_only_when_they_conflict() {
        let p = SplitView::new(signed(4, 1), signed(4, 2));
        let (a, b) = p.verify().expect("split view");
        assert_eq!(a.size, b.size);
        assert_ne!(a.root, b.root);
        assert_eq!(p.origin(), Some(origin()));
        assert_eq!(SplitView::new(p.b.clone(), p.a.clone()), p);
        let swapped = SplitView {
            a: p.b.clone(),
            b: p.a.clone(),
            prefix: None,
        };
        assert_eq!(swapped.verify(), Err(SplitViewError::Order));
        assert!(SplitView::new(signed(4, 1), signed(5, 1)).verify().is_err());
        // A changed byte in either note breaks the signature.
        let tampered = SplitView::new(p.a.replacen('4', "5", 1), p.b.clone());
        assert!(tampered.verify().is_err());
    }

    #[test]
    fn a_larger_checkpoint_that_does_not_extend_a_smaller_one_is_a_split_view() {
        // History 1 has 5 leaves; history 2 agrees on the first 2, then differs, and has 9.
        let mut other = leaves(9, 2);
        other[..2].copy_from_slice(&leaves(2, 1));
        let sign = |size: u64, root: Hash| {
            let cp = Checkpoint {
                origin: origin(),
                size,
                root,
                extensions: vec![],
            };
            cp.sign(&origin(), &log_key()).expect("sign").to_text()
        };
        let small_root = merkle::root(&leaves(5, 1)[..], 5);
        let large_root = merkle::root(&other[..], 9);
        let (small, large) = (sign(5, small_root), sign(9, large_root));
        // The proof the second history gives from 5 to 9: it does not verify from the first.
        let proof = merkle::consistency_proof(&other[..], 5, 9).expect("proof");
        assert!(merkle::verify_consistency(5, 9, &small_root, &large_root, &proof).is_err());
        // An offered note as the witness reads it.
        let offer = |note: &str| {
            let h = held_of(note);
            Checkpoint {
                origin: origin(),
                size: h.size,
                root: h.root,
                extensions: vec![],
            }
        };
        let p = SplitView::from_failed_offer(&held_of(&small), &large, &offer(&large), &proof)
            .expect("a split view");
        let (a, b) = p.verify().expect("verifies");
        assert_ne!(a.size, b.size);
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(serde_json::from_str::<SplitView>(&json).expect("parses"), p);
        // Without the prefix, with a prefix that matches the smaller root, or with a changed
        // proof, it proves nothing.
        let mut q = p.clone();
        q.prefix = None;
        assert!(q.verify().is_err());
        let mut q = p.clone();
        if let Some(x) = q.prefix.as_mut() {
            x.root = small_root;
        }
        assert!(q.verify().is_err());
        let mut q = p.clone();
        if let Some(x) = q.prefix.as_mut() {
            x.proof[0] = Hash::ZERO;
        }
        assert!(q.verify().is_err());
        // A proof that does extend the smaller tree makes none; nor does a power-of-two held
        // size (the proof then omits the root it starts from).
        let honest = merkle::consistency_proof(&leaves(9, 1)[..], 5, 9).expect("proof");
        let honest_root = merkle::root(&leaves(9, 1)[..], 9);
        let honest_note = sign(9, honest_root);
        assert!(SplitView::from_failed_offer(
            &held_of(&small),
            &honest_note,
            &offer(&honest_note),
            &honest
        )
        .is_none());
        let four = merkle::root(&leaves(4, 1)[..], 4);
        let proof4 = merkle::consistency_proof(&other[..], 4, 9).expect("proof");
        assert!(SplitView::from_failed_offer(
            &held_of(&sign(4, four)),
            &large,
            &offer(&large),
            &proof4
        )
        .is_none());
        // A prefix on a same-size proof is refused.
        let mut same = SplitView::new(signed(4, 1), signed(4, 2));
        same.prefix = p.prefix.clone();
        assert!(same.verify().is_err());
    }
}
