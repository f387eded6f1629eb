//! Witnessing test vectors: proto/testdata/vectors/witness-v1.json freezes the witnessing wire
//! format of docs/PROTOCOL.md section 17 (cosigner key IDs, the cosigned message, cosignature
//! lines, add-checkpoint bodies and the witness's checks, the sync messages `AddCheckpoint` and
//! `Witness`, split-view proofs).
//!
//! The first test rebuilds every vector from fixed seeds, fixed leaves and a fixed time with the
//! proto API and compares the result with the committed file byte for byte. The second checks
//! that section 17.10 of PROTOCOL.md shows the file's values. The third re-checks the file's
//! claims from the file alone (parse, verify, check, decode), as an independent implementation
//! would. scripts/protocol-check.py re-derives the same file from PROTOCOL.md.
//!
//! To regenerate after a deliberate format change: `REGENERATE_VECTORS=1 cargo test -p
//! consent-proto --test witness_vectors`, then update PROTOCOL.md section 17.10.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use proto::keys::{Hash, SecretKey};
use proto::merkle;
use proto::note::{Checkpoint, Note, Verifier};
use proto::sync::{Request, Response};
use proto::witness::{
    add_signature_lines, check_add, cosign, cosigned_message, log_verifier, signature_lines,
    AddCheckpoint, Cosigner, Held, Prefix, SplitView, WitnessError, MAX_ADD_BODY, MAX_PROOF_LINES,
};
use serde_json::{json, Value};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/vectors/witness-v1.json"
);
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");

const LOG_SEED: [u8; 32] = [7; 32];
const WITNESS_SEED: [u8; 32] = [9; 32];
const OTHER_SEED: [u8; 32] = [8; 32];
const TIMESTAMP: u64 = 1_700_000_000;
/// The log's entry hashes: byte `i` × 32 for leaf `i`.
const LEAVES: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
/// Another history of 3 leaves: the same first two, then `ff` × 32.
const OTHER_LEAVES: [u8; 3] = [0, 1, 0xff];

fn leaf_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes.iter().map(|b| merkle::leaf_hash(&[*b; 32])).collect()
}

fn origin() -> String {
    format!(
        "consent-node/{}",
        SecretKey::from_seed(LOG_SEED).public_key()
    )
}

/// A checkpoint of `origin` over the first `size` leaf hashes, signed by `seed` under `origin`.
fn signed(origin: &str, seed: [u8; 32], leaves: &[Hash], size: u64) -> (Checkpoint, String) {
    let cp = Checkpoint {
        origin: origin.to_owned(),
        size,
        root: if leaves.is_empty() {
            Hash::ZERO
        } else {
            merkle::root(leaves, size)
        },
        extensions: vec![],
    };
    let note = cp
        .sign(origin, &SecretKey::from_seed(seed))
        .expect("sign")
        .to_text();
    (cp, note)
}

fn checkpoint_json(cp: &Checkpoint, note: &str) -> Value {
    json!({
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.to_string(),
        "root_base64": B64.encode(cp.root.as_bytes()),
        "note": note,
    })
}

fn held_of(note: &str) -> Held {
    let n = Note::parse(note).expect("note");
    let cp = Checkpoint::from_text(&n.text).expect("checkpoint");
    Held {
        size: cp.size,
        root: cp.root,
        note: note.to_owned(),
    }
}

/// The witness's answer to a body, as (status, body) where the body is given for a 200 (the
/// cosignature line at [`TIMESTAMP`]) and a size conflict (`<size>\n`) only.
fn answer(body: &str, held: Option<&str>) -> (u16, Option<String>) {
    let req = match AddCheckpoint::parse(body.as_bytes()) {
        Ok(r) => r,
        Err(e) => return (e.status(), None),
    };
    match check_add(&req, None, |_| held.map(held_of)) {
        Ok((_, note)) => {
            let w = SecretKey::from_seed(WITNESS_SEED);
            let c = Cosigner::of_key(w.public_key());
            let sig = cosign(&c.name, &w, TIMESTAMP, &note.text);
            (200, Some(signature_lines(&[sig])))
        }
        Err(WitnessError::SizeConflict(n)) => (409, Some(format!("{n}\n"))),
        Err(e) => (e.status(), None),
    }
}

fn build() -> Value {
    let log = SecretKey::from_seed(LOG_SEED);
    let witness = SecretKey::from_seed(WITNESS_SEED);
    let origin = origin();
    let log_v = Verifier {
        name: origin.clone(),
        key: log.public_key(),
    };
    let cosigner = Cosigner::of_key(witness.public_key());

    let leaves = leaf_hashes(&LEAVES);
    let other = leaf_hashes(&OTHER_LEAVES);
    let (cp3, note3) = signed(&origin, LOG_SEED, &leaves, 3);
    let (cp8, note8) = signed(&origin, LOG_SEED, &leaves, 8);
    let (cp3x, note3x) = signed(&origin, LOG_SEED, &other, 3);
    // For the 404 and 403 checks: a log that is not a consent-ledger node, and a checkpoint of
    // the vector log signed by another key (both of size 1 with the zero root).
    let (cpf, notef) = signed("example.com/log", LOG_SEED, &[], 1);
    let (cpg, noteg) = signed(&origin, OTHER_SEED, &[], 1);
    let proof = merkle::consistency_proof(&leaves[..], 3, 8).expect("proof");

    // The cosignature on the size-8 checkpoint.
    let text8 = Note::parse(&note8).expect("note").text;
    let message = cosigned_message(TIMESTAMP, &text8);
    let sig = cosign(&cosigner.name, &witness, TIMESTAMP, &text8);
    let line = signature_lines(std::slice::from_ref(&sig));
    let mut cosigned = Note::parse(&note8).expect("note");
    add_signature_lines(&mut cosigned, &line).expect("line");
    let mut payload = sig.id.to_vec();
    payload.extend_from_slice(&sig.signature);

    // The add-checkpoint request from size 3 to size 8, and its sync messages.
    let req = AddCheckpoint {
        old: 3,
        proof: proof.clone(),
        checkpoint: note8.clone(),
    };
    let body = req.to_text();
    let sync_request = Request::AddCheckpoint {
        body: body.clone().into_bytes(),
    }
    .to_bytes();
    let sync_200 = Response::Witness {
        status: 200,
        body: line.clone().into_bytes(),
    }
    .to_bytes();
    let sync_409 = Response::Witness {
        status: 409,
        body: b"3\n".to_vec(),
    }
    .to_bytes();

    // The witness's checks, in the order of section 17.4.
    let mut zeroed = proof.clone();
    zeroed[0] = Hash::ZERO;
    let body_of = |old: u64, proof: &[Hash], note: &str| {
        AddCheckpoint {
            old,
            proof: proof.to_vec(),
            checkpoint: note.to_owned(),
        }
        .to_text()
    };
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        ("extend", Some(note3.as_str()), body.clone()),
        ("first", None, body_of(0, &[], &note3)),
        ("old-has-leading-zero", None, format!("old 03\n\n{note3}")),
        ("unknown-origin", None, body_of(0, &[], &notef)),
        ("signed-by-another-key", None, body_of(0, &[], &noteg)),
        ("old-above-size", None, body_of(9, &[], &note8)),
        (
            "old-is-not-held-size",
            Some(note3.as_str()),
            body_of(0, &[], &note8),
        ),
        ("proof-when-nothing-held", None, body_of(0, &proof, &note8)),
        ("split-view", Some(note3.as_str()), body_of(3, &[], &note3x)),
        (
            "bad-proof",
            Some(note3.as_str()),
            body_of(3, &zeroed, &note8),
        ),
    ];
    let checks: Vec<Value> = cases
        .iter()
        .map(|(name, held, body)| {
            let (status, response) = answer(body, *held);
            json!({
                "name": name,
                "held": held,
                "body": body,
                "status": status,
                "response": response,
            })
        })
        .collect();

    let split = SplitView::new(note3.clone(), note3x.clone());
    // The other history at size 3 against the log at size 8: the log's tree holds its own root
    // at 3, which the proof from 3 to 8 leads from.
    let across = SplitView::across(
        note3x.clone(),
        note8.clone(),
        Some(Prefix {
            root: cp3.root,
            proof: proof.clone(),
        }),
    );

    json!({
        "constants": {
            "cosignature_type": 4,
            "max_add_body": MAX_ADD_BODY,
            "max_proof_lines": MAX_PROOF_LINES,
        },
        "inputs": {
            "log_seed": hex::encode(LOG_SEED),
            "witness_seed": hex::encode(WITNESS_SEED),
            "other_seed": hex::encode(OTHER_SEED),
            "timestamp": TIMESTAMP,
            "entry_hashes": LEAVES.iter().map(|b| hex::encode([*b; 32])).collect::<Vec<_>>(),
            "other_entry_hashes":
                OTHER_LEAVES.iter().map(|b| hex::encode([*b; 32])).collect::<Vec<_>>(),
        },
        "log": {
            "public_key": log.public_key().to_string(),
            "origin": origin,
            "key_id": hex::encode(log_v.id()),
            "vkey": log_v.to_vkey(),
        },
        "cosigner": {
            "public_key": witness.public_key().to_string(),
            "name": cosigner.name,
            "key_id": hex::encode(cosigner.id()),
            "vkey": cosigner.to_vkey(),
        },
        "checkpoints": {
            "size_3": checkpoint_json(&cp3, &note3),
            "size_8": checkpoint_json(&cp8, &note8),
            "size_3_other": checkpoint_json(&cp3x, &note3x),
            "unknown_origin": checkpoint_json(&cpf, &notef),
            "another_key": checkpoint_json(&cpg, &noteg),
        },
        "consistency_proof_3_8": proof.iter().map(Hash::to_string).collect::<Vec<_>>(),
        "cosignature": {
            "message": hex::encode(&message),
            "signature": hex::encode(&sig.signature[8..]),
            "payload": hex::encode(&payload),
            "line": line,
            "cosigned_note": cosigned.to_text(),
        },
        "add_checkpoint": {
            "body": body,
            "sync_request": hex::encode(&sync_request),
            "sync_response_200": hex::encode(&sync_200),
            "sync_response_409": hex::encode(&sync_409),
        },
        "witness_checks": checks,
        "log_audit": {
            "log_checkpoint_request": hex::encode(Request::LogCheckpoint.to_bytes()),
            "log_entries_request_3_5": hex::encode(
                Request::LogEntries { start: 3, limit: 5 }.to_bytes()
            ),
            "checkpoint_response_size_8": hex::encode(
                Response::Checkpoint(note8.clone().into_bytes()).to_bytes()
            ),
        },
        "split_view": {
            "json": serde_json::to_string(&split).expect("json"),
            "id": split.id().to_string(),
        },
        "split_view_across": {
            "json": serde_json::to_string(&across).expect("json"),
            "id": across.id().to_string(),
        },
    })
}

fn load() -> Value {
    serde_json::from_str(&std::fs::read_to_string(PATH).expect("read")).expect("json")
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

#[test]
fn witness_vectors_file_matches_the_implementation() {
    let text = serde_json::to_string_pretty(&build()).expect("json") + "\n";
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        std::fs::write(PATH, &text).expect("write vectors");
        // Comparing the file with what was just written would prove nothing.
        panic!("{PATH} regenerated; review the diff and run again without REGENERATE_VECTORS");
    }
    let committed =
        std::fs::read_to_string(PATH).expect("read proto/testdata/vectors/witness-v1.json");
    assert!(
        committed == text,
        "proto/testdata/vectors/witness-v1.json differs from what the code produces; if the wire \
         format changed on purpose, regenerate it (see this file's doc comment)"
    );
}

#[test]
fn protocol_md_shows_the_vectors() {
    let doc = std::fs::read_to_string(DOC).expect("read docs/PROTOCOL.md");
    let section = doc
        .split_once("\n### 17.10 Test vectors\n")
        .expect("PROTOCOL.md has section 17.10")
        .1
        .split_once("\n## ")
        .expect("a section follows 17.10")
        .0;
    // Long hex strings are wrapped in the document: compare them without whitespace.
    let packed: String = section.chars().filter(|c| !c.is_whitespace()).collect();
    let v = load();
    let shown = |what: &str, value: &str| {
        let hex_only = value.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = if hex_only {
            packed.contains(value)
        } else {
            section.contains(value)
        };
        assert!(
            ok,
            "PROTOCOL.md section 17.10 does not show {what}: {value:?}"
        );
    };
    for k in ["public_key", "origin", "key_id", "vkey"] {
        shown(&format!("log.{k}"), s(&v, &["log", k]));
    }
    for k in ["public_key", "name", "key_id", "vkey"] {
        shown(&format!("cosigner.{k}"), s(&v, &["cosigner", k]));
    }
    for c in ["size_3", "size_8", "size_3_other"] {
        for k in ["root", "root_base64", "note"] {
            shown(
                &format!("checkpoints.{c}.{k}"),
                s(&v, &["checkpoints", c, k]),
            );
        }
    }
    for (i, h) in v["consistency_proof_3_8"]
        .as_array()
        .expect("proof")
        .iter()
        .enumerate()
    {
        shown(
            &format!("consistency proof hash {i}"),
            h.as_str().expect("hex"),
        );
    }
    for k in ["message", "signature", "payload", "line", "cosigned_note"] {
        shown(&format!("cosignature.{k}"), s(&v, &["cosignature", k]));
    }
    let message = hex::decode(s(&v, &["cosignature", "message"])).expect("hex");
    shown(
        "the cosigned message as text",
        &String::from_utf8(message).expect("utf-8"),
    );
    for k in [
        "body",
        "sync_request",
        "sync_response_200",
        "sync_response_409",
    ] {
        shown(
            &format!("add_checkpoint.{k}"),
            s(&v, &["add_checkpoint", k]),
        );
    }
    for c in v["witness_checks"].as_array().expect("checks") {
        let row = format!("| `{}` |", s(c, &["name"]));
        let line = section
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("no table row for the witness check {row}"));
        let status = format!("| {} |", c["status"]);
        assert!(line.contains(&status), "{row}: the row must say {status}");
    }
    shown("split_view.json", s(&v, &["split_view", "json"]));
    shown("split_view.id", s(&v, &["split_view", "id"]));
    shown(
        "split_view_across.json",
        s(&v, &["split_view_across", "json"]),
    );
    shown("split_view_across.id", s(&v, &["split_view_across", "id"]));
}

#[test]
fn witness_vectors_check_out_on_their_own() {
    let v = load();
    let log_v = Verifier::from_vkey(s(&v, &["log", "vkey"])).expect("log vkey");
    assert_eq!(log_v.name, s(&v, &["log", "origin"]));
    assert_eq!(log_verifier(&log_v.name), Some(log_v.clone()));
    let cosigner = Cosigner::from_vkey(s(&v, &["cosigner", "vkey"])).expect("cosigner vkey");
    assert_eq!(cosigner.name, s(&v, &["cosigner", "name"]));
    assert_eq!(hex::encode(cosigner.id()), s(&v, &["cosigner", "key_id"]));

    // Every checkpoint of the vector log opens with the log's vkey; the others do not.
    for c in ["size_3", "size_8", "size_3_other"] {
        let (cp, _) =
            Checkpoint::open(s(&v, &["checkpoints", c, "note"]), &log_v).expect("checkpoint");
        assert_eq!(cp.root.to_string(), s(&v, &["checkpoints", c, "root"]));
    }
    assert!(Checkpoint::open(s(&v, &["checkpoints", "another_key", "note"]), &log_v).is_err());

    // The consistency proof links size 3 to size 8.
    let root = |c: &str| -> Hash { s(&v, &["checkpoints", c, "root"]).parse().expect("hash") };
    let proof: Vec<Hash> = v["consistency_proof_3_8"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| h.as_str().expect("hex").parse().expect("hash"))
        .collect();
    merkle::verify_consistency(3, 8, &root("size_3"), &root("size_8"), &proof).expect("consistent");

    // The cosigned note carries a valid cosignature at the vector time, beside the log's.
    let cosigned = Note::parse(s(&v, &["cosignature", "cosigned_note"])).expect("note");
    assert_eq!(cosigner.verify(&cosigned), Ok(TIMESTAMP));
    cosigned.verify(&log_v).expect("log signature");
    assert_eq!(
        hex::encode(cosigned_message(TIMESTAMP, &cosigned.text)),
        s(&v, &["cosignature", "message"])
    );

    // The body parses to (3, proof, the size-8 note); the sync messages decode to it.
    let body = s(&v, &["add_checkpoint", "body"]);
    let req = AddCheckpoint::parse(body.as_bytes()).expect("body");
    assert_eq!(req.old, 3);
    assert_eq!(req.proof, proof);
    assert_eq!(req.checkpoint, s(&v, &["checkpoints", "size_8", "note"]));
    let bytes = |k: &str| hex::decode(s(&v, &["add_checkpoint", k])).expect("hex");
    assert_eq!(
        Request::from_bytes(&bytes("sync_request")),
        Ok(Request::AddCheckpoint {
            body: body.as_bytes().to_vec()
        })
    );
    assert_eq!(
        Response::from_bytes(&bytes("sync_response_200")),
        Ok(Response::Witness {
            status: 200,
            body: s(&v, &["cosignature", "line"]).as_bytes().to_vec()
        })
    );
    assert_eq!(
        Response::from_bytes(&bytes("sync_response_409")),
        Ok(Response::Witness {
            status: 409,
            body: b"3\n".to_vec()
        })
    );

    // Each witness check gives its status (and body, where one is given).
    for c in v["witness_checks"].as_array().expect("checks") {
        let (status, response) = answer(s(c, &["body"]), c["held"].as_str());
        assert_eq!(
            u64::from(status),
            c["status"].as_u64().expect("status"),
            "{c}"
        );
        assert_eq!(response.as_deref(), c["response"].as_str(), "{c}");
    }

    // The split-view proof verifies and has the stated id.
    let split: SplitView = serde_json::from_str(s(&v, &["split_view", "json"])).expect("json");
    let (a, b) = split.verify().expect("split view");
    assert_eq!((a.size, b.size), (3, 3));
    assert_ne!(a.root, b.root);
    assert_eq!(split.id().to_string(), s(&v, &["split_view", "id"]));
    // So does the one across sizes 3 and 8; without its prefix it proves nothing.
    let across: SplitView =
        serde_json::from_str(s(&v, &["split_view_across", "json"])).expect("json");
    let (a, b) = across.verify().expect("split view across sizes");
    assert_eq!((a.size.min(b.size), a.size.max(b.size)), (3, 8));
    assert_eq!(across.id().to_string(), s(&v, &["split_view_across", "id"]));
    let mut bare = across.clone();
    bare.prefix = None;
    assert!(bare.verify().is_err());
}
