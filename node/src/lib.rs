//! consent-node: the peer node of consent-ledger.
//!
//! It keeps customers' signed consent chains in a durable sled store, verifies every entry before
//! it is stored, and answers brands' consent checks over HTTP with the evidence. Nodes replicate
//! every chain over libp2p: gossip for new entries, a digest-driven sync for what gossip misses.
//!
//! # Layout
//! - [`config`]: defaults, TOML file, node key.
//! - [`store`]: the `Store` trait and its sled implementation.
//! - [`ledger`]: the single writer (verified ingest, group commit, pending area, forks) and reads.
//! - [`http`]: the axum API, its error mapping and the OpenAPI document.
//! - [`checkpoint`]: signed checkpoints (C2SP) over the ingest log's Merkle tree, with the
//!   cosignatures witnesses gave them.
//! - [`witness`]: this node as a witness of other nodes' logs (C2SP tlog-witness), and
//!   split-view proofs.
//! - [`export`]: self-contained NDJSON exports for audits.
//! - [`p2p`]: the libp2p event loop, gossip validation and sync.
//! - [`digest`]: the head digest that sync compares.
//! - [`metrics`]: Prometheus metrics.
//! - [`clock`]: wall-clock time with a configurable offset.
//!
//! Layering: `http -> (p2p, ledger)`, `p2p -> ledger -> store -> proto`; the ledger is the only
//! writer to the store.

#![deny(missing_docs)]

pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod digest;
pub mod export;
pub mod http;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod p2p;
pub mod store;
pub mod witness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proto::api::ConsentEvent;
use proto::entry::Kind;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::Ledger;
use crate::store::{SledStore, Store};

/// Opens the store and reads every record once. When sled cannot read part of it (a damaged
/// page it reads lazily), salvages what can be read (see [`store::salvage`]): the node then
/// starts repairing the rest from its peers.
fn open_store(dir: &std::path::Path) -> Result<SledStore, store::StoreError> {
    let started = std::time::Instant::now();
    if store::finish_salvage(dir)? {
        tracing::warn!("finished a salvage that was interrupted: the salvaged store is in place");
    }
    let opened = SledStore::open(dir).and_then(|s| store::scan_readable(&s).map(|n| (s, n)));
    match opened {
        Ok((s, records)) => {
            tracing::info!(
                records,
                ms = started.elapsed().as_millis() as u64,
                "store opened and read through"
            );
            Ok(s)
        }
        Err(e) if store::is_sled_corruption(&e) => {
            tracing::error!(error = %e, "sled cannot read part of the store: salvaging what can be read; the rest will be repaired from peers");
            let r = store::salvage(dir)?;
            tracing::warn!(
                kept = r.kept,
                lost = r.lost,
                damaged = %r.damaged_dir.display(),
                "store salvaged"
            );
            SledStore::open(dir)
        }
        Err(e) => Err(e),
    }
}

/// Runs the node until `shutdown` is cancelled: opens the store, starts the ledger and the HTTP
/// server, and prints `consent-node listening on http://ADDR` on stdout once it accepts requests.
/// On shutdown, in-flight requests finish, the writer answers what it has queued, and the store is
/// flushed.
///
/// # Errors
/// When the data directory, store, node key or listen address cannot be used.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let key = config::node_key(&config.data_dir)?;
    let store_dir = config.data_dir.join("store");
    let store = Arc::new(
        open_store(&store_dir)
            .with_context(|| format!("opening the store in {}", store_dir.display()))?,
    );
    let metrics = Arc::new(metrics::Metrics::new());
    let witness = Arc::new(witness::Witness::new(
        key.clone(),
        store.clone(),
        metrics.clone(),
        config.clock,
    ));
    let checkpoints = Arc::new(checkpoint::Checkpointer::new(key.clone()));
    let ledger = Ledger::start(store, metrics, config.clock, config.pending.clone());
    ledger.set_freshness_bound(config.max_staleness);
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP address {}", config.http))?;
    let addr: SocketAddr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        http = %addr,
        data_dir = %config.data_dir.display(),
        node_key = %key.public_key(),
        log_size = ledger.store().log_size(),
        "consent-node started"
    );
    let net = match &config.p2p {
        Some(p) => {
            let (h, task) = p2p::start(
                p,
                &key,
                ledger.clone(),
                witness.clone(),
                checkpoints.clone(),
                shutdown.clone(),
            )
            .context("starting replication")?;
            Some((h, task))
        }
        None => {
            tracing::info!("replication is off");
            None
        }
    };
    println!("consent-node listening on http://{addr}");
    let expiry = tokio::spawn(expiry_watcher(ledger.clone(), shutdown.clone()));
    let app = http::router(http::AppState {
        ledger: ledger.clone(),
        node_key: key.public_key(),
        checkpoints,
        witness,
        shutdown: shutdown.clone(),
        net: net.as_ref().map(|(h, _)| h.clone()),
    });
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("serving HTTP")?;
    tracing::info!("HTTP server stopped; flushing the store");
    expiry.abort();
    if let Some((_, task)) = net {
        let _ = task.await;
    }
    ledger.shutdown().await;
    tracing::info!("consent-node stopped");
    Ok(())
}

/// Emits an `expire` event when a grant's valid_until passes while it still decides one of its
/// purposes.
async fn expiry_watcher(ledger: Ledger, shutdown: CancellationToken) {
    let mut due: BTreeMap<(u64, u64), ConsentEvent> = BTreeMap::new();
    let mut live = ledger.subscribe();
    let now = ledger.clock().now_ms();
    for r in ledger.store().subject_records() {
        let Ok((subject, rec)) = r else { continue };
        for (controller, cs) in &rec.consent.controllers {
            for (purpose, m) in &cs.grants {
                if let Some(v) = m.valid_until.filter(|v| *v > now) {
                    let log_index = ledger
                        .store()
                        .locate(&m.hash)
                        .ok()
                        .flatten()
                        .map_or(0, |l| l.log_index);
                    let ev = due.entry((v, log_index)).or_insert_with(|| ConsentEvent {
                        kind: "expire".into(),
                        subject,
                        controller: *controller,
                        purposes: vec![],
                        seq: m.seq,
                        hash: m.hash,
                        log_index,
                        valid_until: Some(v),
                    });
                    ev.purposes.push(purpose.clone());
                }
            }
        }
    }
    loop {
        let now = ledger.clock().now_ms();
        let wait = due
            .keys()
            .next()
            .map_or(Duration::from_secs(3600), |(v, _)| {
                Duration::from_millis(v.saturating_sub(now))
            });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            ev = live.recv() => match ev {
                Ok(ev) if ev.kind == Kind::Grant.as_str() => {
                    if let Some(v) = ev.valid_until {
                        due.insert((v, ev.log_index), ConsentEvent { kind: "expire".into(), ..ev });
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "expiry watcher lagged; some expiries may be unreported");
                }
                Err(_) => return,
            },
            () = tokio::time::sleep(wait) => {
                let now = ledger.clock().now_ms();
                while let Some(entry) = due.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let mut ev = entry.remove();
                    // Report only if this grant still decides at least one of its purposes.
                    ev.purposes.retain(|p| {
                        ledger
                            .check(&ev.subject, &ev.controller, p, None)
                            .is_ok_and(|c| c.hash == Some(ev.hash) && c.status == proto::Status::Expired.dpv())
                    });
                    if !ev.purposes.is_empty() {
                        tracing::info!(subject = %ev.subject, seq = ev.seq, "consent expired");
                        ledger.publish(ev);
                    }
                }
            }
        }
    }
}
