//! Replication over libp2p: one event loop owns the swarm and is driven by commands over a
//! channel; the HTTP API and the syncer talk to it through a cloneable [`NetHandle`].
//!
//! The swarm speaks TCP + Noise + Yamux and QUIC, with identify, ping, Kademlia, mDNS (optional),
//! gossipsub (new entries and fork proofs, validated before they are forwarded) and the sync
//! request-response protocol (`proto::sync`). The libp2p identity is the node key.
//!
//! Misbehaviour: every invalid gossip message or sync answer is a strike against the peer that
//! sent it (and gossipsub's peer score falls); at [`BAN_STRIKES`] the peer is disconnected and
//! refused for [`BAN_TIME`].

pub mod behaviour;
pub mod codec;
pub mod sync;
pub mod witnessing;

pub use behaviour::{Behaviour, BehaviourEvent};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, mdns, noise, tcp, yamux, Multiaddr, PeerId};
use proto::api::PeerInfo;
use proto::sync::{
    Request, Response, TOPIC_CHECKPOINTS, TOPIC_ENTRIES, TOPIC_FORKS, TOPIC_SPLIT_VIEWS,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;

/// Strikes (invalid messages) after which a peer is banned.
pub const BAN_STRIKES: u32 = 10;
/// Strikes count within this window; older ones are forgiven.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(300);
/// How long a banned peer is refused.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// Most gossip messages being validated at once; more are ignored (sync fetches them later).
pub const MAX_VALIDATING: usize = 8192;
/// Most inbound sync requests served at once; more are answered "busy".
pub const MAX_SERVING: usize = 8;
/// How long a new entry may wait to be announced with others in one gossip message.
pub const BATCH_DELAY: Duration = Duration::from_millis(5);
/// How long a sync request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// What the p2p layer is configured with.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    /// Listen multiaddrs (TCP and/or QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (and to seed Kademlia with, when they name their peer id).
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery on the LAN.
    pub mdns: bool,
    /// Time between background sync rounds with a peer.
    pub sync_interval: Duration,
    /// Replicate only the chains that name one of these controllers (empty: every chain).
    pub interest: Vec<proto::PublicKey>,
    /// Audit each peer's log after a sync round, and count only audited rounds as fresh (on
    /// with a freshness bound).
    pub audit_logs: bool,
    /// Test-only adversary behaviour (see [`sync::Withhold`]).
    pub withhold: Option<sync::Withhold>,
}

/// Builds a swarm on TCP + Noise + Yamux and QUIC with the given identity.
///
/// # Errors
/// When a transport or the behaviour cannot be built.
pub fn build_swarm(
    key: libp2p::identity::Keypair,
    mdns_on: bool,
    interest: &[proto::PublicKey],
) -> anyhow::Result<libp2p::Swarm<Behaviour>> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_dns()?
        .with_behaviour(|key| Behaviour::new(key, mdns_on, interest))
        .map_err(|e| anyhow::anyhow!("building the p2p behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build())
}

/// The libp2p identity of a node key.
///
/// # Errors
/// Never for a valid seed.
pub fn keypair(key: &proto::SecretKey) -> anyhow::Result<libp2p::identity::Keypair> {
    let mut seed = *key.seed();
    let kp = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)?;
    Ok(kp)
}

/// A command to the event loop.
enum Command {
    Publish {
        topic: &'static str,
        data: Vec<u8>,
    },
    Announce {
        data: Vec<u8>,
        controllers: Vec<proto::PublicKey>,
        /// Also on the all-entries topic.
        all: bool,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    PeerIds(oneshot::Sender<Vec<PeerId>>),
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Block {
        peer: PeerId,
        block: bool,
        reply: oneshot::Sender<()>,
    },
    Gap {
        subject: proto::PublicKey,
        from_seq: u64,
    },
    Request {
        peer: PeerId,
        req: Request,
        reply: oneshot::Sender<Result<Response, String>>,
    },
    Respond {
        channel: ResponseChannel<Response>,
        resp: Response,
    },
    Validated {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
        reason: Option<&'static str>,
    },
    Strike {
        peer: PeerId,
        reason: &'static str,
    },
    Ban {
        peer: PeerId,
        reason: &'static str,
    },
}

/// A cloneable handle to the event loop.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen: Arc<Mutex<Vec<Multiaddr>>>,
}

impl NetHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on (with `/p2p/<peer id>`).
    pub fn listen_addrs(&self) -> Vec<String> {
        let l = match self.listen.lock() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        };
        l.iter()
            .map(|a| format!("{a}/p2p/{}", self.peer_id))
            .collect()
    }

    /// Announces an entry this node stored (canonical bytes) on the all-entries topic and on the
    /// topics of the controllers its chain names. Dropped when the loop is overloaded: peers then
    /// fetch it by sync.
    pub fn publish_entry(&self, data: Vec<u8>, controllers: Vec<proto::PublicKey>) {
        let _ = self.tx.try_send(Command::Announce {
            data,
            controllers,
            all: true,
        });
    }

    /// Announces a fork proof (canonical binary form). Proofs larger than a gossip message are
    /// left to sync.
    pub fn publish_fork(&self, data: Vec<u8>) {
        if data.len() > proto::sync::MAX_GOSSIP {
            return;
        }
        let _ = self.tx.try_send(Command::Publish {
            topic: TOPIC_FORKS,
            data,
        });
    }

    /// Announces this node's checkpoint note (with its cosignatures).
    pub fn publish_checkpoint(&self, note: String) {
        if note.len() > proto::sync::MAX_GOSSIP {
            return;
        }
        let _ = self.tx.try_send(Command::Publish {
            topic: TOPIC_CHECKPOINTS,
            data: note.into_bytes(),
        });
    }

    /// Announces a split-view proof (JSON).
    pub fn publish_split_view(&self, json: Vec<u8>) {
        if json.len() > proto::sync::MAX_GOSSIP {
            return;
        }
        let _ = self.tx.try_send(Command::Publish {
            topic: TOPIC_SPLIT_VIEWS,
            data: json,
        });
    }

    /// The connected peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Peers(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The connected peers' ids, in id order.
    pub async fn peer_ids(&self) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::PeerIds(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Dials a peer.
    ///
    /// # Errors
    /// When the dial cannot start.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Dial { addr, reply })
            .await
            .map_err(|_| "the p2p loop has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the p2p loop has stopped".to_owned())?
    }

    /// Blocks a peer (disconnects it and refuses it until unblocked) or unblocks it (and dials
    /// it again through the addresses the node knows): an operator's way to cut or restore a link.
    pub async fn block(&self, peer: PeerId, block: bool) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Block { peer, block, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Sends a sync request and waits for the answer.
    ///
    /// # Errors
    /// Timeouts, dial failures, undecodable answers.
    pub async fn request(&self, peer: PeerId, req: Request) -> Result<Response, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request { peer, req, reply })
            .await
            .map_err(|_| "the p2p loop has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the p2p loop has stopped".to_owned())?
    }

    /// Asks peers for a subject's entries from `from_seq` on (a submission here is pending).
    pub fn fetch_gap(&self, subject: proto::PublicKey, from_seq: u64) {
        let _ = self.tx.try_send(Command::Gap { subject, from_seq });
    }

    /// Counts a strike against a peer that sent invalid data.
    pub fn strike(&self, peer: PeerId, reason: &'static str) {
        let _ = self.tx.try_send(Command::Strike { peer, reason });
    }

    /// Bans a peer at once (proof of misbehaviour, such as a log that contradicts its own signed
    /// checkpoint).
    pub fn ban(&self, peer: PeerId, reason: &'static str) {
        let _ = self.tx.try_send(Command::Ban { peer, reason });
    }

    /// Hands an answer to the loop (waiting for room in the channel: an answer is never dropped
    /// while the loop runs).
    async fn respond(&self, channel: ResponseChannel<Response>, resp: Response) {
        let _ = self.tx.send(Command::Respond { channel, resp }).await;
    }
}

struct PeerState {
    addrs: Vec<Multiaddr>,
    agent: Option<String>,
    since: Instant,
    connections: u32,
}

/// The event loop's state.
struct EventLoop {
    swarm: libp2p::Swarm<Behaviour>,
    rx: mpsc::Receiver<Command>,
    handle: NetHandle,
    ledger: Ledger,
    witness: Arc<crate::witness::Witness>,
    /// What answers the peers' sync requests.
    server: sync::Server,
    peers: HashMap<PeerId, PeerState>,
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
    /// Strikes per peer, with when the count started; counts older than [`STRIKE_WINDOW`] restart.
    strikes: HashMap<PeerId, (u32, Instant)>,
    banned: HashMap<PeerId, Instant>,
    /// Peers the operator blocked (`POST /v1/peers/{id}/block`).
    blocked: HashSet<PeerId>,
    validating: Arc<Semaphore>,
    serving: Arc<Semaphore>,
    sync_tx: mpsc::Sender<sync::Trigger>,
    bootstrap: Vec<Multiaddr>,
    /// Entries waiting to be announced together, per topic (one gossip message per batch).
    outbox: HashMap<String, Outbox>,
    /// When Kademlia last looked for more peers.
    last_kad_bootstrap: Option<Instant>,
    /// The hashes of the all-entries and fork topics (compared with every message's topic).
    topic_entries: gossipsub::TopicHash,
    topic_forks: gossipsub::TopicHash,
    topic_checkpoints: gossipsub::TopicHash,
    topic_split_views: gossipsub::TopicHash,
}

/// One topic's entries waiting to be announced.
#[derive(Default)]
struct Outbox {
    entries: Vec<Vec<u8>>,
    bytes: usize,
}

/// Starts the p2p layer: binds the listen addresses, dials the bootstrap peers, and runs the
/// event loop and the syncer until `shutdown`. Prints `consent-node p2p listening on ADDR` on
/// stdout for every listen address.
///
/// # Errors
/// When the swarm cannot be built or an address cannot be listened on.
pub fn start(
    config: &P2pConfig,
    key: &proto::SecretKey,
    ledger: Ledger,
    witness: Arc<crate::witness::Witness>,
    checkpoints: Arc<crate::checkpoint::Checkpointer>,
    shutdown: CancellationToken,
) -> anyhow::Result<(NetHandle, tokio::task::JoinHandle<()>)> {
    use anyhow::Context;
    let kp = keypair(key)?;
    let mut swarm = build_swarm(kp, config.mdns, &config.interest)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }
    let peer_id = *swarm.local_peer_id();
    let (tx, rx) = mpsc::channel(16_384);
    let handle = NetHandle {
        tx,
        peer_id,
        listen: Arc::new(Mutex::new(Vec::new())),
    };
    let (sync_tx, sync_rx) = mpsc::channel(1024);
    let syncer = sync::Syncer::new(
        handle.clone(),
        ledger.clone(),
        config.interest.clone(),
        config.audit_logs,
    );
    if let Some(w) = &config.withhold {
        tracing::warn!(subject = %w.subject, from_seq = w.from_seq, log = w.log, "ADVERSARY MODE (tests only): hiding entries from peers");
    }
    let server = sync::Server {
        ledger: ledger.clone(),
        witness: witness.clone(),
        checkpoints: checkpoints.clone(),
        withhold: config.withhold,
    };
    tokio::spawn(syncer.run(sync_rx, config.sync_interval, shutdown.clone()));
    tokio::spawn(witnessing::run(
        handle.clone(),
        ledger.clone(),
        witness.clone(),
        checkpoints,
        config.sync_interval,
        shutdown.clone(),
    ));
    let mut el = EventLoop {
        swarm,
        rx,
        handle: handle.clone(),
        ledger,
        witness,
        server,
        peers: HashMap::new(),
        requests: HashMap::new(),
        strikes: HashMap::new(),
        banned: HashMap::new(),
        blocked: HashSet::new(),
        validating: Arc::new(Semaphore::new(MAX_VALIDATING)),
        serving: Arc::new(Semaphore::new(MAX_SERVING)),
        sync_tx,
        bootstrap: config.bootstrap.clone(),
        outbox: HashMap::new(),
        last_kad_bootstrap: None,
        topic_entries: IdentTopic::new(TOPIC_ENTRIES).hash(),
        topic_forks: IdentTopic::new(TOPIC_FORKS).hash(),
        topic_checkpoints: IdentTopic::new(TOPIC_CHECKPOINTS).hash(),
        topic_split_views: IdentTopic::new(TOPIC_SPLIT_VIEWS).hash(),
    };
    el.dial_bootstrap();
    let task = tokio::spawn(async move { el.run(shutdown).await });
    Ok((handle, task))
}

impl EventLoop {
    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut redial = tokio::time::interval(Duration::from_secs(10));
        redial.tick().await;
        let mut kad_bootstrap = tokio::time::interval(Duration::from_secs(60));
        let mut announce = tokio::time::interval(BATCH_DELAY);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = announce.tick(), if !self.outbox.is_empty() => self.announce(),
                Some(cmd) = self.rx.recv() => self.command(cmd),
                ev = self.swarm.select_next_some() => self.event(ev),
                _ = redial.tick() => {
                    // Keep trying the bootstrap peers while none is connected.
                    if self.peers.is_empty() && !self.bootstrap.is_empty() {
                        self.dial_bootstrap();
                    }
                }
                _ = kad_bootstrap.tick() => {
                    if !self.peers.is_empty() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
        tracing::info!("p2p event loop stopped");
    }

    /// Publishes every outbox as one gossip batch per topic.
    fn announce(&mut self) {
        for (topic, o) in std::mem::take(&mut self.outbox) {
            let batch = proto::sync::encode_batch(o.entries.iter().map(Vec::as_slice));
            self.publish(&topic, batch);
        }
    }

    /// Adds an entry to one topic's outbox, announcing first when the batch would be too big.
    fn enqueue(&mut self, topic: String, data: Vec<u8>) {
        if let Some(w) = &self.server.withhold {
            if proto::Entry::from_bytes(&data).is_ok_and(|e| w.hides(&e)) {
                return;
            }
        }
        let o = self.outbox.entry(topic.clone()).or_default();
        if o.bytes + data.len() + 2 > proto::sync::MAX_GOSSIP
            || o.entries.len() >= proto::sync::MAX_BATCH
        {
            let o = std::mem::take(o);
            let batch = proto::sync::encode_batch(o.entries.iter().map(Vec::as_slice));
            self.publish(&topic, batch);
        }
        let o = self.outbox.entry(topic).or_default();
        o.bytes += data.len() + 2;
        o.entries.push(data);
    }

    fn publish(&mut self, topic: &str, data: Vec<u8>) {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic), data)
        {
            Ok(_) => {
                self.ledger.metrics().gossip_out.inc();
            }
            Err(e) => {
                tracing::debug!(error = %e, topic, "not published (sync covers it)");
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Announce {
                data,
                controllers,
                all,
            } => {
                for c in &controllers {
                    self.enqueue(proto::sync::controller_topic(c), data.clone());
                }
                if all {
                    self.enqueue(TOPIC_ENTRIES.to_owned(), data);
                }
            }
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Peers(reply) => {
                let gs = &self.swarm.behaviour().gossipsub;
                let mut v: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, p)| PeerInfo {
                        peer_id: id.to_string(),
                        addresses: p.addrs.iter().map(ToString::to_string).collect(),
                        agent: p.agent.clone(),
                        connected_secs: p.since.elapsed().as_secs(),
                        score: gs.peer_score(id),
                        strikes: self.strikes.get(id).map_or(0, |s| s.0),
                    })
                    .collect();
                v.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(v);
            }
            Command::PeerIds(reply) => {
                let mut v: Vec<PeerId> = self.peers.keys().copied().collect();
                v.sort();
                let _ = reply.send(v);
            }
            Command::Dial { addr, reply } => {
                let r = self.swarm.dial(addr).map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Command::Gap { subject, from_seq } => {
                if let Some(peer) = self.peers.keys().next().copied() {
                    let _ = self.sync_tx.try_send(sync::Trigger::Gap {
                        peer,
                        subject,
                        from_seq,
                    });
                }
            }
            Command::Block { peer, block, reply } => {
                if block {
                    tracing::info!(%peer, "peer blocked by the operator");
                    self.blocked.insert(peer);
                    self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else if self.blocked.remove(&peer) {
                    tracing::info!(%peer, "peer unblocked by the operator");
                    if !self.banned.contains_key(&peer) {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .remove_blacklisted_peer(&peer);
                    }
                    if let Err(e) = self.swarm.dial(peer) {
                        tracing::debug!(%peer, error = %e, "cannot redial the unblocked peer");
                    }
                }
                let _ = reply.send(());
            }
            Command::Request { peer, req, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, codec::SyncRequest::Valid(req));
                self.requests.insert(id, reply);
            }
            Command::Respond { channel, resp } => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
            }
            Command::Validated {
                id,
                source,
                acceptance,
                reason,
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
                if let Some(reason) = reason {
                    self.strike(source, reason);
                }
            }
            Command::Strike { peer, reason } => self.strike(peer, reason),
            Command::Ban { peer, reason } => self.ban(peer, reason),
        }
    }

    /// Bans a peer at once, for proof of misbehaviour (not a count of strikes).
    fn ban(&mut self, peer: PeerId, reason: &'static str) {
        self.ledger.metrics().p2p_rejected(reason);
        self.ban_now(peer, reason, 0);
    }

    /// Bans and disconnects a peer unless it is banned already.
    fn ban_now(&mut self, peer: PeerId, reason: &'static str, strikes: u32) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.banned.entry(peer) {
            v.insert(Instant::now());
            tracing::warn!(%peer, strikes, reason, "banning peer for misbehaviour");
            self.ledger.metrics().peers_banned.inc();
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn strike(&mut self, peer: PeerId, reason: &'static str) {
        self.ledger.metrics().p2p_rejected(reason);
        let now = Instant::now();
        let e = self.strikes.entry(peer).or_insert((0, now));
        if now.duration_since(e.1) > STRIKE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        let n = e.0;
        tracing::debug!(%peer, reason, strikes = n, "peer sent invalid data");
        // Gossipsub stops listening to a peer below the graylist threshold, so its strikes
        // would stop too: such a peer is banned at once.
        let graylisted = self
            .swarm
            .behaviour()
            .gossipsub
            .peer_score(&peer)
            .is_some_and(|s| s < behaviour::GRAYLIST_THRESHOLD);
        if n >= BAN_STRIKES || graylisted {
            self.ban_now(peer, reason, n);
        }
    }

    fn is_banned(&mut self, peer: &PeerId) -> bool {
        if self.blocked.contains(peer) {
            return true;
        }
        match self.banned.get(peer) {
            Some(t) if t.elapsed() < BAN_TIME => true,
            Some(_) => {
                self.banned.remove(peer);
                self.strikes.remove(peer);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .remove_blacklisted_peer(peer);
                false
            }
            None => false,
        }
    }

    fn event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!(
                    "consent-node p2p listening on {address}/p2p/{}",
                    self.handle.peer_id
                );
                tracing::info!(%address, "p2p listening");
                match self.handle.listen.lock() {
                    Ok(mut l) => l.push(address),
                    Err(p) => p.into_inner().push(address),
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if self.is_banned(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let addr = endpoint.get_remote_address().clone();
                let p = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    addrs: Vec::new(),
                    agent: None,
                    since: Instant::now(),
                    connections: 0,
                });
                p.connections += 1;
                if !p.addrs.contains(&addr) {
                    p.addrs.push(addr);
                }
                let first = p.connections == 1;
                self.ledger.metrics().peers.set(self.peers.len() as i64);
                if first {
                    tracing::info!(peer = %peer_id, "peer connected");
                    let _ = self.sync_tx.try_send(sync::Trigger::Peer(peer_id));
                    // A new peer knows others: ask Kademlia for them (at most every 5 s).
                    if self
                        .last_kad_bootstrap
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                    {
                        self.last_kad_bootstrap = Some(Instant::now());
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 && self.peers.remove(&peer_id).is_some() {
                    tracing::info!(peer = %peer_id, "peer disconnected");
                }
                self.ledger.metrics().peers.set(self.peers.len() as i64);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.sync_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for a in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, a.clone());
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = Some(info.agent_version);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut seen = HashSet::new();
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.peers.contains_key(&peer)
                        && seen.insert(peer)
                        && !self.is_banned(&peer)
                    {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
            }
            _ => {}
        }
    }

    fn gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        let metrics = self.ledger.metrics();
        metrics.gossip_in.inc();
        let Ok(permit) = self.validating.clone().try_acquire_owned() else {
            // Overloaded: neither forward nor punish; sync fetches what is missed.
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
            return;
        };
        let from_all = message.topic == self.topic_entries;
        let topic = if from_all
            || message
                .topic
                .as_str()
                .starts_with(proto::sync::TOPIC_CONTROLLER_PREFIX)
        {
            TOPIC_ENTRIES
        } else if message.topic == self.topic_forks {
            TOPIC_FORKS
        } else if message.topic == self.topic_checkpoints || message.topic == self.topic_split_views
        {
            let checkpoint = message.topic == self.topic_checkpoints;
            let witness = self.witness.clone();
            let handle = self.handle.clone();
            tokio::spawn(async move {
                let data = message.data;
                let verdict = tokio::task::spawn_blocking(move || {
                    use crate::witness::GossipError;
                    if checkpoint {
                        let text = String::from_utf8(data)
                            .map_err(|e| GossipError::Invalid(e.to_string()))?;
                        witness.observe(&text).map(|found| found.is_some())
                    } else {
                        let proof: proto::witness::SplitView = serde_json::from_slice(&data)
                            .map_err(|e| GossipError::Invalid(e.to_string()))?;
                        witness.record(&proof)
                    }
                })
                .await
                .unwrap_or_else(|e| Err(crate::witness::GossipError::Local(e.to_string())));
                drop(permit);
                let (acceptance, reason) = match verdict {
                    // A checkpoint is passed on; a split view only the first time it is heard.
                    Ok(_) if checkpoint => (MessageAcceptance::Accept, None),
                    Ok(true) => (MessageAcceptance::Accept, None),
                    Ok(false) => (MessageAcceptance::Ignore, None),
                    // This node's own failure: not passed on from here, and no strike.
                    Err(crate::witness::GossipError::Local(e)) => {
                        tracing::warn!(peer = %source, error = %e, "witness gossip not kept");
                        (MessageAcceptance::Ignore, None)
                    }
                    Err(e) => {
                        tracing::debug!(peer = %source, error = %e, "invalid witness gossip");
                        (
                            MessageAcceptance::Reject,
                            Some(if checkpoint {
                                "gossip_invalid_checkpoint"
                            } else {
                                "gossip_invalid_split_view"
                            }),
                        )
                    }
                };
                let _ = handle
                    .tx
                    .send(Command::Validated {
                        id,
                        source,
                        acceptance,
                        reason,
                    })
                    .await;
            });
            return;
        } else {
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Reject);
            self.strike(source, "unknown_topic");
            return;
        };
        let ledger = self.ledger.clone();
        let handle = self.handle.clone();
        let sync_tx = self.sync_tx.clone();
        tokio::spawn(async move {
            // Full nodes relay what they store from the all-entries topic to the controllers'
            // topics, which they do not subscribe to: brand nodes hear of entries submitted at
            // nodes they are not connected to.
            let v = sync::validate_gossip(&ledger, topic, &message.data, from_all).await;
            drop(permit);
            for (data, controllers) in v.relay {
                let _ = handle.tx.try_send(Command::Announce {
                    data,
                    controllers,
                    all: false,
                });
            }
            for (subject, from_seq) in v.gaps {
                let _ = sync_tx.try_send(sync::Trigger::Gap {
                    peer: source,
                    subject,
                    from_seq,
                });
            }
            if let Some(proof) = v.fork {
                handle.publish_fork(proof);
            }
            let _ = handle
                .tx
                .send(Command::Validated {
                    id,
                    source,
                    acceptance: v.acceptance,
                    reason: v.reason,
                })
                .await;
        });
    }

    fn sync_event(&mut self, ev: request_response::Event<codec::SyncRequest, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if self.is_banned(&peer) {
                        return;
                    }
                    let request = match request {
                        codec::SyncRequest::Valid(r) => r,
                        codec::SyncRequest::Malformed(why) => {
                            let _ = self.swarm.behaviour_mut().sync.send_response(
                                channel,
                                Response::Error {
                                    code: 1,
                                    message: format!("malformed request: {why}"),
                                },
                            );
                            self.strike(peer, "sync_garbage");
                            return;
                        }
                    };
                    let Ok(permit) = self.serving.clone().try_acquire_owned() else {
                        let _ = self.swarm.behaviour_mut().sync.send_response(
                            channel,
                            Response::Error {
                                code: 2,
                                message: "busy".into(),
                            },
                        );
                        return;
                    };
                    let server = self.server.clone();
                    let handle = self.handle.clone();
                    tokio::spawn(async move {
                        let resp =
                            tokio::task::spawn_blocking(move || sync::serve(&server, request))
                                .await
                                .unwrap_or_else(|e| Response::Error {
                                    code: 3,
                                    message: e.to_string(),
                                });
                        drop(permit);
                        handle.respond(channel, resp).await;
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
                if matches!(error, request_response::OutboundFailure::Io(ref e) if e.kind() == std::io::ErrorKind::InvalidData)
                {
                    self.strike(peer, "sync_garbage");
                }
            }
            // Undecodable requests arrive as `SyncRequest::Malformed` (struck above); what fails
            // here is the transport (timeouts, closed streams): not the peer's fault.
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
