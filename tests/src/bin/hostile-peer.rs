//! `hostile-peer`: a misbehaving libp2p peer for the end-to-end tests.
//!
//! It speaks the node's protocols (gossipsub on `proto::sync::TOPIC_ENTRIES`, the sync
//! request-response protocol `/consent-ledger/sync/1`) with a fresh random identity, dials
//! `--target <multiaddr>`, and waits for the connection and for the target's subscription to the
//! entries topic (at most 2 s). It then publishes a prelude the target accepts (valid seq 1
//! entries, and orphans: well-signed seq 3 entries whose predecessors nobody has, so the target
//! asks this peer for the gap) and, for `--seconds N` (default 10), misbehaves in rounds of
//! 100 ms:
//!
//! - gossip: broken links (seq 2 of a prelude or previous-round subject whose `prev` is not the
//!   hash of the stored seq 1, signed by the subject key; and a seq 1 with such a seq 2 in one
//!   batch); `--burst N` (default 16) more orphans; `--burst N` entries with a flipped signature
//!   byte, each its own message; random garbage; a batch whose entry length points past its end;
//!   the same valid message 50 times (a duplicates flood); a payload just over
//!   `proto::sync::MAX_GOSSIP`; and, in rounds 1, 5 and 15, a 100 KiB frame, over the target's
//!   gossipsub transmit limit;
//! - sync (after `--gossip-only-secs`, default 0): request frames that do not decode (an unknown
//!   tag and random bytes; an `Entries` request with a limit beyond `MAX_ENTRIES`, encoded by
//!   hand) and a frame header announcing 100 MiB. Every sync request the target sends (its round
//!   on connect, gap fetches for the orphans) is answered with garbage.
//!
//! `--sync-requests-only` sends nothing but the garbage sync requests (no gossip) and answers the
//! target's requests with a well-formed "busy" error.
//!
//! Its gossipsub gives every published message a new local id, so its own duplicate cache never
//! refuses a repeat, and it allows 1 MiB frames; its sync codec writes whatever bytes it is
//! given. When the target drops the connection it stops the rounds and redials once a second, to
//! see whether the target lets it back in.
//!
//! stdout: one JSON line `{"event":"started","peer_id":...}` at once, then one
//! `{"event":"summary",...}` line at the end: counters, whether the target disconnected it and
//! how long redials stayed connected, the hashes of the invalid entries it sent (`bad_hashes`),
//! of the orphans (`orphan_hashes`; never storable, their predecessors do not exist) and of the
//! valid entries (`valid_hashes`, which nodes may legitimately store). It never panics on network
//! errors and exits 0 (2 on bad arguments).

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::prelude::*;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use proto::entry::{hash_entry_bytes, Body, Entry};
use proto::sync::{encode_batch, MAX_GOSSIP, PROTOCOL, TOPIC_ENTRIES};
use serde_json::json;
use tests::{consent, key, Chain};

/// Time between misbehaviour rounds.
const ROUND: Duration = Duration::from_millis(100);
/// Copies of one valid message per round.
const DUPLICATES: usize = 50;
/// Rounds that send a gossip frame over the node's transmit limit.
const OVERSIZED_ROUNDS: [u64; 3] = [1, 5, 15];
/// Orphans published before the first round.
const PRELUDE_ORPHANS: usize = 6;
/// Subjects per round whose seq 1 is valid and whose seq 2 (next round) has a broken link.
const LINKS: usize = 2;

// ---------------------------------------------------------------------------------------------
// A raw sync codec: requests and responses are bytes written as they are
// ---------------------------------------------------------------------------------------------

/// Writes requests and responses verbatim (the caller composes the length prefix, or not), and
/// reads frames as the node writes them (4-byte length, then the body), refusing large ones.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

const READ_LIMIT: usize = 8 << 20;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > READ_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res).await?;
        io.close().await
    }
}

// ---------------------------------------------------------------------------------------------
// The behaviour
// ---------------------------------------------------------------------------------------------

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    ping: ping::Behaviour,
}

/// Every published message gets a new local id: the hostile side never refuses a repeat.
fn unique_id(_: &gossipsub::Message) -> MessageId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    MessageId::from(NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes().to_vec())
}

fn behaviour(
    _key: &libp2p::identity::Keypair,
) -> Result<Hostile, Box<dyn std::error::Error + Send + Sync>> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(700))
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(unique_id)
        .max_transmit_size(1 << 20)
        .connection_handler_queue_len(100_000)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|e| format!("gossipsub: {e}"))?;
    let sync = request_response::Behaviour::with_codec(
        RawCodec,
        [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(5))
            .with_max_concurrent_streams(64),
    );
    Ok(Hostile {
        gossipsub,
        sync,
        ping: ping::Behaviour::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Randomness (no extra dependency: xorshift64* seeded from the clock and the pid)
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

struct Args {
    target: Multiaddr,
    seconds: f64,
    gossip_only_secs: f64,
    burst: usize,
    sync_requests_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let mut seconds = 10.0;
    let mut gossip_only_secs = 0.0;
    let mut burst = 16;
    let mut sync_requests_only = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--target" => {
                let v = value("--target")?;
                target = Some(
                    v.parse::<Multiaddr>()
                        .map_err(|e| format!("--target {v}: {e}"))?,
                );
            }
            "--seconds" => {
                let v = value("--seconds")?;
                seconds = v.parse().map_err(|e| format!("--seconds {v}: {e}"))?;
            }
            "--gossip-only-secs" => {
                let v = value("--gossip-only-secs")?;
                gossip_only_secs = v
                    .parse()
                    .map_err(|e| format!("--gossip-only-secs {v}: {e}"))?;
            }
            "--burst" => {
                let v = value("--burst")?;
                burst = v.parse().map_err(|e| format!("--burst {v}: {e}"))?;
            }
            "--sync-requests-only" => sync_requests_only = true,
            "-h" | "--help" => {
                return Err(
                    "usage: hostile-peer --target <multiaddr> [--seconds N] [--gossip-only-secs N] [--burst N] [--sync-requests-only]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        target: target.ok_or("--target <multiaddr> is required")?,
        seconds,
        gossip_only_secs,
        burst,
        sync_requests_only,
    })
}

/// What happened, for the summary line.
#[derive(Default)]
struct Stats {
    connected: bool,
    subscribed: bool,
    connected_after_ms: Option<u128>,
    published: u64,
    publish_errors: u64,
    publish_error_kinds: BTreeMap<String, u64>,
    sent: BTreeMap<&'static str, u64>,
    sync_requests: u64,
    sync_failures: u64,
    sync_responses: u64,
    sync_answered_garbage: u64,
    disconnected: bool,
    disconnected_after_ms: Option<u128>,
    redials: u64,
    reconnects: u64,
    reconnect_held_ms_max: u128,
    bad_hashes: Vec<String>,
    orphan_hashes: Vec<String>,
    valid_hashes: Vec<String>,
    rounds: u64,
}

struct Run {
    swarm: libp2p::Swarm<Hostile>,
    args: Args,
    target: Option<PeerId>,
    started: Instant,
    stats: Stats,
    rng: Rng,
    nonce: u64,
    topic: IdentTopic,
    /// The connection to the target is up.
    up: bool,
    /// When the current connection came up after a disconnection.
    reconnected_at: Option<Instant>,
    /// Subjects whose valid seq 1 went out last round; their broken seq 2 goes out this round.
    linked: Vec<Chain>,
    /// The message of the duplicates flood.
    duplicate: Vec<u8>,
}

impl Run {
    fn ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.sent.entry(what).or_default() += 1;
    }

    fn publish(&mut self, what: &'static str, data: Vec<u8>) {
        self.count(what);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), data)
        {
            Ok(_) => self.stats.published += 1,
            Err(e) => {
                self.stats.publish_errors += 1;
                let kind = format!("{e:?}");
                let kind = kind.split('(').next().unwrap_or("other").to_owned();
                *self.stats.publish_error_kinds.entry(kind).or_default() += 1;
            }
        }
    }

    fn sync_request(&mut self, what: &'static str, frame: Vec<u8>) {
        let Some(peer) = self.target.filter(|_| self.up) else {
            return;
        };
        self.count(what);
        self.stats.sync_requests += 1;
        let _ = self.swarm.behaviour_mut().sync.send_request(&peer, frame);
    }

    /// A subject's grant, from a label unique to this run.
    fn chain(&self, what: &str, round: u64) -> Chain {
        Chain::new(&format!("hostile/{}/{what}/{round}", self.nonce))
    }

    fn grant(c: &mut Chain) -> Entry {
        c.grant(key("brand").public_key(), &["dpv:Marketing"])
    }

    /// Valid seq 1 entries of fresh subjects, whose broken seq 2 goes out next round.
    fn publish_links(&mut self, round: u64) {
        for i in 0..LINKS {
            let mut c = self.chain(&format!("link/{i}"), round);
            let first = Self::grant(&mut c);
            self.stats.valid_hashes.push(first.hash().to_string());
            self.publish("valid_seq1", encode_batch([first.to_bytes().as_slice()]));
            self.linked.push(c);
        }
    }

    /// Orphans: well-signed seq 3 entries of subjects whose seq 1 and 2 nobody has. The target
    /// keeps them pending and asks this peer for the gap, which is answered with garbage.
    fn publish_orphans(&mut self, round: u64, n: usize) {
        for i in 0..n {
            let c = self.chain(&format!("orphan/{i}"), round);
            let mut content = c.content(Body::Grant(consent(
                key("brand").public_key(),
                &["dpv:Marketing"],
            )));
            content.seq = 3;
            content.recovery = None;
            content.prev = proto::entry::sha256(format!("orphan/{round}/{i}").as_bytes());
            match content.sign(&c.signing) {
                Ok(orphan) => {
                    self.stats.orphan_hashes.push(orphan.hash().to_string());
                    self.publish("orphan_seq3", encode_batch([orphan.to_bytes().as_slice()]));
                }
                Err(e) => eprintln!("hostile-peer: cannot make an orphan entry: {e}"),
            }
        }
    }

    fn gossip_round(&mut self, round: u64) {
        // (b) Broken links: seq 2 of subjects whose valid seq 1 went out a round ago (so the
        // target holds it), signed by the subject key, but whose prev is not seq 1's hash.
        for mut c in std::mem::take(&mut self.linked) {
            let broken = broken_next(&mut c);
            self.stats.bad_hashes.push(broken.hash().to_string());
            self.publish("broken_link", encode_batch([broken.to_bytes().as_slice()]));
        }

        self.publish_orphans(round, self.args.burst);

        // (a) Valid entries with one signature byte flipped (the first byte of R: they still
        // decode, but do not verify), each its own message.
        for i in 0..self.args.burst {
            let mut c = self.chain(&format!("sig/{i}"), round);
            let mut bytes = Self::grant(&mut c).to_bytes();
            let at = bytes.len() - 64;
            bytes[at] ^= 0x01;
            self.stats
                .bad_hashes
                .push(hash_entry_bytes(&bytes).to_string());
            self.publish("flipped_signature", encode_batch([bytes.as_slice()]));
        }

        // A valid seq 1 and its broken seq 2 in one batch; and next round's links.
        let mut c = self.chain("link-batch", round);
        let first = Self::grant(&mut c);
        let broken = broken_next(&mut c);
        self.stats.valid_hashes.push(first.hash().to_string());
        self.stats.bad_hashes.push(broken.hash().to_string());
        let (a, b) = (first.to_bytes(), broken.to_bytes());
        self.publish(
            "broken_link_in_batch",
            encode_batch([a.as_slice(), b.as_slice()]),
        );
        self.publish_links(round);

        // (c) Garbage: random bytes, and a batch whose entry length points past its end.
        let n = 1 + self.rng.below(2000) as usize;
        let garbage = self.rng.bytes(n);
        self.publish("garbage", garbage);
        let mut c = self.chain("truncated", round);
        let e = Self::grant(&mut c).to_bytes();
        let mut batch = ((e.len() + 100) as u16).to_be_bytes().to_vec();
        batch.extend_from_slice(&e);
        self.publish("length_past_end", batch);

        // (d) The same valid message, many times.
        for _ in 0..DUPLICATES {
            let d = self.duplicate.clone();
            self.publish("duplicate", d);
        }

        // (e) Too large: a payload just over MAX_GOSSIP (fits the target's frame limit, fails
        // the batch decoder) every round; a frame over the target's transmit limit a few times.
        let mut big = self.rng.bytes(MAX_GOSSIP + 64);
        big[0] = 0x00;
        big[1] = 0x10;
        self.publish("over_max_gossip", big);
        if OVERSIZED_ROUNDS.contains(&round) {
            let huge = self.rng.bytes(100 << 10);
            self.publish("oversized_frame", huge);
        }
    }

    fn sync_round(&mut self) {
        // A body that is no request (an unknown tag, then random bytes).
        let n = 8 + self.rng.below(500) as usize;
        let mut body = self.rng.bytes(n);
        body[0] = 0xee;
        self.sync_request("sync_garbage", frame(&body));
        // An Entries request with a limit beyond MAX_ENTRIES, encoded by hand.
        let mut body = vec![0x03, 0x00, 0x01];
        body.extend_from_slice(&self.rng.bytes(32));
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&u16::MAX.to_be_bytes());
        self.sync_request("sync_limit_out_of_range", frame(&body));
        // A frame header announcing 100 MiB, then a few bytes.
        let mut raw = (100u32 << 20).to_be_bytes().to_vec();
        raw.extend_from_slice(&self.rng.bytes(16));
        self.sync_request("sync_100_mib_header", raw);
    }

    fn event(&mut self, ev: SwarmEvent<HostileEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if Some(peer_id) == self.target || self.target.is_none() => {
                self.target.get_or_insert(peer_id);
                if num_established.get() == 1 {
                    self.up = true;
                    if self.stats.connected {
                        self.stats.reconnects += 1;
                        self.reconnected_at = Some(Instant::now());
                    } else {
                        self.stats.connected = true;
                        self.stats.connected_after_ms = Some(self.ms());
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if Some(peer_id) == self.target => {
                self.up = false;
                if !self.stats.disconnected {
                    self.stats.disconnected = true;
                    self.stats.disconnected_after_ms = Some(self.ms());
                }
                if let Some(t) = self.reconnected_at.take() {
                    let held = t.elapsed().as_millis();
                    self.stats.reconnect_held_ms_max = self.stats.reconnect_held_ms_max.max(held);
                }
            }
            SwarmEvent::Behaviour(HostileEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) if Some(peer_id) == self.target && topic == self.topic.hash() => {
                self.stats.subscribed = true;
            }
            SwarmEvent::Behaviour(HostileEvent::Sync(ev)) => match ev {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request { channel, .. } => {
                        // Every question the target asks is answered with garbage (or, when
                        // only the requests are to misbehave, with a well-formed "busy").
                        let body = if self.args.sync_requests_only {
                            let mut b = vec![0xff, 2, 0, 4];
                            b.extend_from_slice(b"busy");
                            b
                        } else {
                            self.stats.sync_answered_garbage += 1;
                            let n = 16 + self.rng.below(1000) as usize;
                            let mut body = self.rng.bytes(n);
                            body[0] = 0xee;
                            body
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, frame(&body));
                    }
                    request_response::Message::Response { .. } => {
                        self.stats.sync_responses += 1;
                    }
                },
                request_response::Event::OutboundFailure { .. } => {
                    self.stats.sync_failures += 1;
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Drives the swarm until `deadline` or until `done` holds.
    async fn drive(&mut self, deadline: Instant, done: impl Fn(&Run) -> bool) {
        while !done(self) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.swarm.select_next_some()).await {
                Ok(ev) => self.event(ev),
                Err(_) => break,
            }
        }
    }

    async fn run(&mut self) {
        if let Err(e) = self.swarm.dial(self.args.target.clone()) {
            eprintln!("hostile-peer: cannot dial {}: {e}", self.args.target);
            return;
        }
        let t = Instant::now();
        self.drive(t + Duration::from_secs(10), |r| r.up).await;
        if !self.up {
            eprintln!("hostile-peer: no connection to {}", self.args.target);
            return;
        }
        self.drive(Instant::now() + Duration::from_secs(2), |r| {
            r.stats.subscribed
        })
        .await;
        // A prelude that the target accepts: valid seq 1 entries (so that the broken seq 2 of
        // round 1 meets a stored seq 1) and orphans (whose gaps the target asks this peer for).
        let gossip = !self.args.sync_requests_only;
        if gossip {
            self.publish_links(0);
            self.publish_orphans(0, PRELUDE_ORPHANS);
            self.drive(Instant::now() + ROUND * 3, |_| false).await;
        }
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(self.args.seconds.max(0.0));
        let sync_from = if gossip {
            start + Duration::from_secs_f64(self.args.gossip_only_secs.max(0.0))
        } else {
            start
        };
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_dial = Instant::now();
        let mut round = 0u64;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            tokio::select! {
                ev = self.swarm.select_next_some() => self.event(ev),
                _ = tick.tick() => {
                    if self.up {
                        round += 1;
                        self.stats.rounds = round;
                        if gossip {
                            self.gossip_round(round);
                        }
                        if now >= sync_from {
                            self.sync_round();
                        }
                    } else if last_dial.elapsed() >= Duration::from_secs(1) {
                        // Knock again: a node that banned us must not let us back in.
                        last_dial = Instant::now();
                        self.stats.redials += 1;
                        let _ = self.swarm.dial(self.args.target.clone());
                    }
                }
                () = tokio::time::sleep_until(end.into()) => break,
            }
        }
        if let Some(t) = self.reconnected_at {
            let held = t.elapsed().as_millis();
            self.stats.reconnect_held_ms_max = self.stats.reconnect_held_ms_max.max(held);
        }
    }

    fn summary(&self) -> serde_json::Value {
        let s = &self.stats;
        json!({
            "event": "summary",
            "peer_id": self.swarm.local_peer_id().to_string(),
            "target": self.target.map(|p| p.to_string()),
            "connected": s.connected,
            "connected_after_ms": s.connected_after_ms,
            "subscribed": s.subscribed,
            "rounds": s.rounds,
            "published": s.published,
            "publish_errors": s.publish_errors,
            "publish_error_kinds": s.publish_error_kinds,
            "sent": s.sent,
            "sync_requests": s.sync_requests,
            "sync_failures": s.sync_failures,
            "sync_responses": s.sync_responses,
            "sync_answered_garbage": s.sync_answered_garbage,
            "disconnected": s.disconnected,
            "disconnected_after_ms": s.disconnected_after_ms,
            "still_connected": self.up,
            "redials": s.redials,
            "reconnects": s.reconnects,
            "reconnect_held_ms_max": s.reconnect_held_ms_max,
            "bad_hashes": s.bad_hashes,
            "orphan_hashes": s.orphan_hashes,
            "valid_hashes": s.valid_hashes,
        })
    }
}

/// `body` with the sync protocol's 4-byte length prefix.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The chain's next entry (a grant) with a `prev` that is not the hash of its predecessor,
/// signed by the current key. The chain itself is left as it was.
fn broken_next(c: &mut Chain) -> Entry {
    let mut content = c.content(Body::Grant(consent(
        key("brand").public_key(),
        &["dpv:Marketing"],
    )));
    content.prev = proto::entry::sha256(b"not the previous entry");
    content
        .sign(&c.signing)
        .unwrap_or_else(|e| unreachable!("a well-formed entry: {e}"))
}

fn print_line(v: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hostile-peer: {e}");
            std::process::exit(2);
        }
    };
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    print_line(&json!({ "event": "started", "peer_id": peer_id.to_string() }));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| e.to_string())
        .and_then(|b| b.with_behaviour(behaviour).map_err(|e| e.to_string()));
    let swarm = match swarm {
        Ok(b) => b
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build(),
        Err(e) => {
            eprintln!("hostile-peer: building the swarm: {e}");
            print_line(&json!({ "event": "summary", "peer_id": peer_id.to_string(), "error": e }));
            return;
        }
    };
    let target = args.target.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    });
    let mut rng = Rng::new();
    let nonce = rng.next();
    let mut dup = Chain::new(&format!("hostile/{nonce}/duplicate"));
    let dup_entry = Run::grant(&mut dup);
    let mut run = Run {
        swarm,
        args,
        target,
        started: Instant::now(),
        stats: Stats::default(),
        rng,
        nonce,
        topic: IdentTopic::new(TOPIC_ENTRIES),
        up: false,
        reconnected_at: None,
        linked: Vec::new(),
        duplicate: encode_batch([dup_entry.to_bytes().as_slice()]),
    };
    run.stats.valid_hashes.push(dup_entry.hash().to_string());
    run.run().await;
    print_line(&run.summary());
}
