//! Sync: what gossip misses (a node that was offline, a gap behind a pending entry, a new node).
//!
//! A round with a peer compares the head digests top-down (`proto::sync`): the 256 first-byte
//! summaries, then the leaves of differing large buckets, then the heads of differing small ones;
//! it then fetches the entries this node lacks in bounded batches and hands them to the ledger,
//! which verifies each before storing. A head at the same seq with another hash, or a peer that
//! holds a fork proof this node lacks, brings the peer's entry or proof over, so forks spread.
//!
//! A node with a freshness bound also audits each peer's log after a round (see [`Syncer`]'s
//! `audit`): it reads the peer's signed checkpoint before the round, then the peer's log up to
//! that size, and checks the root against the checkpoint and against the one this node cosigned
//! as a witness. Only an audited round makes the view fresh.
//!
//! This module also validates gossip messages and serves the peers' sync requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use proto::api::SubmitStatus;
use proto::chain::ForkProof;
use proto::entry::Entry;
use proto::keys::PublicKey;
use proto::merkle::Frontier;
use proto::note::Checkpoint;
use proto::sync::{
    Head, Request, Response, Want, FANOUT, MAX_ENTRIES, MAX_HEADS, MAX_MESSAGE, MAX_WANTS,
    TOPIC_ENTRIES,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::NetHandle;
use crate::ledger::{IngestError, Ledger};
use crate::store::Store;

/// Most differing subjects one round collects before it fetches.
pub const MAX_ROUND_DIFFS: usize = 65_536;
/// Most peers asked to fill one gap.
pub const MAX_GAP_PEERS: usize = 4;

/// Why the syncer should run a round.
#[derive(Debug)]
pub enum Trigger {
    /// A full round with a peer (on connect).
    Peer(PeerId),
    /// One subject's entries from a seq on: from the peer that gossiped a later one (or any peer,
    /// for a submission left pending), then from other peers until the gap is filled.
    Gap {
        /// The peer asked first.
        peer: PeerId,
        /// The subject.
        subject: PublicKey,
        /// First seq wanted.
        from_seq: u64,
    },
}

/// What a round did.
#[derive(Debug, Default)]
pub struct RoundStats {
    /// Subjects whose heads differed.
    pub differing: u64,
    /// Entries fetched and stored.
    pub stored: u64,
    /// Requests sent.
    pub requests: u64,
    /// Some part of the round failed (a brand node's other controller rounds went on).
    pub partial: bool,
}

/// Most peers whose log audits are remembered.
pub const MAX_AUDITED_PEERS: usize = 1024;
/// Most `LogEntries` requests of one audit: a longer log is audited over several rounds (the
/// frontier keeps the progress), and a peer that signs a huge size cannot hold the syncer.
pub const MAX_AUDIT_REQUESTS: u64 = 100;

/// Test-only adversary behaviour (`consent-node run --adversary-withhold SUBJECT:SEQ`): the node
/// hides the entries of one subject from `from_seq` on from its peers. Its sync answers (digest,
/// heads, entries) and its gossip show the subject as if its chain ended before `from_seq`; with
/// `log`, the log it serves to auditors leaves them out too. Its own store, checks and signed
/// checkpoints stay honest. Used by the withholding test (docs/RELIABILITY.md, item 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withhold {
    /// The subject whose entries are hidden.
    pub subject: PublicKey,
    /// The first hidden seq (at least 1).
    pub from_seq: u64,
    /// Hide them from the served log as well.
    pub log: bool,
}

impl Withhold {
    /// Parses `SUBJECT:SEQ` (a hex key and a seq of at least 1).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str, log: bool) -> Result<Withhold, String> {
        let (subject, seq) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not SUBJECT:SEQ"))?;
        let subject = subject
            .parse()
            .map_err(|e| format!("{subject:?} is not a subject key: {e}"))?;
        let from_seq = seq
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{seq:?} is not a seq of at least 1"))?;
        Ok(Withhold {
            subject,
            from_seq,
            log,
        })
    }

    /// Whether the entry is one this adversary hides.
    pub fn hides(&self, e: &Entry) -> bool {
        e.subject() == self.subject && e.seq() >= self.from_seq
    }

    /// The subject's real head, and the head shown instead (None: the subject is not shown),
    /// when the real chain reaches a hidden seq.
    fn heads(&self, ledger: &Ledger) -> Option<(Head, Option<Head>)> {
        let rec = ledger.store().subject(&self.subject).ok()??;
        if rec.head.seq < self.from_seq {
            return None;
        }
        let real = crate::ledger::head_of(&rec);
        let shown = match self.from_seq - 1 {
            0 => None,
            seq => {
                let e = ledger.store().entry(&self.subject, seq).ok()??;
                Some(Head {
                    subject: self.subject,
                    seq,
                    hash: e.hash(),
                    forked: false,
                })
            }
        };
        Some((real, shown))
    }
}

/// What serving sync requests needs.
#[derive(Clone)]
pub struct Server {
    /// The ledger (the store, the head digests).
    pub ledger: Ledger,
    /// This node as a witness.
    pub witness: Arc<crate::witness::Witness>,
    /// This node's signed checkpoints.
    pub checkpoints: Arc<crate::checkpoint::Checkpointer>,
    /// Test-only adversary behaviour.
    pub withhold: Option<Withhold>,
}

/// Runs sync rounds, one at a time.
pub struct Syncer {
    net: NetHandle,
    ledger: Ledger,
    /// The controllers whose chains this node replicates (empty: every chain).
    interest: Vec<PublicKey>,
    /// Audit each peer's log after a round, and count only audited rounds as fresh (set with a
    /// freshness bound).
    audit_logs: bool,
    /// How far each peer's log has been audited: the Merkle frontier over its first positions.
    audits: Mutex<HashMap<PeerId, Frontier>>,
}

/// Why a log audit did not complete.
#[derive(Debug)]
enum AuditError {
    /// The peer's log contradicts its own signed checkpoint or one this node cosigned.
    Caught(String),
    /// The audit could not be done (the peer did not answer, or answered out of protocol).
    Failed(String),
}

impl Syncer {
    /// A syncer over the event loop's handle.
    pub fn new(net: NetHandle, ledger: Ledger, interest: Vec<PublicKey>, audit_logs: bool) -> Self {
        Syncer {
            net,
            ledger,
            interest,
            audit_logs,
            audits: Mutex::new(HashMap::new()),
        }
    }

    /// Runs until `shutdown`: a round on every trigger, and one with a random peer every
    /// `interval`.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Trigger>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = 0usize;
        loop {
            let trigger = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
                _ = tick.tick() => {
                    let peers = self.net.peer_ids().await;
                    if peers.is_empty() {
                        continue;
                    }
                    turn = turn.wrapping_add(1);
                    Trigger::Peer(peers[turn % peers.len()])
                }
            };
            match trigger {
                Trigger::Peer(peer) => {
                    let started = std::time::Instant::now();
                    // The peer's signed checkpoint from before the round: its log up to there
                    // is what the round must have shown.
                    let checkpoint = if self.audit_logs {
                        Some(self.log_checkpoint(peer).await)
                    } else {
                        None
                    };
                    match self.round(peer).await {
                        Ok(s) => {
                            self.ledger.metrics().sync_rounds.inc();
                            let fresh = match checkpoint {
                                None => true,
                                Some(Ok(cp)) => {
                                    self.audited(peer, &cp, s.differing == 0 && !s.partial)
                                        .await
                                }
                                Some(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "no checkpoint to audit the peer's log against; the round does not count as fresh");
                                    false
                                }
                            };
                            if fresh {
                                self.ledger.mark_fresh();
                            }
                            let level = if s.stored > 0 {
                                tracing::Level::INFO
                            } else {
                                tracing::Level::DEBUG
                            };
                            // Entries came in: peers may hold more that depended on them
                            // (entries pending elsewhere); ask the next peer soon.
                            if s.stored > 0 {
                                tick.reset_after(Duration::from_millis(250));
                            }
                            if level == tracing::Level::INFO {
                                tracing::info!(%peer, differing = s.differing, stored = s.stored, requests = s.requests, ms = started.elapsed().as_millis() as u64, "sync round");
                            } else {
                                tracing::debug!(%peer, differing = s.differing, requests = s.requests, "sync round: in step");
                            }
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "sync round failed"),
                    }
                }
                Trigger::Gap {
                    peer,
                    subject,
                    from_seq,
                } => {
                    // The peer that sent the later entry first, then the others in turn, until
                    // one of them fills the gap.
                    let mut peers = vec![peer];
                    let others = self.net.peer_ids().await.into_iter().filter(|p| *p != peer);
                    peers.extend(others.take(MAX_GAP_PEERS - 1));
                    for p in peers {
                        if self.ledger.head_seq(&subject) >= from_seq {
                            break;
                        }
                        let mut want = BTreeMap::new();
                        want.insert(subject, (self.ledger.head_seq(&subject) + 1, u64::MAX));
                        let mut stats = RoundStats::default();
                        if let Err(e) = self.fetch(p, want, &mut stats).await {
                            tracing::debug!(peer = %p, error = %e, "gap fetch failed");
                        }
                    }
                }
            }
        }
    }

    async fn ask(
        &self,
        peer: PeerId,
        req: Request,
        stats: &mut RoundStats,
    ) -> Result<Response, String> {
        stats.requests += 1;
        match self.net.request(peer, req).await? {
            Response::Error { code, message } => Err(format!("peer refused ({code}): {message}")),
            r => Ok(r),
        }
    }

    /// One full round with `peer`: over every chain, or, for a node with an interest, over the
    /// chains of each of its controllers in turn.
    ///
    /// # Errors
    /// When a request fails or the peer answers out of protocol.
    pub async fn round(&self, peer: PeerId) -> Result<RoundStats, String> {
        if self.ledger.repairing() {
            // Put back what the store lost first; ordinary sync would only be refused meanwhile.
            let stats = self.repair(peer).await?;
            if self.ledger.repairing() {
                return Ok(stats);
            }
        }
        if self.interest.is_empty() {
            return self.round_for(peer, None).await;
        }
        // One controller's failed round does not stop the others'.
        let mut total = RoundStats::default();
        let mut failed = None;
        for c in &self.interest {
            match self.round_for(peer, Some(*c)).await {
                Ok(s) => {
                    total.differing += s.differing;
                    total.stored += s.stored;
                    total.requests += s.requests;
                }
                Err(e) => failed = Some(e),
            }
        }
        self.ledger
            .metrics()
            .sync_lag_subjects
            .set(total.differing as i64);
        total.partial = failed.is_some();
        match failed {
            Some(e) if total.requests == 0 => Err(e),
            _ => Ok(total),
        }
    }

    /// The peer's latest signed checkpoint of its own log, verified with the key in its origin,
    /// which must be the peer's own key.
    async fn log_checkpoint(&self, peer: PeerId) -> Result<Checkpoint, String> {
        let mut stats = RoundStats::default();
        let bytes = match self.ask(peer, Request::LogCheckpoint, &mut stats).await? {
            Response::Checkpoint(b) => b,
            _ => return Err(self.bad(peer, "unexpected answer to log checkpoint")),
        };
        let verified = (|| {
            let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
            // The peer's own log: the verifier of the origin that names the peer's key.
            let key =
                super::witnessing::peer_key(&peer).ok_or("a peer id without an Ed25519 key")?;
            let origin = format!("{}{key}", proto::witness::NODE_ORIGIN_PREFIX);
            let v = proto::witness::log_verifier(&origin).ok_or("a bad origin")?;
            let (cp, _) = Checkpoint::open(text, &v).map_err(|e| e.to_string())?;
            if cp.origin != origin {
                return Err(format!("a checkpoint of another log ({})", cp.origin));
            }
            Ok::<_, String>(cp)
        })();
        verified.map_err(|e| {
            self.net.strike(peer, "bad_checkpoint");
            format!("the peer's checkpoint: {e}")
        })
    }

    /// Audits the peer's log up to `cp` and reports the outcome; true when the audit completed.
    async fn audited(&self, peer: PeerId, cp: &Checkpoint, in_step: bool) -> bool {
        match self.audit(peer, cp, in_step).await {
            Ok(withheld) => {
                if withheld > 0 {
                    self.ledger.metrics().withheld_entries.inc_by(withheld);
                    tracing::warn!(%peer, withheld, size = cp.size, "the peer's sync answers left out entries that its own signed log holds; they came in through the log audit");
                    self.net.strike(peer, "withheld_entries");
                }
                true
            }
            Err(AuditError::Caught(reason)) => {
                self.ledger.metrics().log_audit_failures.inc();
                tracing::warn!(%peer, %reason, "log audit failed: the peer hides or rewrote entries of its signed log; banning it");
                self.net.ban(peer, "log_audit_failed");
                false
            }
            Err(AuditError::Failed(e)) => {
                tracing::debug!(%peer, error = %e, "log audit not completed; the round does not count as fresh");
                false
            }
        }
    }

    /// Reads the peer's log from where the last audit stopped up to `cp`'s size, extends the
    /// Merkle frontier leaf by leaf, and checks the roots: at the size this node last cosigned
    /// for the peer as a witness, and at `cp`'s size. Entries of this node's interest go through
    /// ordinary ingest. Returns how many of them were new here although the round had found the
    /// peer in step (`in_step`): entries its sync answers left out.
    async fn audit(&self, peer: PeerId, cp: &Checkpoint, in_step: bool) -> Result<u64, AuditError> {
        let failed = AuditError::Failed;
        let mut frontier = self
            .audits
            .lock()
            .map_err(|_| failed("audit state poisoned".into()))?
            .get(&peer)
            .cloned()
            .unwrap_or_default();
        if cp.size < frontier.size() {
            return Err(AuditError::Caught(format!(
                "its signed checkpoint went back from size {} to {}",
                frontier.size(),
                cp.size
            )));
        }
        // What this node cosigned for the peer's log, as a witness.
        let cosigned = match self.ledger.store().witness_held(&cp.origin) {
            Ok(note) => note.and_then(|n| crate::witness::held_of(&n)),
            Err(e) => return Err(failed(e.to_string())),
        };
        // Entries past the checkpoint read before the round may have arrived during it: only
        // those below it count as withheld.
        let withheld_below = if in_step { cp.size } else { 0 };
        let mut cp = cp.clone();
        if let Some(c) = &cosigned {
            if c.size > cp.size {
                // This node may have cosigned a newer checkpoint during the round: ask again.
                let fresh = self.log_checkpoint(peer).await.map_err(failed)?;
                if fresh.size < c.size {
                    return Err(AuditError::Caught(format!(
                        "it shows a checkpoint of size {} after this node cosigned size {}",
                        fresh.size, c.size
                    )));
                }
                cp = fresh;
            }
            if c.size == frontier.size() && c.size > 0 && frontier.root() != c.root {
                return Err(AuditError::Caught(format!(
                    "its log differs from the checkpoint of size {} this node cosigned",
                    c.size
                )));
            }
        }
        let mut stats = RoundStats::default();
        let mut withheld = 0u64;
        while frontier.size() < cp.size {
            if stats.requests >= MAX_AUDIT_REQUESTS {
                // Keep the progress (the final root check covers every leaf read so far).
                let audited = frontier.size();
                self.keep_frontier(peer, frontier);
                return Err(failed(format!(
                    "audit budget spent; {audited} of {} positions audited, the next round goes on",
                    cp.size
                )));
            }
            let want = (cp.size - frontier.size()).min(u64::from(MAX_ENTRIES));
            let req = Request::LogEntries {
                start: frontier.size(),
                limit: want as u16,
            };
            let answer = self.ask(peer, req, &mut stats).await;
            let raw = match answer.map_err(failed)? {
                Response::Entries(e) => e,
                _ => return Err(failed(self.bad(peer, "unexpected answer to log entries"))),
            };
            if raw.is_empty() {
                return Err(AuditError::Caught(format!(
                    "its log ends at {} below its signed size {}",
                    frontier.size(),
                    cp.size
                )));
            }
            if raw.len() as u64 > want {
                return Err(failed(self.bad(peer, "more log entries than asked")));
            }
            let mut mine = Vec::new();
            self.ledger
                .metrics()
                .log_audited_entries
                .inc_by(raw.len() as u64);
            for b in raw {
                let e = Entry::from_bytes(&b).map_err(|e| {
                    self.net.strike(peer, "sync_malformed");
                    failed(format!("a log entry that does not decode: {e}"))
                })?;
                frontier.push(proto::merkle::leaf_hash(e.hash().as_bytes()));
                if let Some(c) = &cosigned {
                    if frontier.size() == c.size && frontier.root() != c.root {
                        return Err(AuditError::Caught(format!(
                            "its log differs from the checkpoint of size {} this node cosigned",
                            c.size
                        )));
                    }
                }
                if self.wants(&e) {
                    mine.push((frontier.size() - 1, e));
                }
            }
            let (positions, mine): (Vec<u64>, Vec<Entry>) = mine.into_iter().unzip();
            let stored = self.submit_fetched(peer, mine).await;
            withheld += positions
                .iter()
                .zip(stored)
                .filter(|(p, stored)| *stored && **p < withheld_below)
                .count() as u64;
        }
        if frontier.root() != cp.root {
            return Err(AuditError::Caught(format!(
                "its log does not match its own signed checkpoint of size {}",
                cp.size
            )));
        }
        self.keep_frontier(peer, frontier);
        Ok(withheld)
    }

    /// Keeps how far the peer's log is audited (evicting another peer's state when full).
    fn keep_frontier(&self, peer: PeerId, frontier: Frontier) {
        if let Ok(mut audits) = self.audits.lock() {
            if audits.len() >= MAX_AUDITED_PEERS && !audits.contains_key(&peer) {
                if let Some(other) = audits.keys().next().copied() {
                    audits.remove(&other);
                }
            }
            audits.insert(peer, frontier);
        }
    }

    /// Whether an entry read from a peer's log belongs in this node's store: every entry for a
    /// node without an interest; else one that names a controller of the interest, or extends a
    /// chain held here.
    fn wants(&self, e: &Entry) -> bool {
        if self.interest.is_empty() {
            return true;
        }
        let names = match &e.content.body {
            proto::entry::Body::Grant(c)
            | proto::entry::Body::Withdraw(c)
            | proto::entry::Body::Refuse(c) => self.interest.contains(&c.controller),
            proto::entry::Body::Rotate(_) => false,
        };
        names || self.ledger.head_seq(&e.subject()) > 0
    }

    fn digest_req(filter: Option<PublicKey>, prefix: Vec<u8>) -> Request {
        match filter {
            None => Request::Digest { prefix },
            Some(controller) => Request::DigestFor { controller, prefix },
        }
    }

    fn heads_req(filter: Option<PublicKey>, prefix: Vec<u8>, after: Option<PublicKey>) -> Request {
        match filter {
            None => Request::Heads {
                prefix,
                after,
                limit: MAX_HEADS,
            },
            Some(controller) => Request::HeadsFor {
                controller,
                prefix,
                after,
                limit: MAX_HEADS,
            },
        }
    }

    fn my_digest(&self, filter: Option<PublicKey>, prefix: &[u8]) -> Vec<proto::sync::Bucket> {
        match filter {
            None => self.ledger.digest_children(prefix),
            Some(c) => self.ledger.digest_children_for(&c, prefix),
        }
    }

    async fn round_for(
        &self,
        peer: PeerId,
        filter: Option<PublicKey>,
    ) -> Result<RoundStats, String> {
        let mut stats = RoundStats::default();
        let theirs = match self
            .ask(peer, Self::digest_req(filter, vec![]), &mut stats)
            .await?
        {
            Response::Digest(b) => b,
            _ => return Err(self.bad(peer, "unexpected answer to digest")),
        };
        let mine = self.my_digest(filter, &[]);
        if mine == theirs {
            self.ledger.metrics().sync_lag_subjects.set(0);
            return Ok(stats);
        }
        let total: u64 = theirs.iter().map(|b| u64::from(b.count)).sum();
        let mut lists: Vec<Vec<u8>> = Vec::new();
        if total <= u64::from(MAX_HEADS) {
            lists.push(vec![]);
        } else {
            for i in 0..FANOUT {
                if mine[i] == theirs[i] {
                    continue;
                }
                let b = i as u8;
                if theirs[i].count <= u32::from(MAX_HEADS) {
                    lists.push(vec![b]);
                    continue;
                }
                let leaves = match self
                    .ask(peer, Self::digest_req(filter, vec![b]), &mut stats)
                    .await?
                {
                    Response::Digest(l) => l,
                    _ => return Err(self.bad(peer, "unexpected answer to digest")),
                };
                let my_leaves = self.my_digest(filter, &[b]);
                for (j, (m, t)) in my_leaves.iter().zip(&leaves).enumerate() {
                    if m != t && t.count > 0 {
                        lists.push(vec![b, j as u8]);
                    }
                }
            }
        }
        // Their heads under every differing prefix, compared with ours.
        let mut wants: BTreeMap<PublicKey, (u64, u64)> = BTreeMap::new();
        let mut suspects: Vec<Head> = Vec::new();
        let mut forks: Vec<PublicKey> = Vec::new();
        // At most MAX_ROUND_DIFFS differing subjects per round (memory stays bounded whatever a
        // peer claims); the next round picks up the rest.
        'lists: for prefix in lists {
            let mut after = None;
            loop {
                let req = Self::heads_req(filter, prefix.clone(), after);
                let (heads, more) = match self.ask(peer, req, &mut stats).await? {
                    Response::Heads { heads, more } => (heads, more),
                    _ => return Err(self.bad(peer, "unexpected answer to heads")),
                };
                for h in &heads {
                    if !h.subject.as_bytes().starts_with(&prefix) {
                        return Err(self.bad(peer, "head outside the asked prefix"));
                    }
                    // Pages go strictly forward in key order, or the round ends.
                    if after.is_some_and(|a: PublicKey| h.subject.as_bytes() <= a.as_bytes()) {
                        return Err(self.bad(peer, "heads out of order"));
                    }
                    after = Some(h.subject);
                    self.compare(h, &mut wants, &mut suspects, &mut forks)
                        .map_err(|e| e.to_string())?;
                    if wants.len() + suspects.len() + forks.len() >= MAX_ROUND_DIFFS {
                        break 'lists;
                    }
                }
                if !more || heads.is_empty() {
                    break;
                }
            }
        }
        stats.differing = (wants.len() + suspects.len() + forks.len()) as u64;
        self.ledger
            .metrics()
            .sync_lag_subjects
            .set(stats.differing as i64);
        self.fetch(peer, wants, &mut stats).await?;
        for h in suspects {
            // Same position, another entry: bring the peer's over (a fork, if it is valid).
            let req = Request::Entries {
                wants: vec![Want {
                    subject: h.subject,
                    from_seq: h.seq,
                }],
                limit: 1,
            };
            match self.ask(peer, req, &mut stats).await? {
                Response::Entries(e) => self.ingest(peer, e, &mut stats).await,
                _ => return Err(self.bad(peer, "unexpected answer to entries")),
            }
        }
        for subject in forks {
            match self
                .ask(peer, Request::Fork { subject }, &mut stats)
                .await?
            {
                Response::Fork(Some(bytes)) => match ForkProof::from_bytes(&bytes) {
                    Ok(p) if p.subject() == subject => {
                        let r = self.ledger.submit_many(vec![p.a, p.b]).await;
                        tracing::info!(%peer, %subject, results = ?r.iter().map(|r| r.as_ref().map(|o| o.status).map_err(|_| ())).collect::<Vec<_>>(), "fork proof fetched");
                    }
                    _ => self.net.strike(peer, "bad_fork_proof"),
                },
                Response::Fork(None) => {}
                _ => return Err(self.bad(peer, "unexpected answer to fork")),
            }
        }
        Ok(stats)
    }

    fn bad(&self, peer: PeerId, what: &str) -> String {
        self.net.strike(peer, "sync_protocol");
        what.to_owned()
    }

    fn compare(
        &self,
        h: &Head,
        wants: &mut BTreeMap<PublicKey, (u64, u64)>,
        suspects: &mut Vec<Head>,
        forks: &mut Vec<PublicKey>,
    ) -> Result<(), crate::store::StoreError> {
        use crate::store::Store;
        let store = self.ledger.store();
        match store.subject(&h.subject)? {
            None => {
                wants.insert(h.subject, (1, h.seq));
            }
            Some(r) => {
                if r.head.seq < h.seq {
                    wants.insert(h.subject, (r.head.seq + 1, h.seq));
                } else if store.entry(&h.subject, h.seq)?.map(|e| e.hash()) != Some(h.hash) {
                    suspects.push(*h);
                }
                if h.forked && !r.forked {
                    forks.push(h.subject);
                }
            }
        }
        Ok(())
    }

    /// Fetches the wanted ranges in bounded batches until done or no progress is made.
    async fn fetch(
        &self,
        peer: PeerId,
        mut wants: BTreeMap<PublicKey, (u64, u64)>,
        stats: &mut RoundStats,
    ) -> Result<(), String> {
        while !wants.is_empty() {
            let batch: Vec<Want> = wants
                .iter()
                .take(usize::from(MAX_WANTS))
                .map(|(s, (from, _))| Want {
                    subject: *s,
                    from_seq: *from,
                })
                .collect();
            let req = Request::Entries {
                wants: batch.clone(),
                limit: MAX_ENTRIES,
            };
            let entries = match self.ask(peer, req, stats).await? {
                Response::Entries(e) => e,
                _ => return Err(self.bad(peer, "unexpected answer to entries")),
            };
            if entries.is_empty() {
                break;
            }
            // A full answer stopped at its limit: wants it did not reach are asked again.
            let bytes: usize = entries.iter().map(|e| e.len() + 2).sum();
            let full = entries.len() >= usize::from(MAX_ENTRIES) || bytes + 8192 > MAX_MESSAGE;
            self.ingest(peer, entries, stats).await;
            // What is still missing: subjects of this batch whose head has not reached the
            // peer's. After an answer that was not full, those that made no progress are
            // dropped (the peer has no more for them, or sent entries that do not link).
            let mut progressed = false;
            for w in batch {
                let Some((from, target)) = wants.remove(&w.subject) else {
                    continue;
                };
                let head = self.ledger.head_seq(&w.subject);
                if head + 1 > from {
                    progressed = true;
                    if head < target {
                        wants.insert(w.subject, (head + 1, target));
                    }
                } else if full {
                    wants.insert(w.subject, (from, target));
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Asks `peer` for the entries this node's store lost on disk (see [`crate::journal`]): each
    /// damaged chain from its first lost seq. The ledger keeps only the exact lost entries (by
    /// hash) and applies them in their old log order.
    async fn repair(&self, peer: PeerId) -> Result<RoundStats, String> {
        let mut stats = RoundStats::default();
        // Bounded per round: a peer that lacks them leaves the rest to the next round or peer.
        for _ in 0..64 {
            let wants: Vec<Want> = self
                .ledger
                .repair_wants(usize::from(MAX_WANTS))
                .into_iter()
                .map(|(subject, from_seq)| Want { subject, from_seq })
                .collect();
            if wants.is_empty() {
                break;
            }
            let req = Request::Entries {
                wants,
                limit: MAX_ENTRIES,
            };
            let raw = match self.ask(peer, req, &mut stats).await? {
                Response::Entries(e) => e,
                _ => return Err(self.bad(peer, "unexpected answer to entries")),
            };
            let entries = self.decode_fetched(peer, raw);
            let mut applied = self.ledger.offer_repair(entries).await;
            if applied == 0 {
                // A peer that kept the other branch of a forked subject has the lost entry only
                // inside its fork proof.
                applied = self.repair_from_fork_proofs(peer, &mut stats).await?;
            }
            stats.stored += applied as u64;
            if applied == 0 {
                break;
            }
        }
        Ok(stats)
    }

    /// Offers both entries of the peer's fork proof of each damaged subject to the repair.
    async fn repair_from_fork_proofs(
        &self,
        peer: PeerId,
        stats: &mut RoundStats,
    ) -> Result<usize, String> {
        let mut entries = Vec::new();
        for (subject, _) in self.ledger.repair_wants(8) {
            match self.ask(peer, Request::Fork { subject }, stats).await? {
                Response::Fork(Some(bytes)) => match ForkProof::from_bytes(&bytes) {
                    Ok(p) if p.subject() == subject => entries.extend([p.a, p.b]),
                    _ => self.net.strike(peer, "bad_fork_proof"),
                },
                Response::Fork(None) => {}
                _ => return Err(self.bad(peer, "unexpected answer to fork")),
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        Ok(self.ledger.offer_repair(entries).await)
    }

    /// Decodes entries a peer sent; each one that does not decode is a strike against it.
    fn decode_fetched(&self, peer: PeerId, raw: Vec<Vec<u8>>) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(raw.len());
        for b in raw {
            match Entry::from_bytes(&b) {
                Ok(e) => entries.push(e),
                Err(_) => self.net.strike(peer, "sync_malformed"),
            }
        }
        entries
    }

    /// Decodes and submits fetched entries; invalid ones are strikes against the peer.
    async fn ingest(&self, peer: PeerId, raw: Vec<Vec<u8>>, stats: &mut RoundStats) {
        let entries = self.decode_fetched(peer, raw);
        let stored = self.submit_fetched(peer, entries).await;
        stats.stored += stored.into_iter().filter(|s| *s).count() as u64;
    }

    /// Submits entries fetched from a peer; says of each whether it was stored (new here).
    /// Invalid ones are strikes against the peer.
    async fn submit_fetched(&self, peer: PeerId, entries: Vec<Entry>) -> Vec<bool> {
        let results = self.ledger.submit_many(entries).await;
        results
            .into_iter()
            .map(|r| match r {
                Ok(o) if o.status == SubmitStatus::Stored => {
                    self.ledger.metrics().sync_entries.inc();
                    true
                }
                Err(IngestError::Invalid(_)) => {
                    self.net.strike(peer, "sync_invalid_entry");
                    false
                }
                // Duplicates, pending entries, forks, the other branch of a forked subject, and
                // this node's own trouble are not the peer's fault.
                _ => false,
            })
            .collect()
    }
}

/// The verdict on one gossip message.
pub struct GossipVerdict {
    /// Forward, drop, or drop and penalise.
    pub acceptance: MessageAcceptance,
    /// The strike reason for a rejection.
    pub reason: Option<&'static str>,
    /// Gaps to fetch (subject, first missing seq).
    pub gaps: Vec<(PublicKey, u64)>,
    /// A fork proof to announce.
    pub fork: Option<Vec<u8>>,
    /// With `relay`: the entries stored here, with the controllers their chains name, to
    /// announce on those controllers' topics.
    pub relay: Vec<(Vec<u8>, Vec<PublicKey>)>,
}

/// Decodes and submits a gossip message; the answer says whether to forward it.
///
/// An entry batch is forwarded when every entry in it is valid (stored, duplicate, pending, or
/// the second entry of a fork); one malformed or invalid entry rejects the whole message, since
/// the node that announced it had to verify each one. Entries that wait for a predecessor are
/// gaps to fetch from the sender. With `relay` (a full node, for a message of the all-entries
/// topic), the stored entries are returned for announcing on their controllers' topics.
pub async fn validate_gossip(
    ledger: &Ledger,
    topic: &str,
    data: &[u8],
    relay: bool,
) -> GossipVerdict {
    let verdict = |acceptance, reason| GossipVerdict {
        acceptance,
        reason,
        gaps: Vec::new(),
        fork: None,
        relay: Vec::new(),
    };
    if topic != TOPIC_ENTRIES {
        let proof = match ForkProof::from_bytes(data) {
            Ok(p) => p,
            Err(_) => return verdict(MessageAcceptance::Reject, Some("gossip_bad_fork_proof")),
        };
        let _ = ledger.submit_many(vec![proof.a, proof.b]).await;
        return verdict(MessageAcceptance::Accept, None);
    }
    let Ok(raw) = proto::sync::decode_batch(data) else {
        return verdict(MessageAcceptance::Reject, Some("gossip_malformed"));
    };
    let mut entries = Vec::with_capacity(raw.len());
    for b in &raw {
        match Entry::from_bytes(b) {
            Ok(e) => entries.push(e),
            Err(_) => return verdict(MessageAcceptance::Reject, Some("gossip_malformed")),
        }
    }
    let meta: Vec<(PublicKey, u64)> = entries
        .iter()
        .map(|e| (e.subject(), e.content.issued_at))
        .collect();
    let mut v = verdict(MessageAcceptance::Accept, None);
    let mut ignored = false;
    let mut invalid = false;
    let now = ledger.clock().now_ms();
    let results = ledger.submit_many(entries).await;
    for ((r, (subject, issued_at)), bytes) in results.into_iter().zip(meta).zip(raw) {
        match r {
            Ok(o) => match o.status {
                SubmitStatus::Stored => {
                    if relay {
                        let (_, controllers) = ledger.head_and_controllers(&subject);
                        if !controllers.is_empty() {
                            v.relay.push((bytes.to_vec(), controllers));
                        }
                    }
                    let lag = now.saturating_sub(issued_at);
                    ledger
                        .metrics()
                        .replication_lag_seconds
                        .observe(lag as f64 / 1000.0);
                }
                SubmitStatus::Duplicate => {}
                SubmitStatus::Pending => {
                    if !v.gaps.iter().any(|(s, _)| *s == subject) {
                        v.gaps.push((subject, ledger.head_seq(&subject) + 1));
                    }
                }
            },
            Err(IngestError::Fork(p)) => v.fork = Some(p.to_bytes()),
            // The message is rejected, but the batch's other entries were judged on their own:
            // their gaps, relays and fork proofs still count.
            Err(IngestError::Invalid(_)) => invalid = true,
            // The other branch of a forked subject, a read-only node or a full pending area:
            // not the sender's fault.
            Err(_) => ignored = true,
        }
    }
    if invalid {
        v.acceptance = MessageAcceptance::Reject;
        v.reason = Some("gossip_invalid_entry");
    } else if ignored && v.fork.is_none() {
        v.acceptance = MessageAcceptance::Ignore;
    }
    v
}

/// Answers one sync request from the store (blocking reads), or as a witness.
pub fn serve(server: &Server, req: Request) -> Response {
    let ledger = &server.ledger;
    let internal = |e: crate::store::StoreError| Response::Error {
        code: 3,
        message: e.to_string(),
    };
    // Entries go to a peer only once they are durable here (see `SledStore::ensure_durable`).
    let durable_entries = |out: Vec<Vec<u8>>| match ledger.store().ensure_durable() {
        Ok(()) => Response::Entries(out),
        Err(e) => internal(e),
    };
    let resp = match req {
        Request::Digest { prefix } => {
            let mut d = ledger.digest_children(&prefix);
            if let Some(w) = &server.withhold {
                hide_in_digest(w, ledger, &prefix, &mut d);
            }
            return Response::Digest(d);
        }
        Request::Heads {
            prefix,
            after,
            limit,
        } => match ledger.heads(&prefix, after.as_ref(), usize::from(limit), None) {
            Ok((heads, more)) => Response::Heads { heads, more },
            Err(e) => internal(e),
        },
        Request::DigestFor { controller, prefix } => {
            let mut d = ledger.digest_children_for(&controller, &prefix);
            if let Some(w) = &server.withhold {
                if ledger
                    .head_and_controllers(&w.subject)
                    .1
                    .contains(&controller)
                {
                    hide_in_digest(w, ledger, &prefix, &mut d);
                }
            }
            return Response::Digest(d);
        }
        Request::HeadsFor {
            controller,
            prefix,
            after,
            limit,
        } => match ledger.heads(
            &prefix,
            after.as_ref(),
            usize::from(limit),
            Some(&controller),
        ) {
            Ok((heads, more)) => Response::Heads { heads, more },
            Err(e) => internal(e),
        },
        // A repairing log is shorter than the checkpoints it signed before: an auditor would
        // take a smaller one for a rollback.
        Request::LogCheckpoint if ledger.repairing() => Response::Error {
            code: 3,
            message: "repairing its store; no checkpoint until the repair is done".into(),
        },
        Request::LogCheckpoint => match server.checkpoints.latest_sized(ledger.store()) {
            Ok((_, note)) => Response::Checkpoint(note.into_bytes()),
            Err(e) => Response::Error {
                code: 3,
                message: e.to_string(),
            },
        },
        Request::LogEntries { start, limit } => {
            let hide_log = server.withhold.filter(|w| w.log);
            let page = match ledger.store().log_entries(start, usize::from(limit)) {
                Ok(p) => p,
                Err(e) => return internal(e),
            };
            let mut out = Vec::new();
            let mut bytes = 16usize;
            for (_, _, e) in page {
                if hide_log.is_some_and(|w| w.hides(&e)) {
                    continue;
                }
                let b = e.to_bytes();
                bytes += b.len() + 2;
                if bytes > MAX_MESSAGE {
                    break;
                }
                out.push(b);
            }
            // Not through `withhold_from`: the served log hides entries only with `log`.
            return durable_entries(out);
        }
        Request::Entries { wants, limit } => {
            let mut out = Vec::new();
            let mut bytes = 16usize;
            let limit = usize::from(limit);
            'wants: for w in wants {
                let left = limit - out.len();
                let chain = match ledger.store().chain(&w.subject, w.from_seq, left) {
                    Ok(c) => c,
                    Err(e) => return internal(e),
                };
                for e in chain {
                    let b = e.to_bytes();
                    bytes += b.len() + 2;
                    if bytes > MAX_MESSAGE {
                        break 'wants;
                    }
                    out.push(b);
                }
                if out.len() >= limit {
                    break;
                }
            }
            durable_entries(out)
        }
        Request::Fork { subject } => match ledger.store().fork(&subject) {
            Ok(p) => Response::Fork(p.map(|p| p.to_bytes())),
            Err(e) => internal(e),
        },
        Request::AddCheckpoint { body } => match server.witness.add_checkpoint(&body) {
            Ok(lines) => Response::Witness {
                status: 200,
                body: lines.into_bytes(),
            },
            Err(Ok(e)) => Response::Witness {
                status: e.status(),
                body: witness_error_body(&e).into_bytes(),
            },
            Err(Err(e)) => internal(e),
        },
    };
    match &server.withhold {
        Some(w) => withhold_from(w, ledger, resp),
        None => resp,
    }
}

/// The adversary's edit of an answer (see [`Withhold`]): the hidden entries leave `Entries`
/// answers, and the subject's head in `Heads` and `Digest` answers is the one before them.
fn withhold_from(w: &Withhold, ledger: &Ledger, resp: Response) -> Response {
    match resp {
        Response::Entries(list) => Response::Entries(
            list.into_iter()
                .filter(|b| !Entry::from_bytes(b).is_ok_and(|e| w.hides(&e)))
                .collect(),
        ),
        Response::Heads { heads, more } => {
            let shown = w.heads(ledger).map(|(_, shown)| shown);
            let heads = heads
                .into_iter()
                .filter_map(|h| match &shown {
                    Some(s) if h.subject == w.subject => *s,
                    _ => Some(h),
                })
                .collect();
            Response::Heads { heads, more }
        }
        other => other,
    }
}

/// Replaces the hidden subject's head in a digest answer of `prefix` (0 or 1 bytes) by the head
/// shown instead (for `DigestFor` answers, only those of the controllers the chain names).
fn hide_in_digest(w: &Withhold, ledger: &Ledger, prefix: &[u8], d: &mut [proto::sync::Bucket]) {
    let key = w.subject.as_bytes();
    let i = match prefix {
        [] => usize::from(key[0]),
        [b] if *b == key[0] => usize::from(key[1]),
        _ => return,
    };
    let Some((real, shown)) = w.heads(ledger) else {
        return;
    };
    if let Some(b) = d.get_mut(i) {
        b.toggle(&proto::sync::head_item(&real), false);
        if let Some(s) = shown {
            b.toggle(&proto::sync::head_item(&s), true);
        }
    }
}

/// The body C2SP tlog-witness gives a refusal: the held size for a size conflict, else a reason.
pub fn witness_error_body(e: &proto::witness::WitnessError) -> String {
    match e {
        proto::witness::WitnessError::SizeConflict(n) => format!("{n}\n"),
        other => format!("{other}\n"),
    }
}
