//! The ledger: the only writer to the store, and the reader that answers checks.
//!
//! Submissions go to a verifier thread, which checks form and signature of every waiting
//! submission in one batch, then, one message per batch, to one writer thread over a bounded
//! channel. The writer takes every verified batch waiting (about [`MAX_GROUP`] submissions at
//! most), checks each submission against its chain (link, signer, forks), and commits the group
//! as one atomic sled batch. A flusher thread then makes it durable and only then answers; while
//! it flushes, the writer already handles the next group, and one flush covers every group
//! committed before it began (pipelined group commit). A failed flush makes the node read-only:
//! it answers checks but acknowledges no write again until restarted.
//!
//! An entry whose predecessor is missing waits in a bounded in-memory pending area (never in the
//! store) and is applied when the gap fills, or dropped after a time-to-live.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::api::{CheckResponse, ConsentEvent, SubmitStatus, Verdict};
use proto::chain::{key_history, ChainHead, ForkProof};
use proto::entry::Entry;
use proto::error::ChainError;
use proto::keys::{Hash, PublicKey};
use proto::state::{forked_decision, ConsentState, Decision};
use proto::vocab::{self, TermKind};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::Clock;
use crate::digest::Digests;
use crate::metrics::Metrics;
use crate::store::{Append, SledStore, Store, StoreError, SubjectRecord, WriteGroup};

/// Most submissions handled (and flushed) together, about: the writer takes verified batches
/// whole, so a group may pass this by less than one batch (itself at most this).
pub const MAX_GROUP: usize = 512;

/// How many verified batches may wait for the writer.
const WRITER_QUEUE: usize = 8;

/// Limits of the pending area.
#[derive(Clone, Debug)]
pub struct PendingLimits {
    /// Most entries pending in total.
    pub max_total: usize,
    /// Most entries pending for one subject.
    pub max_per_subject: usize,
    /// How long an entry may wait for its predecessor.
    pub ttl: Duration,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            max_total: 10_000,
            max_per_subject: 256,
            ttl: Duration::from_secs(600),
        }
    }
}

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Malformed, badly signed, or not valid at its position (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// Not valid here because the subject is forked and the entry belongs to a branch this node
    /// did not keep (HTTP 400, like [`IngestError::Invalid`]; not the sender's fault, so peers
    /// that relay it are not penalised).
    #[error("{0}")]
    OtherBranch(String),
    /// A second valid entry at an existing position: the proof (HTTP 409).
    #[error("fork: the subject's key signed two different entries at seq {}", .0.seq())]
    Fork(Box<ForkProof>),
    /// The pending area is full (HTTP 503).
    #[error("pending area is full; submit the missing predecessors first")]
    PendingFull,
    /// A flush failed earlier; the node is read-only (HTTP 503).
    #[error("the node is read-only after a storage failure; no writes are acknowledged")]
    ReadOnly,
    /// The store lost entries on disk and the node is putting them back from peers; it takes
    /// no other write until that is done (HTTP 503).
    #[error("the node is repairing entries its store lost on disk; no writes until that is done")]
    Repairing,
    /// Storage error (HTTP 500).
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is invalid (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Storage error (HTTP 500).
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

/// The result of a stored or accepted submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// stored, duplicate or pending.
    pub status: SubmitStatus,
    /// Log index (not for pending).
    pub log_index: Option<u64>,
}

struct WriteReq {
    entry: Entry,
    hash: Hash,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// What the writer thread receives.
enum Msg {
    /// Verified submissions, in order (one message per verifier batch, so that the writer is
    /// woken once per batch rather than once per entry).
    Write(Vec<WriteReq>),
    /// Answer everything queued before this, flush, acknowledge, stop.
    Stop(oneshot::Sender<()>),
}

/// State shared between the writer thread and readers.
struct Shared {
    store: Arc<SledStore>,
    writable: AtomicBool,
    pending: AtomicU64,
    subjects: AtomicU64,
    forks: AtomicU64,
    events: broadcast::Sender<ConsentEvent>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Summaries of every subject head, for replication (updated by the writer).
    digest: std::sync::Mutex<Digests>,
    /// The freshness bound in ms (0: off).
    fresh_bound_ms: AtomicU64,
    /// When a sync round with a peer last completed (ms, node clock; 0: never).
    last_fresh_ms: AtomicU64,
    /// True while entries the store lost on disk are being put back (see [`crate::journal`]).
    repairing: AtomicBool,
    /// The repair's state (`None` once done).
    repair: std::sync::Mutex<Option<Repair>>,
    /// Held while repaired entries are applied, so they go in strictly in journal order.
    repair_apply: tokio::sync::Mutex<()>,
}

/// Putting back the entries sled lost: their subjects, and what peers sent ahead of its turn.
struct Repair {
    /// Subjects with lost entries (their chains are refused until the repair is done).
    damaged: std::collections::HashSet<PublicKey>,
    /// Hashes of the lost entries.
    wanted: std::collections::HashSet<Hash>,
    /// Lost entries fetched from peers, waiting for their turn.
    stash: HashMap<Hash, Entry>,
}

/// Most entries held back for the repair at once.
const MAX_REPAIR_STASH: usize = 100_000;

/// The ledger handle; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    /// To the writer (stop requests; and writes when no verifier thread could start).
    tx: mpsc::Sender<Msg>,
    /// To the verifier thread, which checks signatures in batches and forwards to the writer.
    to_verifier: mpsc::Sender<Box<WriteReq>>,
}

impl Ledger {
    /// Starts the ledger on an open store.
    pub fn start(
        store: Arc<SledStore>,
        metrics: Arc<Metrics>,
        clock: Clock,
        limits: PendingLimits,
    ) -> Ledger {
        let (events, _) = broadcast::channel(4096);
        let subjects = store.subject_count();
        let forks = store.fork_count();
        let mut digest = Digests::default();
        for r in store.subject_records() {
            match r {
                Ok((_, rec)) => digest.replace(None, (&head_of(&rec), &controllers_of(&rec))),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable subject record left out of the head digest")
                }
            }
        }
        let lost = store.lost_entries();
        let repair = (!lost.is_empty()).then(|| Repair {
            damaged: lost.iter().map(|r| r.subject).collect(),
            wanted: lost.iter().map(|r| r.hash).collect(),
            stash: HashMap::new(),
        });
        let shared = Arc::new(Shared {
            repairing: AtomicBool::new(repair.is_some()),
            repair: std::sync::Mutex::new(repair),
            repair_apply: tokio::sync::Mutex::new(()),
            store,
            writable: AtomicBool::new(true),
            pending: AtomicU64::new(0),
            subjects: AtomicU64::new(subjects),
            forks: AtomicU64::new(forks),
            events,
            metrics,
            clock,
            digest: std::sync::Mutex::new(digest),
            fresh_bound_ms: AtomicU64::new(0),
            last_fresh_ms: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (to_flusher, flusher_rx) = std::sync::mpsc::channel();
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("ledger-flusher".into())
            .spawn(move || run_flusher(flusher_shared, flusher_rx));
        let writer_shared = shared.clone();
        let spawned = flusher.and_then(|_| {
            std::thread::Builder::new()
                .name("ledger-writer".into())
                .spawn(move || Writer::new(writer_shared, limits, to_flusher).run(rx))
        });
        let (to_verifier, verifier_rx) = mpsc::channel(4 * MAX_GROUP);
        let verifier_shared = shared.clone();
        let to_writer = tx.clone();
        let spawned = spawned.and_then(|_| {
            std::thread::Builder::new()
                .name("ledger-verifier".into())
                .spawn(move || run_verifier(verifier_shared, verifier_rx, to_writer))
        });
        if let Err(e) = spawned {
            // Without these threads every submission fails with ReadOnly; reads still work.
            tracing::error!(error = %e, "cannot start the ledger threads");
            shared.writable.store(false, Ordering::SeqCst);
        }
        Ledger {
            shared,
            tx,
            to_verifier,
        }
    }

    /// The store (read access).
    pub fn store(&self) -> &SledStore {
        &self.shared.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Sets the freshness bound (None: off): past it without a completed sync round, checks that
    /// would allow answer deny with status `stale`.
    pub fn set_freshness_bound(&self, bound: Option<Duration>) {
        let ms = bound.map_or(0, |b| {
            u64::try_from(b.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.shared.fresh_bound_ms.store(ms, Ordering::Relaxed);
    }

    /// Records that a sync round with a peer has just completed: this node's view is fresh.
    /// A node that is still putting back entries its store lost takes nothing new (no withdrawal
    /// can reach it), so its view does not become fresh.
    pub fn mark_fresh(&self) {
        if self.repairing() {
            return;
        }
        self.shared
            .last_fresh_ms
            .store(self.shared.clock.now_ms(), Ordering::Relaxed);
    }

    /// Whether a freshness bound is set and this node's view is older than it.
    pub fn stale(&self) -> bool {
        let bound = self.shared.fresh_bound_ms.load(Ordering::Relaxed);
        bound > 0
            && self
                .shared
                .clock
                .now_ms()
                .saturating_sub(self.shared.last_fresh_ms.load(Ordering::Relaxed))
                > bound
    }

    /// When a sync round last completed (ms; 0: never).
    pub fn last_fresh_ms(&self) -> u64 {
        self.shared.last_fresh_ms.load(Ordering::Relaxed)
    }

    /// Whether the node is putting back entries its store lost on disk (writes are refused).
    pub fn repairing(&self) -> bool {
        self.shared.repairing.load(Ordering::SeqCst)
    }

    /// Whether `subject`'s chain lost entries on disk that are not back yet: its answers would
    /// be wrong, so it is refused.
    pub fn damaged(&self, subject: &PublicKey) -> bool {
        self.repairing()
            && self
                .repair_state()
                .as_ref()
                .is_some_and(|r| r.damaged.contains(subject))
    }

    /// Whether the entry with this hash was lost on disk and is not back yet.
    pub fn lost(&self, hash: &Hash) -> bool {
        self.repairing()
            && self.repair_state().as_ref().is_some_and(|r| {
                r.wanted.contains(hash) && self.shared.store.locate(hash).ok().flatten().is_none()
            })
    }

    /// Subjects whose chains are refused until the repair is done.
    pub fn damaged_count(&self) -> u64 {
        self.repair_state()
            .as_ref()
            .map_or(0, |r| r.damaged.len() as u64)
    }

    fn repair_state(&self) -> std::sync::MutexGuard<'_, Option<Repair>> {
        self.shared
            .repair
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to ask peers for: up to `max` damaged subjects, each with the first seq still lost.
    pub fn repair_wants(&self, max: usize) -> Vec<(PublicKey, u64)> {
        if !self.repairing() {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in self.shared.store.lost_entries() {
            if out.len() >= max {
                break;
            }
            if seen.insert(r.subject) {
                out.push((r.subject, r.seq));
            }
        }
        out
    }

    /// Takes entries a peer sent for the repair: keeps the lost ones, and applies every lost
    /// entry whose turn has come, in the journal's order, so each lands at its old log index.
    /// Returns how many were applied. Ends the repair when nothing is lost any more.
    pub async fn offer_repair(&self, entries: Vec<Entry>) -> usize {
        if !self.repairing() {
            return 0;
        }
        let _turn = self.shared.repair_apply.lock().await;
        {
            let mut state = self.repair_state();
            let Some(r) = state.as_mut() else { return 0 };
            // The next positions due are always kept, so a full stash cannot stall the repair.
            let due_next: std::collections::HashSet<Hash> = self
                .shared
                .store
                .lost_entries()
                .iter()
                .take(MAX_GROUP)
                .map(|r| r.hash)
                .collect();
            for e in entries {
                let h = e.hash();
                if due_next.contains(&h)
                    || (r.wanted.contains(&h) && r.stash.len() < MAX_REPAIR_STASH)
                {
                    r.stash.insert(h, e);
                }
            }
        }
        let mut applied = 0;
        loop {
            let due: Vec<Entry> = {
                let mut state = self.repair_state();
                let Some(r) = state.as_mut() else { break };
                let mut due = Vec::new();
                for rec in self.shared.store.lost_entries().iter().take(MAX_GROUP) {
                    match r.stash.remove(&rec.hash) {
                        Some(e) => due.push(e),
                        None => break,
                    }
                }
                due
            };
            if due.is_empty() {
                break;
            }
            let first = self.shared.store.log_size();
            for (k, res) in self.submit_ordered(due).await.into_iter().enumerate() {
                // Each must be stored, at exactly the position the journal names.
                let at = first + k as u64;
                match res {
                    Ok(Outcome {
                        status: SubmitStatus::Stored,
                        log_index: Some(i),
                    }) if i == at => applied += 1,
                    other => {
                        tracing::error!(
                            outcome = ?other.map(|o| (o.status, o.log_index)),
                            expected_index = at,
                            "a repaired entry did not go back at its log position; the repair stops"
                        );
                        return applied;
                    }
                }
            }
        }
        if self.shared.store.lost_entries().is_empty() {
            *self.repair_state() = None;
            self.shared.repairing.store(false, Ordering::SeqCst);
            tracing::info!(
                log_size = self.shared.store.log_size(),
                "store repaired: every lost entry is back at its log position"
            );
        } else if applied > 0 {
            tracing::info!(
                applied,
                still_lost = self.shared.store.lost_entries().len(),
                "repair progressing"
            );
        }
        applied
    }

    /// Subscribes to consent events of entries stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConsentEvent> {
        self.shared.events.subscribe()
    }

    /// Publishes an event to subscribers (used for expiry events).
    pub fn publish(&self, ev: ConsentEvent) {
        let _ = self.shared.events.send(ev);
    }

    /// Whether writes are still acknowledged.
    pub fn writable(&self) -> bool {
        self.shared.writable.load(Ordering::SeqCst)
    }

    /// Entries waiting for a predecessor.
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Subjects stored.
    pub fn subjects(&self) -> u64 {
        self.shared.subjects.load(Ordering::SeqCst)
    }

    /// Forked subjects.
    pub fn forks(&self) -> u64 {
        self.shared.forks.load(Ordering::SeqCst)
    }

    /// Verifies an entry on its own and hands it to the writer; returns once it is durable (or
    /// pending, or refused).
    ///
    /// # Errors
    /// [`IngestError`].
    pub async fn submit(&self, entry: Entry) -> Result<Outcome, IngestError> {
        if !self.writable() {
            return Err(IngestError::ReadOnly);
        }
        if self.repairing() {
            return Err(IngestError::Repairing);
        }
        let hash = entry.hash();
        let (reply, rx) = oneshot::channel();
        self.to_verifier
            .send(Box::new(WriteReq { entry, hash, reply }))
            .await
            .map_err(|_| IngestError::ReadOnly)?;
        rx.await.map_err(|_| IngestError::ReadOnly)?
    }

    /// Verifies entries and hands them to the writer in this order; returns each one's result
    /// once all are durable (or pending, or refused). Entries of one chain may come in any order.
    pub async fn submit_many(&self, entries: Vec<Entry>) -> Vec<Result<Outcome, IngestError>> {
        if self.repairing() {
            return entries
                .iter()
                .map(|_| Err(IngestError::Repairing))
                .collect();
        }
        self.submit_ordered(entries).await
    }

    /// [`Ledger::submit_many`] without the repair gate (the repair's own path).
    async fn submit_ordered(&self, entries: Vec<Entry>) -> Vec<Result<Outcome, IngestError>> {
        let mut waits = Vec::with_capacity(entries.len());
        for entry in entries {
            if !self.writable() {
                waits.push(None);
                continue;
            }
            let hash = entry.hash();
            let (reply, rx) = oneshot::channel();
            let sent = self
                .to_verifier
                .send(Box::new(WriteReq { entry, hash, reply }))
                .await;
            waits.push(sent.ok().map(|()| rx));
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(match w {
                Some(rx) => rx.await.unwrap_or(Err(IngestError::ReadOnly)),
                None => Err(IngestError::ReadOnly),
            });
        }
        out
    }

    /// The subject's record for best-effort uses (announcing, gap fetching): a read error is
    /// logged and read as "unknown".
    fn record_or_none(&self, subject: &PublicKey) -> Option<SubjectRecord> {
        self.shared.store.subject(subject).unwrap_or_else(|e| {
            tracing::debug!(%subject, error = %e, "subject record unreadable");
            None
        })
    }

    /// The subject's head seq (0 when unknown or unreadable).
    pub fn head_seq(&self, subject: &PublicKey) -> u64 {
        self.record_or_none(subject).map_or(0, |r| r.head.seq)
    }

    /// The subject's head seq and the controllers its chain names, from one record read
    /// (`(0, [])` when unknown or unreadable).
    pub fn head_and_controllers(&self, subject: &PublicKey) -> (u64, Vec<PublicKey>) {
        self.record_or_none(subject)
            .map_or((0, Vec::new()), |r| (r.head.seq, controllers_of(&r)))
    }

    /// The 256 child summaries of a subject-key prefix (0 or 1 bytes) of the head digest.
    pub fn digest_children(&self, prefix: &[u8]) -> Vec<proto::sync::Bucket> {
        match self.shared.digest.lock() {
            Ok(d) => d.all.children(prefix),
            Err(p) => p.into_inner().all.children(prefix),
        }
    }

    /// As [`Ledger::digest_children`], over the subjects whose chain names `controller`.
    pub fn digest_children_for(
        &self,
        controller: &PublicKey,
        prefix: &[u8],
    ) -> Vec<proto::sync::Bucket> {
        match self.shared.digest.lock() {
            Ok(d) => d.children_for(controller, prefix),
            Err(p) => p.into_inner().children_for(controller, prefix),
        }
    }

    /// Up to `limit` subject heads whose key starts with `prefix`, after `after`, in key order
    /// (only those whose chain names `controller`, when given); and whether more follow.
    ///
    /// # Errors
    /// Storage errors.
    pub fn heads(
        &self,
        prefix: &[u8],
        after: Option<&PublicKey>,
        limit: usize,
        controller: Option<&PublicKey>,
    ) -> Result<(Vec<proto::sync::Head>, bool), StoreError> {
        let mut heads = Vec::new();
        for r in self.shared.store.subject_records_from(prefix, after) {
            let (_, rec) = r?;
            if controller.is_some_and(|c| !rec.consent.controllers.contains_key(c)) {
                continue;
            }
            if heads.len() == limit {
                return Ok((heads, true));
            }
            heads.push(head_of(&rec));
        }
        Ok((heads, false))
    }

    /// Answers one consent question.
    ///
    /// # Errors
    /// [`QueryError::BadRequest`] for an unknown purpose; storage errors.
    pub fn check(
        &self,
        subject: &PublicKey,
        controller: &PublicKey,
        purpose: &str,
        at: Option<u64>,
    ) -> Result<CheckResponse, QueryError> {
        check_purpose(purpose)?;
        let store = &self.shared.store;
        let judged_at = at.unwrap_or_else(|| self.shared.clock.now_ms());
        let rec = store.subject(subject)?;
        let (decision, head_seq) = match &rec {
            None => (
                ConsentState::new()
                    .decide(controller, purpose, judged_at)
                    .map_err(|e| QueryError::BadRequest(e.to_string()))?,
                0,
            ),
            Some(r) if r.forked => (forked_decision(), r.head.seq),
            Some(r) => {
                let d = match at {
                    None => r.consent.decide(controller, purpose, judged_at),
                    Some(t) => {
                        let chain = store.chain(subject, 1, usize::MAX)?;
                        ConsentState::fold_until(chain.iter(), t).decide(controller, purpose, t)
                    }
                };
                (
                    d.map_err(|e| QueryError::BadRequest(e.to_string()))?,
                    r.head.seq,
                )
            }
        };
        let mut r = response(
            *subject,
            *controller,
            purpose,
            decision,
            head_seq,
            store.log_size(),
            judged_at,
        );
        self.guard_freshness(&mut r);
        Ok(r)
    }

    /// A view older than the freshness bound may be missing a withdrawal: an allow answer then
    /// becomes deny with status `stale` (the deciding grant stays named).
    pub fn guard_freshness(&self, r: &mut CheckResponse) {
        if r.decision == Verdict::Allow && self.stale() {
            r.decision = Verdict::Deny;
            proto::state::STALE_STATUS.clone_into(&mut r.status);
        }
    }

    /// Stops the writer after it has answered every submission queued so far, and flushes.
    /// Later submissions fail with [`IngestError::ReadOnly`].
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.shared.writable.store(false, Ordering::SeqCst);
        if let Err(e) = self.shared.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// The verifier thread: takes every submission waiting (up to [`MAX_GROUP`]), checks form and
/// signature of all of them in one batch with decoded keys cached across batches (a batch costs
/// about half as much per signature as single checks), answers the invalid ones, and forwards the
/// rest to the writer in arrival order.
fn run_verifier(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Box<WriteReq>>,
    to_writer: mpsc::Sender<Msg>,
) {
    let mut cache = proto::sig::KeyCache::new(100_000);
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Take the entries out (no copy) for the batch check, then put them back.
        let (entries, tails): (Vec<Entry>, Vec<_>) = batch
            .into_iter()
            .map(|r| {
                let WriteReq { entry, hash, reply } = *r;
                (entry, (hash, reply))
            })
            .unzip();
        let verdicts: Vec<Result<(), proto::EntryError>> =
            match proto::chain::verify_entries_cached(&entries, &mut cache) {
                Ok(()) => vec![Ok(()); entries.len()],
                // Name every bad one, not just the first.
                Err(_) => entries.iter().map(proto::verify_entry).collect(),
            };
        let mut valid = Vec::with_capacity(entries.len());
        for ((entry, (hash, reply)), verdict) in entries.into_iter().zip(tails).zip(verdicts) {
            match verdict {
                Ok(()) => valid.push(WriteReq { entry, hash, reply }),
                Err(e) => {
                    shared.metrics.rejected(reason_of_entry(&e));
                    let seq = entry.seq();
                    let _ = reply.send(Err(IngestError::Invalid(format!("seq {seq}: {e}"))));
                }
            }
        }
        if valid.is_empty() {
            continue;
        }
        if let Err(mpsc::error::SendError(Msg::Write(refused))) =
            to_writer.blocking_send(Msg::Write(valid))
        {
            for r in refused {
                let _ = r.reply.send(Err(IngestError::ReadOnly));
            }
        }
    }
    tracing::debug!("ledger verifier stopped");
}

/// A subject record's head as the digest sees it.
pub fn head_of(rec: &SubjectRecord) -> proto::sync::Head {
    proto::sync::Head {
        subject: rec.head.subject,
        seq: rec.head.seq,
        hash: rec.head.hash,
        forked: rec.forked,
    }
}

/// The controllers a subject's chain names.
pub fn controllers_of(rec: &SubjectRecord) -> Vec<PublicKey> {
    rec.consent.controllers.keys().copied().collect()
}

/// Checks that `purpose` is a purpose code, suggesting near codes when it is not.
///
/// # Errors
/// [`QueryError::BadRequest`].
pub fn check_purpose(purpose: &str) -> Result<(), QueryError> {
    let v = vocab::v1();
    if v.is(purpose, TermKind::Purpose) {
        return Ok(());
    }
    let near = v.suggest(purpose, TermKind::Purpose, 3);
    Err(QueryError::BadRequest(format!(
        "unknown purpose {purpose:?}; did you mean {}?",
        near.join(", ")
    )))
}

fn response(
    subject: PublicKey,
    controller: PublicKey,
    purpose: &str,
    d: Decision,
    head_seq: u64,
    log_size: u64,
    at: u64,
) -> CheckResponse {
    CheckResponse {
        decision: Verdict::from_status(d.status),
        status: d.status.dpv().to_owned(),
        subject,
        controller,
        purpose: purpose.to_owned(),
        hash: d.hash,
        seq: d.seq,
        notice_version: d.notice_version,
        valid_until: d.valid_until,
        head_seq,
        log_size,
        at,
        evidence: None,
    }
}

fn reason_of_entry(e: &proto::EntryError) -> &'static str {
    match e {
        proto::EntryError::Form(_) => "malformed",
        proto::EntryError::FirstSignerNotSubject | proto::EntryError::SignerMismatch => {
            "wrong_signer"
        }
        proto::EntryError::Signature(_) => "bad_signature",
    }
}

fn reason_of_chain(e: &ChainError) -> &'static str {
    match e {
        ChainError::Entry { error, .. } => reason_of_entry(error),
        ChainError::WrongSigner { .. } | ChainError::RecoveryKeyMismatch { .. } => "wrong_signer",
        ChainError::TimeWentBack { .. } => "time_went_back",
        _ => "bad_link",
    }
}

/// Most different candidates kept for one pending (subject, seq): more than one is already a fork
/// in the making, which is judged when the gap fills.
const MAX_CANDIDATES: usize = 4;

/// The entries waiting at one (subject, seq), with their hash and arrival time.
type Candidates = Vec<(Entry, Hash, Instant)>;

/// The pending area: entries waiting for their predecessor, bounded.
struct Pending {
    by_subject: HashMap<PublicKey, BTreeMap<u64, Candidates>>,
    total: usize,
    limits: PendingLimits,
}

impl Pending {
    fn insert(&mut self, entry: Entry, hash: Hash, now: Instant) -> Result<(), IngestError> {
        let subject = entry.subject();
        let seq = entry.seq();
        let per = self.by_subject.entry(subject).or_default();
        if per
            .get(&seq)
            .is_some_and(|c| c.iter().any(|(_, h, _)| *h == hash))
        {
            return Ok(()); // the same entry is already waiting
        }
        let subject_total: usize = per.values().map(Vec::len).sum();
        let full = self.total >= self.limits.max_total
            || subject_total >= self.limits.max_per_subject
            || per.get(&seq).is_some_and(|c| c.len() >= MAX_CANDIDATES);
        if full {
            if per.is_empty() {
                self.by_subject.remove(&subject);
            }
            return Err(IngestError::PendingFull);
        }
        per.entry(seq).or_default().push((entry, hash, now));
        self.total += 1;
        Ok(())
    }

    /// Every candidate waiting at (subject, seq), in arrival order.
    fn take(&mut self, subject: &PublicKey, seq: u64) -> Vec<(Entry, Hash)> {
        let Some(per) = self.by_subject.get_mut(subject) else {
            return Vec::new();
        };
        let got: Vec<(Entry, Hash)> = per
            .remove(&seq)
            .map(|c| c.into_iter().map(|(e, h, _)| (e, h)).collect())
            .unwrap_or_default();
        if per.is_empty() {
            self.by_subject.remove(subject);
        }
        self.total -= got.len();
        got
    }

    fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let mut dropped = 0;
        self.by_subject.retain(|_, per| {
            per.retain(|_, cands| {
                cands.retain(|(_, _, t)| {
                    let keep = now.duration_since(*t) < ttl;
                    if !keep {
                        dropped += 1;
                    }
                    keep
                });
                !cands.is_empty()
            });
            !per.is_empty()
        });
        self.total -= dropped;
        dropped
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    pending: Pending,
    /// Committed groups on their way to the flusher thread, which makes them durable and only
    /// then answers. While it flushes, the writer already checks and commits the next group
    /// (pipelined group commit); one flush covers every group committed before it started.
    to_flusher: std::sync::mpsc::Sender<Committed>,
}

/// Where to answer a submission, and the answer.
type Answer = (
    oneshot::Sender<Result<Outcome, IngestError>>,
    Result<Outcome, IngestError>,
);

/// A group that is committed (visible) but not yet durable.
struct Committed {
    results: Vec<Answer>,
    events: Vec<ConsentEvent>,
    stored: u64,
    new_subjects: u64,
    new_forks: u64,
    /// Whether the group wrote anything (else nothing to flush for it).
    wrote: bool,
    /// For a stop request: answered once everything before it is flushed.
    stop: Option<oneshot::Sender<()>>,
}

/// The flusher thread: flushes once for every batch of committed groups, then answers them.
fn run_flusher(shared: Arc<Shared>, rx: std::sync::mpsc::Receiver<Committed>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let wrote = batch.iter().any(|c| c.wrote);
        let mut ok = shared.writable.load(Ordering::SeqCst);
        if wrote && ok {
            let started = Instant::now();
            let flushed = shared.store.flush();
            tracing::debug!(
                groups = batch.len(),
                stored = batch.iter().map(|c| c.stored).sum::<u64>(),
                flush_us = started.elapsed().as_micros() as u64,
                "groups flushed"
            );
            if let Err(e) = flushed {
                // Never acknowledge after a failed flush, and never retry it as if it worked.
                tracing::error!(error = %e, "flush failed: the node is now read-only");
                shared.writable.store(false, Ordering::SeqCst);
                // Also when sled flushed but the journal failed: readers stop waiting for
                // flushes that will not come.
                shared.store.set_read_only();
                ok = false;
            }
        }
        let metrics = &shared.metrics;
        let mut stop = None;
        for c in batch {
            if ok {
                metrics.ingested.inc_by(c.stored);
                metrics.forks.inc_by(c.new_forks);
                shared.subjects.fetch_add(c.new_subjects, Ordering::SeqCst);
                shared.forks.fetch_add(c.new_forks, Ordering::SeqCst);
                for ev in c.events {
                    let _ = shared.events.send(ev);
                }
            }
            for (reply, res) in c.results {
                let res = match res {
                    // Only a failed flush turns a success (or a fork proof) into a refusal; a
                    // duplicate too, even from a group that wrote nothing: its entry may be one
                    // that this failed flush was to make durable.
                    Ok(_) | Err(IngestError::Fork(_)) if !ok => Err(IngestError::ReadOnly),
                    other => other,
                };
                let _ = reply.send(res);
            }
            if c.stop.is_some() {
                stop = c.stop;
            }
        }
        metrics.log_size.set(shared.store.flushed_size() as i64);
        if let Some(ack) = stop {
            let _ = ack.send(());
            break;
        }
    }
    tracing::debug!("ledger flusher stopped");
}

/// One group's writes (applied as one batch) and what to publish after a successful flush.
struct GroupEffects<'a> {
    /// The store writes, visible to this group's reads.
    g: WriteGroup<'a>,
    /// Events to send once durable.
    events: Vec<ConsentEvent>,
    /// Entries appended.
    stored: u64,
    /// New subjects.
    new_subjects: u64,
    /// New forked subjects.
    new_forks: u64,
}

impl Writer {
    fn new(
        shared: Arc<Shared>,
        limits: PendingLimits,
        to_flusher: std::sync::mpsc::Sender<Committed>,
    ) -> Self {
        Writer {
            shared,
            pending: Pending {
                by_subject: HashMap::new(),
                total: 0,
                limits,
            },
            to_flusher,
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut stop = None;
        while let Some(first) = rx.blocking_recv() {
            let mut group = Vec::new();
            match first {
                Msg::Write(r) => group = r,
                Msg::Stop(ack) => stop = Some(ack),
            }
            while stop.is_none() && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Msg::Write(r)) => group.extend(r),
                    Ok(Msg::Stop(ack)) => stop = Some(ack),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.handle_group(group);
            }
            if let Some(ack) = stop.take() {
                rx.close();
                // Whatever raced in after the stop gets a clear refusal.
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Write(rs) = msg {
                        for r in rs {
                            let _ = r.reply.send(Err(IngestError::ReadOnly));
                        }
                    }
                }
                // The flusher answers the stop once everything before it is durable.
                let (done, wait) = oneshot::channel();
                let sent = self.to_flusher.send(Committed {
                    results: Vec::new(),
                    events: Vec::new(),
                    stored: 0,
                    new_subjects: 0,
                    new_forks: 0,
                    wrote: false,
                    stop: Some(done),
                });
                if sent.is_ok() {
                    let _ = wait.blocking_recv();
                }
                let _ = self.shared.store.flush();
                let _ = ack.send(());
                break;
            }
        }
        tracing::debug!("ledger writer stopped");
    }

    fn handle_group(&mut self, group: Vec<WriteReq>) {
        let metrics = self.shared.metrics.clone();
        if !self.shared.writable.load(Ordering::SeqCst) {
            for r in group {
                let _ = r.reply.send(Err(IngestError::ReadOnly));
            }
            return;
        }
        let dropped = self.pending.expire(Instant::now());
        if dropped > 0 {
            tracing::info!(dropped, "pending entries expired without their predecessor");
            metrics.rejected_n("pending_expired", dropped as u64);
        }
        let store = self.shared.store.clone();
        let mut fx = GroupEffects {
            g: store.group(),
            events: Vec::new(),
            stored: 0,
            new_subjects: 0,
            new_forks: 0,
        };
        let mut results = Vec::with_capacity(group.len());
        for r in group {
            let res = self.process(r.entry, r.hash, &mut fx);
            results.push((r.reply, res));
        }
        let GroupEffects {
            g,
            events,
            stored,
            new_subjects,
            new_forks,
        } = fx;
        self.shared
            .pending
            .store(self.pending.total as u64, Ordering::SeqCst);
        metrics.pending.set(self.pending.total as i64);
        let wrote = !g.is_empty();
        if wrote {
            if let Err(e) = g.commit() {
                tracing::error!(error = %e, "write failed: the node is now read-only");
                self.shared.writable.store(false, Ordering::SeqCst);
                for (reply, _) in results {
                    let _ = reply.send(Err(IngestError::ReadOnly));
                }
                return;
            }
        }
        let committed = Committed {
            results,
            events,
            stored,
            new_subjects,
            new_forks,
            wrote,
            stop: None,
        };
        if let Err(std::sync::mpsc::SendError(c)) = self.to_flusher.send(committed) {
            for (reply, _) in c.results {
                let _ = reply.send(Err(IngestError::ReadOnly));
            }
        }
    }

    fn process(
        &mut self,
        entry: Entry,
        hash: Hash,
        fx: &mut GroupEffects<'_>,
    ) -> Result<Outcome, IngestError> {
        let subject = entry.subject();
        let seq = entry.seq();
        let rec = fx.g.subject(&subject)?;
        let head_seq = rec.as_ref().map_or(0, |r| r.head.seq);
        // A stored entry sits at or below its subject's head, so only those can be duplicates
        // (one index lookup saved for every new entry).
        if seq <= head_seq {
            if let Some(loc) = fx.g.locate(&hash)? {
                return Ok(Outcome {
                    status: SubmitStatus::Duplicate,
                    log_index: Some(loc.log_index),
                });
            }
        }
        if seq > head_seq + 1 {
            self.pending.insert(entry, hash, Instant::now())?;
            return Ok(Outcome {
                status: SubmitStatus::Pending,
                log_index: None,
            });
        }
        if seq <= head_seq {
            let rec = rec.ok_or_else(|| IngestError::Invalid("no record".into()))?;
            return Err(self.fork_or_reject(entry, rec, fx));
        }
        let log_index = self.apply(entry, hash, rec, fx)?;
        // Entries that were waiting for this one: the first valid candidate extends the chain;
        // any other candidate at that seq is then judged as a duplicate or a fork.
        let mut next = seq + 1;
        loop {
            let candidates = self.pending.take(&subject, next);
            if candidates.is_empty() {
                break;
            }
            let mut extended = false;
            for (e, h) in candidates {
                let res = if extended {
                    self.process(e, h, fx).map(|_| ())
                } else {
                    let rec = fx.g.subject(&subject)?;
                    self.apply(e, h, rec, fx).map(|_| ())
                };
                match res {
                    Ok(()) => extended = true,
                    Err(err) => {
                        tracing::warn!(%subject, seq = next, error = %err, "pending entry not applied");
                    }
                }
            }
            if !extended {
                break;
            }
            next += 1;
        }
        Ok(Outcome {
            status: SubmitStatus::Stored,
            log_index: Some(log_index),
        })
    }

    /// Checks `entry` against the subject's head and appends it.
    fn apply(
        &mut self,
        entry: Entry,
        hash: Hash,
        rec: Option<SubjectRecord>,
        fx: &mut GroupEffects<'_>,
    ) -> Result<u64, IngestError> {
        let metrics = &self.shared.metrics;
        let old_head = rec.as_ref().map(|r| (head_of(r), controllers_of(r)));
        let record = match rec {
            None => {
                let head = ChainHead::genesis_unverified(&entry).map_err(|e| {
                    metrics.rejected(reason_of_chain(&e));
                    IngestError::Invalid(e.to_string())
                })?;
                let mut consent = ConsentState::new();
                consent.apply(&entry, hash);
                fx.new_subjects += 1;
                SubjectRecord {
                    head,
                    consent,
                    forked: false,
                }
            }
            Some(mut r) => {
                r.head.check_next_unsigned(&entry).map_err(|e| {
                    metrics.rejected(reason_of_chain(&e));
                    if r.forked {
                        IngestError::OtherBranch(e.to_string())
                    } else {
                        IngestError::Invalid(e.to_string())
                    }
                })?;
                r.head.advance(&entry, hash);
                r.consent.apply(&entry, hash);
                r
            }
        };
        let event = entry.content.body.consent().map(|k| ConsentEvent {
            kind: entry.kind().as_str().to_owned(),
            subject: entry.subject(),
            controller: k.controller,
            purposes: k.purposes.clone(),
            seq: entry.seq(),
            hash,
            log_index: 0,
            valid_until: k.valid_until,
        });
        let new_head = (head_of(&record), controllers_of(&record));
        let log_index = fx.g.append(Append {
            entry,
            hash,
            record,
        })?;
        self.set_head(
            old_head.as_ref().map(|(h, c)| (h, c.as_slice())),
            (&new_head.0, &new_head.1),
        );
        fx.stored += 1;
        if let Some(mut ev) = event {
            ev.log_index = log_index;
            fx.events.push(ev);
        }
        Ok(log_index)
    }

    fn set_head(
        &self,
        old: Option<(&proto::sync::Head, &[PublicKey])>,
        new: (&proto::sync::Head, &[PublicKey]),
    ) {
        let mut d = match self.shared.digest.lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        d.replace(old, new);
    }

    fn fork_or_reject(
        &mut self,
        entry: Entry,
        mut rec: SubjectRecord,
        fx: &mut GroupEffects<'_>,
    ) -> IngestError {
        let seq = entry.seq();
        let subject = entry.subject();
        let existing = match fx.g.entry(&subject, seq) {
            Ok(Some(e)) => e,
            Ok(None) => return IngestError::Invalid(format!("seq {seq} is not stored")),
            Err(e) => return e.into(),
        };
        let prefix = match fx.g.chain(&subject, 1, (seq - 1) as usize) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        match ForkProof::new(existing, entry, key_history(&prefix, seq)) {
            Ok(proof) => {
                if !rec.forked {
                    let old_head = head_of(&rec);
                    rec.forked = true;
                    if let Err(e) = fx.g.put_fork(&proof, &rec) {
                        return e.into();
                    }
                    let cs = controllers_of(&rec);
                    self.set_head(Some((&old_head, &cs)), (&head_of(&rec), &cs));
                    // Every controller that this subject's chain names hears of the fork.
                    for controller in rec.consent.controllers.keys() {
                        fx.events.push(ConsentEvent {
                            kind: "fork".into(),
                            subject,
                            controller: *controller,
                            purposes: vec![],
                            seq,
                            hash: proof.b.hash(),
                            log_index: 0,
                            valid_until: None,
                        });
                    }
                    fx.new_forks += 1;
                    tracing::warn!(%subject, seq, "fork detected: the subject's key signed two entries at one position");
                }
                IngestError::Fork(Box::new(proof))
            }
            Err(e) => {
                self.shared.metrics.rejected("not_at_position");
                let m = format!(
                    "seq {seq} is already taken by another entry, and this one is not valid there: {e}"
                );
                if rec.forked {
                    IngestError::OtherBranch(m)
                } else {
                    IngestError::Invalid(m)
                }
            }
        }
    }
}
