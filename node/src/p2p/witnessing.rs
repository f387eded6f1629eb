//! Collecting cosignatures: this node offers its latest checkpoint to its connected peers, as
//! witnesses, over the sync protocol's `AddCheckpoint` request (a C2SP tlog-witness
//! add-checkpoint body), and keeps the cosignatures they return beside the checkpoint.
//!
//! Every interval: sign the checkpoint at the durable size; for each connected peer (at most
//! [`MAX_WITNESSES`]) that has not cosigned that size, send `old <size it last cosigned>` with a
//! consistency proof from there. A `409` answer names the size the witness holds: the node
//! retries once from that size. Each cosignature is checked (its name must be
//! `consent-witness/<the peer's key>` and it must verify) before it is kept. A checkpoint that
//! gained cosignatures is announced on the checkpoints topic, as is every checkpoint this node
//! cosigns as a witness (so that every node can compare what witnesses were shown), and
//! split-view proofs are announced on theirs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use proto::note::{Note, NoteSignature};
use proto::sync::{Request, Response};
use proto::witness::{AddCheckpoint, Cosigner};
use tokio_util::sync::CancellationToken;

use super::NetHandle;
use crate::checkpoint::Checkpointer;
use crate::ledger::Ledger;
use crate::store::Store;
use crate::witness::{Announcement, Witness};

/// Most witnesses asked per round.
pub const MAX_WITNESSES: usize = 8;

/// The node key of a peer (ed25519 peer ids embed it).
pub(super) fn peer_key(peer: &PeerId) -> Option<proto::PublicKey> {
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    Some(proto::PublicKey::from_bytes(ed.to_bytes()))
}

/// Runs until shutdown.
pub async fn run(
    handle: NetHandle,
    ledger: Ledger,
    witness: Arc<Witness>,
    checkpoints: Arc<Checkpointer>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut found = witness.subscribe();
    // The size each witness last cosigned for this log, as far as this node knows.
    let mut cosigned: HashMap<PeerId, u64> = HashMap::new();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            news = found.recv() => match news {
                Ok(Announcement::SplitView(p)) => {
                    if let Ok(json) = serde_json::to_vec(&p) {
                        handle.publish_split_view(json);
                    }
                }
                Ok(Announcement::Cosigned(note)) => handle.publish_checkpoint(note),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                round(&handle, &ledger, &checkpoints, &mut cosigned).await;
                let w = witness.clone();
                if let Ok(notes) = tokio::task::spawn_blocking(move || w.reannounce()).await {
                    for note in notes {
                        handle.publish_checkpoint(note);
                    }
                }
            }
        }
    }
}

async fn round(
    handle: &NetHandle,
    ledger: &Ledger,
    checkpoints: &Arc<Checkpointer>,
    cosigned: &mut HashMap<PeerId, u64>,
) {
    let l = ledger.clone();
    let c = checkpoints.clone();
    let Ok(Ok((size, note))) = tokio::task::spawn_blocking(move || c.latest_sized(l.store())).await
    else {
        return;
    };
    if size == 0 {
        return;
    }
    let peers = handle.peer_ids().await;
    cosigned.retain(|p, _| peers.contains(p));
    let mut gained: Vec<NoteSignature> = Vec::new();
    for peer in peers.into_iter().take(MAX_WITNESSES) {
        if cosigned.get(&peer) == Some(&size) {
            continue;
        }
        let Some(key) = peer_key(&peer) else { continue };
        let cosigner = Cosigner::of_key(key);
        let mut old = cosigned.get(&peer).copied().unwrap_or(0);
        for _attempt in 0..2 {
            let proof = if old == 0 || old >= size {
                Vec::new()
            } else {
                // Store reads: off the async workers.
                let l = ledger.clone();
                match tokio::task::spawn_blocking(move || l.store().consistency_proof(old, size))
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, old, size, "no consistency proof");
                        break;
                    }
                    Err(_) => break,
                }
            };
            let body = AddCheckpoint {
                old,
                proof,
                checkpoint: note.clone(),
            }
            .to_text()
            .into_bytes();
            match handle.request(peer, Request::AddCheckpoint { body }).await {
                Ok(Response::Witness { status: 200, body }) => {
                    let lines = String::from_utf8_lossy(&body);
                    match verified(&note, &lines, &cosigner) {
                        Some(sig) => {
                            gained.push(sig);
                            cosigned.insert(peer, size);
                        }
                        None => {
                            tracing::debug!(%peer, "a witness answered without a valid cosignature")
                        }
                    }
                    break;
                }
                Ok(Response::Witness { status: 409, body }) => {
                    let held = String::from_utf8_lossy(&body)
                        .trim_end()
                        .parse::<u64>()
                        .ok();
                    match held {
                        Some(n) if n != old && n <= size => old = n,
                        _ => {
                            tracing::warn!(%peer, size, "a witness refused this node's checkpoint as conflicting");
                            break;
                        }
                    }
                }
                Ok(Response::Witness { status, body }) => {
                    tracing::debug!(%peer, status, body = %String::from_utf8_lossy(&body), "witness refused");
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "witness request failed");
                    break;
                }
            }
        }
    }
    if gained.is_empty() {
        return;
    }
    ledger
        .metrics()
        .cosignatures_collected
        .inc_by(gained.len() as u64);
    let l = ledger.clone();
    let c = checkpoints.clone();
    if let Ok(Ok(merged)) =
        tokio::task::spawn_blocking(move || c.add_cosignatures(l.store(), size, &gained)).await
    {
        handle.publish_checkpoint(merged);
    }
}

/// The cosignature by `cosigner` among a witness's answer lines, if it verifies on `note`.
fn verified(note: &str, lines: &str, cosigner: &Cosigner) -> Option<NoteSignature> {
    let mut n = Note::parse(note).ok()?;
    n.signatures.clear();
    proto::witness::add_signature_lines(&mut n, lines).ok()?;
    cosigner.verify(&n).ok()?;
    n.signatures
        .into_iter()
        .find(|s| s.name == cosigner.name && s.id == cosigner.id())
}
