//! Prometheus metrics (prometheus-client), served as text at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set for rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why the entry was rejected.
    pub reason: String,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Entries stored.
    pub ingested: Counter,
    /// Entries rejected, by reason.
    pub rejected: Family<Reason, Counter>,
    /// Forks detected.
    pub forks: Counter,
    /// Entries waiting for a predecessor.
    pub pending: Gauge,
    /// Ingest-log size.
    pub log_size: Gauge,
    /// Store size on disk.
    pub store_bytes: Gauge,
    /// Consent-check latency.
    pub check_seconds: Histogram,
    /// HTTP requests answered with a 4xx or 5xx.
    pub http_errors: Family<Reason, Counter>,
    /// Gossip messages received.
    pub gossip_in: Counter,
    /// Gossip messages published by this node.
    pub gossip_out: Counter,
    /// Gossip messages and sync answers rejected, by reason.
    pub p2p_rejected: Family<Reason, Counter>,
    /// Sync rounds run.
    pub sync_rounds: Counter,
    /// Entries fetched by sync and stored.
    pub sync_entries: Counter,
    /// Log positions of peers' logs audited against their signed checkpoints.
    pub log_audited_entries: Counter,
    /// Log audits that caught a peer: its log contradicted its own signed checkpoint or one this
    /// node cosigned.
    pub log_audit_failures: Counter,
    /// Entries that came in only through a log audit although the round had found the peer in
    /// step: its sync answers left them out.
    pub withheld_entries: Counter,
    /// Connected peers.
    pub peers: Gauge,
    /// Peers banned for misbehaviour.
    pub peers_banned: Counter,
    /// Replication lag: the time from an entry's issued_at to its storing here, for entries that
    /// arrive by gossip.
    pub replication_lag_seconds: Histogram,
    /// Subjects whose head differed from a peer's at the start of the last sync round.
    pub sync_lag_subjects: Gauge,
    /// Checkpoints of other logs this node cosigned as a witness.
    pub witness_cosigned: Counter,
    /// Cosignatures this node collected on its own checkpoints.
    pub cosignatures_collected: Counter,
    /// Split-view proofs held (logs that signed two roots for one size).
    pub split_views: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consent");
        let ingested = Counter::default();
        let rejected = Family::<Reason, Counter>::default();
        let forks = Counter::default();
        let pending = Gauge::default();
        let log_size = Gauge::default();
        let store_bytes = Gauge::default();
        let check_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 20));
        let http_errors = Family::<Reason, Counter>::default();
        let gossip_in = Counter::default();
        let gossip_out = Counter::default();
        let p2p_rejected = Family::<Reason, Counter>::default();
        let sync_rounds = Counter::default();
        let sync_entries = Counter::default();
        let log_audited_entries = Counter::default();
        let log_audit_failures = Counter::default();
        let withheld_entries = Counter::default();
        registry.register(
            "log_audited_entries",
            "Log positions of peers' logs audited against their signed checkpoints",
            log_audited_entries.clone(),
        );
        registry.register(
            "log_audit_failures",
            "Log audits that caught a peer whose log contradicts its signed or cosigned checkpoint",
            log_audit_failures.clone(),
        );
        registry.register(
            "withheld_entries",
            "Entries a peer's sync answers left out that came in through the audit of its log",
            withheld_entries.clone(),
        );
        let peers = Gauge::default();
        let peers_banned = Counter::default();
        let replication_lag_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let sync_lag_subjects = Gauge::default();
        registry.register(
            "gossip_received",
            "Gossip messages received",
            gossip_in.clone(),
        );
        registry.register(
            "gossip_published",
            "Gossip messages published by this node",
            gossip_out.clone(),
        );
        registry.register(
            "p2p_rejected",
            "Gossip messages and sync answers rejected, by reason",
            p2p_rejected.clone(),
        );
        registry.register("sync_rounds", "Sync rounds run", sync_rounds.clone());
        let witness_cosigned = Counter::default();
        let cosignatures_collected = Counter::default();
        let split_views = Gauge::default();
        registry.register(
            "witness_cosigned",
            "Checkpoints of other logs cosigned by this node as a witness",
            witness_cosigned.clone(),
        );
        registry.register(
            "cosignatures_collected",
            "Cosignatures collected on this node's own checkpoints",
            cosignatures_collected.clone(),
        );
        registry.register(
            "split_views",
            "Split-view proofs held: logs that signed two roots for one tree size",
            split_views.clone(),
        );
        registry.register(
            "sync_entries_fetched",
            "Entries fetched by sync and stored",
            sync_entries.clone(),
        );
        registry.register("peers", "Connected peers", peers.clone());
        registry.register(
            "peers_banned",
            "Peers banned for misbehaviour",
            peers_banned.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Time from an entry's issued_at to its storing here, for entries received by gossip",
            replication_lag_seconds.clone(),
        );
        registry.register(
            "sync_lag_subjects",
            "Subjects whose head differed from the peer's at the start of the last sync round",
            sync_lag_subjects.clone(),
        );
        registry.register(
            "entries_ingested",
            "Entries stored durably",
            ingested.clone(),
        );
        registry.register(
            "entries_rejected",
            "Entries rejected, by reason",
            rejected.clone(),
        );
        registry.register("forks", "Forks detected", forks.clone());
        registry.register(
            "pending_entries",
            "Entries waiting for their predecessor",
            pending.clone(),
        );
        registry.register(
            "log_size",
            "Entries in this node's ingest log",
            log_size.clone(),
        );
        registry.register("store_bytes", "Store size on disk", store_bytes.clone());
        registry.register(
            "check_duration_seconds",
            "Consent check latency",
            check_seconds.clone(),
        );
        registry.register(
            "http_errors",
            "HTTP error responses, by status code",
            http_errors.clone(),
        );
        Metrics {
            registry,
            ingested,
            rejected,
            forks,
            pending,
            log_size,
            store_bytes,
            check_seconds,
            http_errors,
            gossip_in,
            gossip_out,
            p2p_rejected,
            sync_rounds,
            sync_entries,
            log_audited_entries,
            log_audit_failures,
            withheld_entries,
            peers,
            peers_banned,
            replication_lag_seconds,
            sync_lag_subjects,
            witness_cosigned,
            cosignatures_collected,
            split_views,
        }
    }

    /// Counts one rejection.
    pub fn rejected(&self, reason: &str) {
        self.rejected_n(reason, 1);
    }

    /// Counts `n` rejections.
    pub fn rejected_n(&self, reason: &str, n: u64) {
        self.rejected
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts one p2p rejection.
    pub fn p2p_rejected(&self, reason: &str) {
        self.p2p_rejected
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
