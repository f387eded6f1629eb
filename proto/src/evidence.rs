//! Offline verification of a decision record (`GET /v1/consent/check?...&evidence=true`).
//!
//! A record is self-contained: it carries the subject's chain (for a question about a past time,
//! the prefix signed by then), the inclusion proof of the chain's
//! head in the node's log, and the node's signed checkpoint. [`verify_decision`] re-checks, with
//! no network: the checkpoint's signature (against a verifier key the caller trusts), the head's
//! inclusion under the checkpoint's root, every entry and link of the chain, and that folding the
//! chain gives the recorded status and deciding entry at the recorded time.

use crate::api::{CheckResponse, Verdict};
use crate::entry::Entry;
use crate::merkle;
use crate::note::{Checkpoint, Verifier};
use crate::state::{forked_decision, ConsentState};

/// Why a decision record does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The record has no evidence.
    #[error("the record carries no evidence (ask with evidence=true)")]
    Missing,
    /// The checkpoint is not signed by the trusted key, or is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An entry of the chain is malformed or invalid.
    #[error("chain: {0}")]
    Chain(String),
    /// The head is not included in the checkpoint's tree.
    #[error("inclusion: {0}")]
    Inclusion(String),
    /// The recomputed decision differs from the recorded one.
    #[error("decision: {0}")]
    Decision(String),
}

/// Re-checks a decision record against `trusted`, the node's checkpoint key. Pass `None` to trust
/// the key named in the record itself (which then proves only internal consistency).
///
/// A record with status `forked` cannot be re-derived from one chain; it is accepted only with a
/// valid checkpoint, and the caller should fetch the fork proof.
///
/// # Errors
/// [`EvidenceError`] naming the first check that fails.
pub fn verify_decision(
    record: &CheckResponse,
    trusted: Option<&Verifier>,
) -> Result<Checkpoint, EvidenceError> {
    let ev = record.evidence.as_ref().ok_or(EvidenceError::Missing)?;
    let embedded =
        Verifier::from_vkey(&ev.log_vkey).map_err(|e| EvidenceError::Checkpoint(e.to_string()))?;
    let verifier = trusted.unwrap_or(&embedded);
    let (cp, _) = Checkpoint::open(&ev.checkpoint, verifier)
        .map_err(|e| EvidenceError::Checkpoint(e.to_string()))?;
    let chain: Vec<Entry> = ev
        .chain
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let bytes =
                hex::decode(h).map_err(|_| EvidenceError::Chain(format!("entry {i}: not hex")))?;
            Entry::from_bytes(&bytes).map_err(|e| EvidenceError::Chain(format!("entry {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if let Some(first) = chain.first() {
        if first.subject() != record.subject {
            return Err(EvidenceError::Chain(
                "the chain is another subject's".into(),
            ));
        }
        crate::verify_chain(&chain).map_err(|e| EvidenceError::Chain(e.to_string()))?;
        let head = chain.last().ok_or(EvidenceError::Missing)?;
        let inc = ev
            .head_inclusion
            .as_ref()
            .ok_or_else(|| EvidenceError::Inclusion("missing".into()))?;
        if inc.hash != head.hash() || inc.tree_size != cp.size || inc.root != cp.root {
            return Err(EvidenceError::Inclusion(
                "the proof is not for the head at the checkpoint".into(),
            ));
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(head.hash().as_bytes()),
            inc.log_index,
            inc.tree_size,
            &inc.proof,
            &cp.root,
        )
        .map_err(|e| EvidenceError::Inclusion(e.to_string()))?;
        // For a question about a past time the chain is the prefix signed by then.
        if head.seq() > record.head_seq {
            return Err(EvidenceError::Decision(format!(
                "record says head seq {}, the chain goes to {}",
                record.head_seq,
                head.seq()
            )));
        }
    }
    // An empty chain is a question about a time before the subject's first entry, or one asked
    // before any of its entries was covered by a checkpoint: nothing decides (unknown).
    let decision = if record.status == forked_decision().status.dpv() {
        forked_decision()
    } else {
        ConsentState::fold(chain.iter())
            .decide(&record.controller, &record.purpose, record.at)
            .map_err(|e| EvidenceError::Decision(e.to_string()))?
    };
    // A stale answer is a deny where the chain, as held, would have allowed.
    let stale = record.status == crate::state::STALE_STATUS;
    let same = if stale {
        Verdict::from_status(decision.status) == Verdict::Allow && record.decision == Verdict::Deny
    } else {
        decision.status.dpv() == record.status
            && Verdict::from_status(decision.status) == record.decision
    } && decision.seq == record.seq
        && decision.hash == record.hash;
    if !same {
        let seq = |s: Option<u64>| s.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let hash =
            |h: Option<crate::keys::Hash>| h.map_or_else(|| "none".to_owned(), |h| h.to_string());
        return Err(EvidenceError::Decision(format!(
            "the chain gives {} {} (deciding seq {}, hash {}); the record says {} {} (seq {}, \
             hash {})",
            Verdict::from_status(decision.status).as_str(),
            decision.status.dpv(),
            seq(decision.seq),
            hash(decision.hash),
            record.decision.as_str(),
            record.status,
            seq(record.seq),
            hash(record.hash),
        )));
    }
    Ok(cp)
}
