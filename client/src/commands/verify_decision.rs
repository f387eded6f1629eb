//! `consent verify-decision FILE`: re-check a decision record (the JSON answer of
//! `GET /v1/consent/check?...&evidence=true`, as `consent check --evidence --save` writes it)
//! offline, with `proto::evidence::verify_decision`: the checkpoint's signature, the head's
//! inclusion under its root, every entry and link of the chain, and the recorded decision.

use std::path::Path;

use proto::api::CheckResponse;
use proto::evidence::{verify_decision, EvidenceError};
use proto::note::{Checkpoint, Verifier};
use serde_json::json;

use crate::clock;
use crate::commands::{controller_label, parse_vkey, trusted_key};
use crate::error::{Error, Result};
use crate::{Ctx, Report};

/// What a verified record proves, and against which key.
#[derive(Debug)]
pub struct VerifiedRecord {
    /// The checkpoint the record's chain head is included in.
    pub checkpoint: Checkpoint,
    /// The key the checkpoint was checked against.
    pub vkey: String,
    /// Whether that key was given by the caller (`--vkey`) rather than taken from the record.
    pub pinned: bool,
}

impl VerifiedRecord {
    /// One line for people: the checkpoint and where its key came from.
    pub fn key_line(&self) -> String {
        if self.pinned {
            format!("{} (pinned with --vkey)", self.vkey)
        } else {
            format!(
                "{} (named in the record itself: this proves the record is consistent, not that \
                 this node signed it; pin the node's key with --vkey)",
                self.vkey
            )
        }
    }

    /// The JSON summary: `{checkpoint: {origin, size, root}, log_vkey, vkey_pinned}`.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "checkpoint": {
                "origin": self.checkpoint.origin,
                "size": self.checkpoint.size,
                "root": self.checkpoint.root.to_string(),
            },
            "log_vkey": self.vkey,
            "vkey_pinned": self.pinned,
        })
    }
}

/// Verifies `record` against `trusted` (or, without it, the key the record names).
///
/// # Errors
/// [`EvidenceError`] naming the first check that fails.
pub fn verify(
    record: &CheckResponse,
    trusted: Option<&Verifier>,
) -> std::result::Result<VerifiedRecord, EvidenceError> {
    let ev = record.evidence.as_deref().ok_or(EvidenceError::Missing)?;
    let key = match trusted {
        Some(v) => v.clone(),
        None => parse_vkey(&ev.log_vkey).map_err(|e| {
            EvidenceError::Checkpoint(format!("the record's key {:?}: {e}", ev.log_vkey))
        })?,
    };
    let checkpoint = verify_decision(record, Some(&key))?;
    Ok(VerifiedRecord {
        checkpoint,
        vkey: key.to_vkey(),
        pinned: trusted.is_some(),
    })
}

/// `consent verify-decision FILE [--vkey VKEY]`.
///
/// # Errors
/// [`Error::Io`] or [`Error::BadFile`] when FILE cannot be read or is not a decision record;
/// [`Error::Usage`] for a bad `--vkey`; [`Error::Invalid`] (exit 4) when the record does not
/// verify.
pub fn run(ctx: &Ctx, file: &Path, vkey: Option<&str>) -> Result<Report> {
    let trusted = vkey.map(trusted_key).transpose()?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let record: CheckResponse = serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: file.display().to_string(),
        message: format!(
            "not a decision record (the JSON answer of GET /v1/consent/check?...&evidence=true): \
             {e}"
        ),
    })?;
    let v = verify(&record, trusted.as_ref()).map_err(|e| {
        Error::Invalid(format!(
            "the decision record in {} does not verify: {e}",
            file.display()
        ))
    })?;
    let ev = record.evidence.as_deref();
    let chain_len = ev.map_or(0, |e| e.chain.len());
    let head_index = ev
        .and_then(|e| e.head_inclusion.as_ref())
        .map(|i| i.log_index);
    let alias = ctx.alias_of(&record.controller);
    let word = record.decision.as_str();
    let decided = match (record.seq, record.hash) {
        (Some(seq), Some(hash)) => format!("seq {seq}, entry {hash}"),
        _ if record.status == "forked" => {
            "none: the subject's chain is forked (two entries at one position)".to_owned()
        }
        _ => "no entry of the subject decides this controller and purpose".to_owned(),
    };
    let chain = match head_index {
        Some(i) => format!(
            "{chain_len} entries (head seq {}), the head at log index {i}",
            record.head_seq
        ),
        None => "empty (the node had no entry of this subject)".to_owned(),
    };
    let text = format!(
        "decision record verified: {word} ({})\n\
         subject     {}\n\
         controller  {}\n\
         purpose     {}\n\
         status      {}\n\
         decided by  {decided}\n\
         judged at   {}\n\
         chain       {chain}\n\
         checkpoint  {}, size {}, root {}\n\
         key         {}",
        record.status,
        record.subject,
        controller_label(&record.controller, alias.as_deref()),
        record.purpose,
        record.status,
        clock::format_ms(record.at),
        v.checkpoint.origin,
        v.checkpoint.size,
        v.checkpoint.root,
        v.key_line(),
    );
    let mut json = json!({
        "verified": true,
        "file": file.display().to_string(),
        "decision": record.decision,
        "status": record.status,
        "subject": record.subject.to_string(),
        "controller": record.controller.to_string(),
        "controller_alias": alias,
        "purpose": record.purpose,
        "seq": record.seq,
        "hash": record.hash.map(|h| h.to_string()),
        "at": clock::format_ms(record.at),
        "head_seq": record.head_seq,
        "chain_entries": chain_len,
        "head_log_index": head_index,
    });
    if let (Some(o), serde_json::Value::Object(extra)) = (json.as_object_mut(), v.json()) {
        o.extend(extra);
    }
    let mut r = Report::ok(text, json);
    if !v.pinned && ctx.json {
        r.notes.push(
            "note: checked against the key the record names; pin the node's key with --vkey"
                .to_owned(),
        );
    }
    if record.status == proto::state::forked_decision().status.dpv() {
        r.notes.push(
            "note: a forked status is not re-derived from one chain; fetch the fork proof from \
             the node"
                .to_owned(),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tests::chain;
    use proto::api::{Evidence, InclusionProof, Verdict};
    use proto::keys::{Hash, SecretKey};
    use proto::merkle;
    use proto::state::ConsentState;

    const ORIGIN: &str = "consent-node/test";

    fn verifier(seed: u8) -> (SecretKey, Verifier) {
        let key = SecretKey::from_seed([seed; 32]);
        let v = Verifier {
            name: ORIGIN.into(),
            key: key.public_key(),
        };
        (key, v)
    }

    /// A decision record over a two-entry chain, its checkpoint signed with `seed`'s key.
    fn record(seed: u8) -> CheckResponse {
        let entries = chain(2).entries;
        let leaves: Vec<Hash> = entries
            .iter()
            .map(|e| merkle::leaf_hash(e.hash().as_bytes()))
            .collect();
        let root = merkle::root(&leaves[..], 2);
        let (key, v) = verifier(seed);
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: 2,
            root,
            extensions: vec![],
        }
        .sign(ORIGIN, &key)
        .expect("sign")
        .to_text();
        let controller = entries[0].content.body.consent().expect("grant").controller;
        let at = 10_000;
        let d = ConsentState::fold(entries.iter())
            .decide(&controller, "dpv:Marketing", at)
            .expect("decide");
        CheckResponse {
            decision: Verdict::from_status(d.status),
            status: d.status.dpv().into(),
            subject: entries[0].subject(),
            controller,
            purpose: "dpv:Marketing".into(),
            hash: d.hash,
            seq: d.seq,
            notice_version: None,
            valid_until: None,
            head_seq: 2,
            log_size: 2,
            at,
            evidence: Some(Box::new(Evidence {
                chain: entries.iter().map(|e| hex::encode(e.to_bytes())).collect(),
                head_inclusion: Some(InclusionProof {
                    hash: entries[1].hash(),
                    log_index: 1,
                    tree_size: 2,
                    root,
                    proof: merkle::inclusion_proof(&leaves[..], 1, 2).expect("proof"),
                }),
                checkpoint,
                log_vkey: v.to_vkey(),
            })),
        }
    }

    /// The first seed whose vkey's base64 has (`plus`) or has not a `+`.
    fn seed_with_plus(plus: bool) -> u8 {
        (1..=u8::MAX)
            .find(|s| (verifier(*s).1.to_vkey().matches('+').count() > 2) == plus)
            .expect("such a seed")
    }

    #[test]
    fn keys_with_a_plus_in_their_base64_are_read() {
        for seed in 1..=64 {
            let v = verifier(seed).1;
            assert_eq!(parse_vkey(&v.to_vkey()), Ok(v.clone()), "seed {seed}");
            assert_eq!(parse_vkey(&format!(" {}\n", v.to_vkey())), Ok(v));
        }
        let v = verifier(seed_with_plus(true)).1;
        assert_eq!(Verifier::from_vkey(&v.to_vkey()), Ok(v.clone()));
        let s = v.to_vkey();
        let (name, rest) = s.split_once('+').expect("name");
        let wrong_id = format!("{name}+00000000{}", &rest[8..]);
        assert!(parse_vkey(&wrong_id).is_err());
        assert!(parse_vkey(&format!("bad name+{rest}")).is_err());
        assert!(parse_vkey("name+00000000+AQ==").is_err());
    }

    #[test]
    fn records_verify_against_their_own_key_or_a_pinned_one_and_not_another() {
        for plus in [false, true] {
            let seed = seed_with_plus(plus);
            let rec = record(seed);
            let own = verify(&rec, None).expect("verifies with its own key");
            assert!(!own.pinned);
            assert_eq!(own.checkpoint.size, 2);
            let v = verifier(seed).1;
            let pinned = verify(&rec, Some(&v)).expect("verifies with the pinned key");
            assert!(pinned.pinned);
            assert_eq!(pinned.vkey, v.to_vkey());
            let other = verifier(seed_with_plus(!plus)).1;
            assert!(matches!(
                verify(&rec, Some(&other)),
                Err(EvidenceError::Checkpoint(_))
            ));
            let mut bad = rec.clone();
            bad.status = "dpv:ConsentWithdrawn".into();
            assert!(matches!(
                verify(&bad, None),
                Err(EvidenceError::Decision(_))
            ));
        }
        let mut none = record(seed_with_plus(false));
        none.evidence = None;
        assert!(matches!(verify(&none, None), Err(EvidenceError::Missing)));
    }
}
