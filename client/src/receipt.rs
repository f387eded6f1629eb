//! Receipts: one verified entry as a human-readable text and as an ISO/IEC TS 27560-shaped
//! consent record (field names after the DPV group's profile of TS 27560; docs/CLI.md lists
//! them).

use proto::entry::{Body, Entry, Kind};
use proto::keys::Hash;
use serde_json::{json, Value};

use crate::clock;
use crate::commands::controller_label;

/// What the receipt says about how the entry was verified and where it sits.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The entry hash.
    pub hash: Hash,
    /// Its position in the serving node's ingest log.
    pub log_index: u64,
    /// The node that served it.
    pub node: String,
    /// The head seq of the subject's verified chain.
    pub chain_head_seq: u64,
    /// Whether the node reports the subject's chain as forked.
    pub forked: bool,
    /// For each purpose the entry names: its status now, from the verified chain (the entry may
    /// have been superseded since).
    pub current: Vec<(String, proto::Status)>,
}

/// The DPV consent status an entry sets (none for a rotation).
pub fn state_of(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Grant => Some("dpv:ConsentGiven"),
        Kind::Withdraw => Some("dpv:ConsentWithdrawn"),
        Kind::Refuse => Some("dpv:ConsentRefused"),
        Kind::Rotate => None,
    }
}

/// The ISO/IEC TS 27560-shaped record of a verified entry.
pub fn record(e: &Entry, ev: &Evidence, alias: Option<&str>) -> Value {
    let c = &e.content;
    let event_time = clock::format_ms(c.issued_at);
    let mut r = json!({
        "recordId": ev.hash,
        "schema": "ISO/IEC TS 27560:2023 consent record (DPV profile), consent-ledger entry v1",
        "dataSubject": {
            "id": c.subject,
            "idType": "pseudonymous Ed25519 public key, one per subject and controller",
        },
        "eventType": e.kind(),
        "eventTime": event_time,
        "state": state_of(e.kind()),
    });
    match &c.body {
        Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => {
            r["dataController"] = json!({ "id": k.controller, "alias": alias });
            r["purposes"] = json!(k.purposes);
            r["purposeScope"] = json!(if k.purposes.is_empty() {
                "every purpose of the controller"
            } else {
                "the purposes listed and every narrower purpose"
            });
            r["personalDataCategories"] = json!(k.data);
            r["legalBasis"] = json!(k.legal_basis);
            r["notice"] = k.notice.as_ref().map_or(
                Value::Null,
                |n| json!({ "url": n.url, "version": n.version, "sha256": n.sha256 }),
            );
            r["jurisdiction"] = json!(k.jurisdiction);
            r["validity"] = if e.kind() == Kind::Grant {
                json!({ "from": event_time, "until": k.valid_until.map(clock::format_ms) })
            } else {
                Value::Null
            };
            r["indicationMethod"] = json!(k.method.as_str());
            r["withdrawalMethod"] = json!(format!(
                "consent withdraw --controller {} (signed by the data subject)",
                k.controller
            ));
            r["gpc"] = json!(k.gpc);
        }
        Body::Rotate(rot) => {
            r["rotation"] = json!({ "newKey": rot.new_key, "nextRecovery": rot.next_recovery });
        }
    }
    r["evidence"] = json!({
        "seq": c.seq,
        "prev": c.prev,
        "signer": c.signer,
        "signature": e.signature,
        "canonicalHex": hex::encode(e.to_bytes()),
        "logIndex": ev.log_index,
        "node": ev.node,
        "signatureValid": true,
        "hashMatches": true,
        "chainVerified": true,
        "chainHeadSeq": ev.chain_head_seq,
        "forked": ev.forked,
    });
    r["currentState"] = Value::Array(
        ev.current
            .iter()
            .map(|(p, s)| json!({ "purpose": p, "state": s.dpv() }))
            .collect(),
    );
    r
}

/// The receipt for people.
pub fn human(e: &Entry, ev: &Evidence, alias: Option<&str>) -> String {
    let c = &e.content;
    let mut l = vec![
        "Consent receipt (verified)".to_owned(),
        format!("  record        {}", ev.hash),
        format!(
            "  event         {}{} at {}",
            e.kind(),
            state_of(e.kind()).map_or(String::new(), |s| format!(" ({s})")),
            clock::format_ms(c.issued_at)
        ),
        format!("  data subject  {} (pseudonymous key)", c.subject),
    ];
    match &c.body {
        Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => {
            l.push(format!(
                "  controller    {}",
                controller_label(&k.controller, alias)
            ));
            l.push(format!(
                "  purposes      {}",
                if k.purposes.is_empty() {
                    "every purpose of this controller".to_owned()
                } else {
                    k.purposes.join(", ")
                }
            ));
            if !k.data.is_empty() {
                l.push(format!("  data          {}", k.data.join(", ")));
            }
            l.push(format!("  legal basis   {}", k.legal_basis));
            if let Some(n) = &k.notice {
                l.push(format!(
                    "  notice        {} (version {}, sha256 {})",
                    n.url, n.version, n.sha256
                ));
            }
            if let Some(j) = &k.jurisdiction {
                l.push(format!("  jurisdiction  {j}"));
            }
            if let Some(v) = k.valid_until {
                l.push(format!("  valid until   {}", clock::format_ms(v)));
            }
            l.push(format!("  indicated by  {}", k.method.as_str()));
            if let Some(g) = k.gpc {
                l.push(format!(
                    "  GPC           {}",
                    if g { "on (Sec-GPC: 1)" } else { "off" }
                ));
            }
        }
        Body::Rotate(r) => {
            l.push(format!("  new key       {}", r.new_key));
        }
    }
    l.push(format!(
        "  evidence      seq {} of {}, signature valid, chain verified from seq 1, log index {} on {}",
        c.seq, ev.chain_head_seq, ev.log_index, ev.node
    ));
    for (p, s) in &ev.current {
        l.push(format!("  now           {p}: {}", s.dpv()));
    }
    if ev.forked {
        l.push(
            "  WARNING       the node holds a fork proof for this subject: every check denies"
                .into(),
        );
    }
    l.join("\n")
}
