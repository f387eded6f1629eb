//! Sync: what gossip misses (a node that was offline, a gap behind a pending entry, a new node).
//!
//! A round with a peer compares the head digests top-down (`proto::sync`): the 256 first-byte
//! summaries, then the leaves of differing large buckets, then the heads of differing small ones;
//! it then fetches the entries this node lacks in bounded batches and hands them to the ledger,
//! which verifies each before storing. A head at the same seq with another hash, or a peer that
//! holds a fork proof this node lacks, brings the peer's entry or proof over, so forks spread.
//!
//! This module also validates gossip messages and serves the peers' sync requests.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use proto::api::SubmitStatus;
use proto::chain::ForkProof;
use proto::entry::Entry;
use proto::keys::PublicKey;
use proto::sync::{
    Head, Request, Response, Want, FANOUT, MAX_ENTRIES, MAX_HEADS, MAX_MESSAGE, MAX_WANTS,
    TOPIC_ENTRIES,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::NetHandle;
use crate::ledger::{IngestError, Ledger};

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
}

/// Runs sync rounds, one at a time.
pub struct Syncer {
    net: NetHandle,
    ledger: Ledger,
    /// The controllers whose chains this node replicates (empty: every chain).
    interest: Vec<PublicKey>,
}

impl Syncer {
    /// A syncer over the event loop's handle.
    pub fn new(net: NetHandle, ledger: Ledger, interest: Vec<PublicKey>) -> Self {
        Syncer {
            net,
            ledger,
            interest,
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
                    match self.round(peer).await {
                        Ok(s) => {
                            self.ledger.metrics().sync_rounds.inc();
                            self.ledger.mark_fresh();
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
        match failed {
            Some(e) if total.requests == 0 => Err(e),
            _ => Ok(total),
        }
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
        for r in self.ledger.submit_many(entries).await {
            match r {
                Ok(o) if o.status == SubmitStatus::Stored => {
                    stats.stored += 1;
                    self.ledger.metrics().sync_entries.inc();
                }
                Err(IngestError::Invalid(_)) => self.net.strike(peer, "sync_invalid_entry"),
                // Duplicates, pending entries, forks, the other branch of a forked subject, and
                // this node's own trouble are not the peer's fault.
                _ => {}
            }
        }
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
            Err(IngestError::Invalid(_)) => {
                return GossipVerdict {
                    acceptance: MessageAcceptance::Reject,
                    reason: Some("gossip_invalid_entry"),
                    ..v
                };
            }
            // The other branch of a forked subject, a read-only node or a full pending area:
            // not the sender's fault.
            Err(_) => ignored = true,
        }
    }
    if ignored && v.fork.is_none() {
        v.acceptance = MessageAcceptance::Ignore;
    }
    v
}

/// Answers one sync request from the store (blocking reads), or as a witness.
pub fn serve(ledger: &Ledger, witness: &crate::witness::Witness, req: Request) -> Response {
    use crate::store::Store;
    let internal = |e: crate::store::StoreError| Response::Error {
        code: 3,
        message: e.to_string(),
    };
    match req {
        Request::Digest { prefix } => Response::Digest(ledger.digest_children(&prefix)),
        Request::Heads {
            prefix,
            after,
            limit,
        } => match ledger.heads(&prefix, after.as_ref(), usize::from(limit), None) {
            Ok((heads, more)) => Response::Heads { heads, more },
            Err(e) => internal(e),
        },
        Request::DigestFor { controller, prefix } => {
            Response::Digest(ledger.digest_children_for(&controller, &prefix))
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
            Response::Entries(out)
        }
        Request::Fork { subject } => match ledger.store().fork(&subject) {
            Ok(p) => Response::Fork(p.map(|p| p.to_bytes())),
            Err(e) => internal(e),
        },
        Request::AddCheckpoint { body } => match witness.add_checkpoint(&body) {
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
    }
}

/// The body C2SP tlog-witness gives a refusal: the held size for a size conflict, else a reason.
pub fn witness_error_body(e: &proto::witness::WitnessError) -> String {
    match e {
        proto::witness::WitnessError::SizeConflict(n) => format!("{n}\n"),
        other => format!("{other}\n"),
    }
}
