//! The node as a witness of other nodes' logs (C2SP tlog-witness), and split-view detection.
//!
//! Every node witnesses every consent-ledger log that asks it: the log's key is in its origin
//! (`consent-node/<key hex>`). The latest cosigned checkpoint per origin is kept in the store and
//! replaced atomically with the check (one lock, a compare-and-swap, a flush before the answer).
//! Cosignatures are made with the node key under the name `consent-witness/<node key hex>`.
//!
//! Split views: two checkpoints signed by one log for one size with different roots. They are
//! found when a log offers a witness a different root for the size it holds, and when a node
//! compares checkpoints it hears over gossip with the ones it has seen. Proofs are verified,
//! kept, counted and announced (to the p2p layer, which gossips them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use proto::keys::{Hash, SecretKey};
use proto::note::{Checkpoint, Note};
use proto::witness::{
    check_add, cosign, log_verifier, signature_lines, AddCheckpoint, Cosigner, Held, SplitView,
    WitnessError,
};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{SledStore, StoreError};

/// The split-view proof a refused offer makes with the held note, if any: for a root conflict at
/// the held size, the two notes; for a consistency proof that fails from the held checkpoint but
/// verifies to the offered root from the root it implies for the held size, the two notes and
/// that prefix (`SplitView::from_failed_offer`). Both notes keep only the log's own signature
/// lines, as in gossip, so that one conflict has one id.
fn conflict_proof(held: &Held, req: &AddCheckpoint, e: &WitnessError) -> Option<SplitView> {
    let offered_note = Note::parse(&req.checkpoint).ok()?;
    let offered = Checkpoint::from_text(&offered_note.text).ok()?;
    let v = log_verifier(&offered.origin)?;
    let mut logs = offered_note;
    logs.signatures
        .retain(|s| s.name == v.name && s.id == v.id());
    let offered_text = logs.to_text();
    match e {
        WitnessError::RootConflict => Some(SplitView::new(held.note.clone(), offered_text)),
        WitnessError::BadProof => {
            SplitView::from_failed_offer(held, &offered_text, &offered, &req.proof)
        }
        _ => None,
    }
}

/// Most origins whose gossiped checkpoints are remembered for comparison.
const MAX_OBSERVED_ORIGINS: usize = 4096;
/// Most sizes remembered per origin.
const MAX_OBSERVED_SIZES: usize = 64;

/// The checkpoints seen for one origin: size -> (root, the log-signed note).
type SeenSizes = BTreeMap<u64, (Hash, String)>;

/// A split-view proof as the node reports it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SplitViewReport {
    /// The proof's id (hex).
    pub id: String,
    /// The log's origin.
    pub origin: String,
    /// The tree size both checkpoints claim (the smaller one when they claim two sizes).
    pub size: u64,
    /// The larger size, when the two checkpoints claim two sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_size: Option<u64>,
    /// One signed checkpoint note.
    pub a: String,
    /// The other.
    pub b: String,
    /// For two sizes: the larger tree's root at the smaller size and its consistency proof
    /// (PROTOCOL.md 17.8).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub prefix: Option<proto::witness::Prefix>,
}

/// A log this node witnesses, with the latest checkpoint it cosigned.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessedLog {
    /// The log's origin.
    pub origin: String,
    /// The size last cosigned.
    pub size: u64,
    /// Its root (hex).
    pub root: String,
}

/// The witness.
pub struct Witness {
    key: SecretKey,
    cosigner: Cosigner,
    store: Arc<SledStore>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Held for the check-and-store of one add-checkpoint.
    lock: Mutex<()>,
    /// Checkpoints heard over gossip: origin -> size -> (root, note).
    observed: Mutex<HashMap<String, SeenSizes>>,
    announce: broadcast::Sender<Announcement>,
    /// Origins whose held checkpoint changed recently, with when: re-announced for a while, since
    /// a gossip message can be lost (no mesh yet, a peer that joins later).
    recent: Mutex<HashMap<String, std::time::Instant>>,
}

/// How long a newly cosigned checkpoint keeps being re-announced.
pub const REANNOUNCE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a checkpoint or split-view proof heard over gossip was not taken.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The payload does not parse or verify: the sender's fault.
    #[error("{0}")]
    Invalid(String),
    /// This node could not keep what the payload proves (a storage failure): not the sender's
    /// fault.
    #[error("cannot keep it here: {0}")]
    Local(String),
}

/// What the witness asks the p2p layer to gossip.
#[derive(Clone, Debug)]
pub enum Announcement {
    /// A checkpoint this node just cosigned (the log's note with this node's cosignature), so
    /// that every node can compare it with what it has seen.
    Cosigned(String),
    /// A split-view proof new here.
    SplitView(SplitView),
}

/// The size and root of a kept signed checkpoint note (None if it does not parse).
pub(crate) fn held_of(note: &str) -> Option<Held> {
    let n = Note::parse(note).ok()?;
    let cp = Checkpoint::from_text(&n.text).ok()?;
    Some(Held {
        size: cp.size,
        root: cp.root,
        note: note.to_owned(),
    })
}

impl Witness {
    /// A witness with the node key.
    pub fn new(key: SecretKey, store: Arc<SledStore>, metrics: Arc<Metrics>, clock: Clock) -> Self {
        let cosigner = Cosigner::of_key(key.public_key());
        metrics
            .split_views
            .set(i64::try_from(store.split_view_count()).unwrap_or(i64::MAX));
        Witness {
            key,
            cosigner,
            store,
            metrics,
            clock,
            lock: Mutex::new(()),
            observed: Mutex::new(HashMap::new()),
            announce: broadcast::channel(64).0,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// This witness's cosigner (name and key).
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// Checkpoints cosigned here and split-view proofs new here, for gossip.
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.announce.subscribe()
    }

    /// Handles a C2SP add-checkpoint request body: checks it against the held checkpoint, stores
    /// the new one durably and returns the cosignature line. Blocking (a store flush).
    ///
    /// # Errors
    /// [`WitnessError`] (its `status()` is the HTTP status); storage failures are returned as
    /// `Err(Err(..))`.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, Result<WitnessError, StoreError>> {
        let req = AddCheckpoint::parse(body).map_err(Ok)?;
        let own = self.key.public_key();
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut held_note: Option<String> = None;
        let mut held: Option<Held> = None;
        let mut storage: Option<StoreError> = None;
        let checked = check_add(&req, Some(&own), |origin| {
            match self.store.witness_held(origin) {
                Ok(n) => {
                    held = n.as_deref().and_then(held_of);
                    held_note = n;
                    held.clone()
                }
                Err(e) => {
                    storage = Some(e);
                    None
                }
            }
        });
        if let Some(e) = storage {
            return Err(Err(e));
        }
        let (cp, note) = match checked {
            Ok(v) => v,
            Err(e @ (WitnessError::RootConflict | WitnessError::BadProof)) => {
                if let Some(proof) = held.as_ref().and_then(|h| conflict_proof(h, &req, &e)) {
                    if let Err(e) = self.record(&proof) {
                        tracing::warn!(error = %e, "cannot keep a split-view proof");
                    }
                }
                return Err(Ok(e));
            }
            Err(e) => return Err(Ok(e)),
        };
        // Keep only the log's own signature as the evidence of what the log said.
        let v = log_verifier(&cp.origin).ok_or(Ok(WitnessError::UnknownOrigin))?;
        let mut logs_note = note.clone();
        logs_note
            .signatures
            .retain(|s| s.name == v.name && s.id == v.id());
        let text = logs_note.to_text();
        if held_note.as_deref() != Some(text.as_str()) {
            let swapped = self
                .store
                .witness_swap(&cp.origin, held_note.as_deref(), &text)
                .map_err(Err)?;
            if !swapped {
                // Cannot happen under the lock, unless the store changed beneath it.
                return Err(Ok(WitnessError::SizeConflict(cp.size)));
            }
        }
        self.metrics.witness_cosigned.inc();
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cp.origin.clone(), std::time::Instant::now());
        let now = self.clock.now_ms() / 1000;
        let sig = cosign(&self.cosigner.name, &self.key, now, &note.text);
        let mut cosigned = logs_note;
        cosigned.signatures.push(sig.clone());
        let _ = self
            .announce
            .send(Announcement::Cosigned(cosigned.to_text()));
        Ok(signature_lines(&[sig]))
    }

    /// The checkpoints cosigned within [`REANNOUNCE_FOR`], cosigned again now (a fresh
    /// timestamp, so that gossip sees a new message), for announcing once more.
    pub fn reannounce(&self) -> Vec<String> {
        let origins: Vec<String> = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, t| t.elapsed() < REANNOUNCE_FOR);
            recent.keys().cloned().collect()
        };
        let now = self.clock.now_ms() / 1000;
        origins
            .iter()
            .filter_map(|o| self.store.witness_held(o).ok().flatten())
            .filter_map(|text| {
                let mut note = Note::parse(&text).ok()?;
                let sig = cosign(&self.cosigner.name, &self.key, now, &note.text);
                note.signatures.push(sig);
                Some(note.to_text())
            })
            .collect()
    }

    /// Compares a checkpoint heard over gossip with the checkpoints seen for its origin. Returns
    /// a split-view proof when it contradicts one (also kept and announced).
    ///
    /// # Errors
    /// [`GossipError::Invalid`] when the note is not a checkpoint validly signed by its
    /// consent-ledger log; [`GossipError::Local`] when a proof it yields cannot be kept.
    pub fn observe(&self, note_text: &str) -> Result<Option<SplitView>, GossipError> {
        let invalid = |e: &dyn std::fmt::Display| GossipError::Invalid(e.to_string());
        let note = Note::parse(note_text).map_err(|e| invalid(&e))?;
        let cp = Checkpoint::from_text(&note.text).map_err(|e| invalid(&e))?;
        let v =
            log_verifier(&cp.origin).ok_or_else(|| invalid(&"not a consent-ledger log origin"))?;
        note.verify(&v).map_err(|e| invalid(&e))?;
        let mut logs_note = note.clone();
        logs_note
            .signatures
            .retain(|s| s.name == v.name && s.id == v.id());
        let text = logs_note.to_text();
        // What the witness holds counts as seen too.
        let held = self
            .store
            .witness_held(&cp.origin)
            .ok()
            .flatten()
            .and_then(|n| held_of(&n));
        let mut conflict = held
            .filter(|h| h.size == cp.size && h.root != cp.root)
            .map(|h| h.note);
        // Past the cap, a new origin is remembered nowhere, but it is still compared with the
        // checkpoint this node holds for it as a witness (above).
        {
            let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
            if observed.contains_key(&cp.origin) || observed.len() < MAX_OBSERVED_ORIGINS {
                let sizes = observed.entry(cp.origin.clone()).or_default();
                match sizes.get(&cp.size) {
                    Some((root, other)) if *root != cp.root => {
                        conflict.get_or_insert_with(|| other.clone());
                    }
                    Some(_) => {}
                    None => {
                        sizes.insert(cp.size, (cp.root, text.clone()));
                        while sizes.len() > MAX_OBSERVED_SIZES {
                            sizes.pop_first();
                        }
                    }
                }
            }
        }
        let Some(other) = conflict else {
            return Ok(None);
        };
        let proof = SplitView::new(other, text);
        self.record(&proof)?;
        Ok(Some(proof))
    }

    /// Verifies and keeps a split-view proof; true when it is new here (then also announced).
    ///
    /// # Errors
    /// [`GossipError::Invalid`] when the proof does not verify; [`GossipError::Local`] when it
    /// cannot be kept.
    pub fn record(&self, proof: &SplitView) -> Result<bool, GossipError> {
        let (cp, _) = proof
            .verify()
            .map_err(|e| GossipError::Invalid(e.to_string()))?;
        let json = serde_json::to_vec(proof).map_err(|e| GossipError::Local(e.to_string()))?;
        let new = self
            .store
            .put_split_view(proof.id().as_bytes(), &json)
            .map_err(|e| GossipError::Local(e.to_string()))?;
        if new {
            tracing::warn!(origin = %cp.origin, size = cp.size, "split view: a log signed two histories");
            self.metrics
                .split_views
                .set(i64::try_from(self.store.split_view_count()).unwrap_or(i64::MAX));
            let _ = self.announce.send(Announcement::SplitView(proof.clone()));
        }
        Ok(new)
    }

    /// Every split-view proof held.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn split_views(&self) -> Result<Vec<SplitViewReport>, StoreError> {
        let mut out = Vec::new();
        for r in self.store.split_views() {
            let json = r?;
            let Ok(p) = serde_json::from_slice::<SplitView>(&json) else {
                continue;
            };
            let Ok((cp, other)) = p.verify() else {
                continue;
            };
            out.push(SplitViewReport {
                id: p.id().to_string(),
                origin: cp.origin,
                size: cp.size.min(other.size),
                other_size: (cp.size != other.size).then_some(cp.size.max(other.size)),
                a: p.a,
                b: p.b,
                prefix: p.prefix,
            });
        }
        Ok(out)
    }

    /// The logs this node witnesses.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn logs(&self) -> Result<Vec<WitnessedLog>, StoreError> {
        let mut out = Vec::new();
        for r in self.store.witness_all() {
            let (origin, note) = r?;
            if let Some(h) = held_of(&note) {
                out.push(WitnessedLog {
                    origin,
                    size: h.size,
                    root: h.root.to_string(),
                });
            }
        }
        Ok(out)
    }
}
