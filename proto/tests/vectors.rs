//! Golden test vectors: proto/testdata/vectors/v1.json freezes the wire format.
//!
//! The test rebuilds every vector from fixed seeds and fixed fields and compares the result with
//! the committed file byte for byte, so a change to any byte of the file, or any change to the
//! encoding, hashing, signing or state rules, fails it. It then re-checks the file's claims from
//! the file alone (decode, verify, hash, decide), as an independent implementation would.
//!
//! To regenerate after a deliberate format change: `REGENERATE_VECTORS=1 cargo test -p
//! consent-proto --test vectors` (and bump the protocol version).

mod common;

use common::*;
use proto::chain::{key_history, ForkProof};
use proto::entry::{Body, Entry, HASH_DOMAIN, RECOVERY_DOMAIN, SIGNATURE_DOMAIN};
use proto::state::ConsentState;
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/v1.json");

fn chain_json(name: &str, entries: &[Entry], queries: &[(u8, &str, u64)]) -> Value {
    let verdict = proto::verify_chain(entries);
    let state = ConsentState::fold(entries.iter());
    let decisions: Vec<Value> = queries
        .iter()
        .map(|(c, p, at)| {
            let d = state
                .decide(&key(*c).public_key(), p, *at)
                .expect("known purpose");
            json!({
                "controller": key(*c).public_key().to_string(),
                "purpose": p,
                "at": at,
                "status": d.status.dpv(),
                "allow": d.allows(),
                "deciding_seq": d.seq,
                "deciding_hash": d.hash.map(|h| h.to_string()),
            })
        })
        .collect();
    json!({
        "name": name,
        "entries": entries.iter().map(|e| hex::encode(e.to_bytes())).collect::<Vec<_>>(),
        "valid": verdict.is_ok(),
        "error": verdict.err().map(|e| e.to_string()),
        "decisions": if queries.is_empty() { Value::Null } else { Value::Array(decisions) },
    })
}

fn entry_json(name: &str, signer_label: u8, e: &Entry) -> Value {
    json!({
        "name": name,
        "signer_seed": hex::encode([signer_label; 32]),
        "json": e,
        "content": hex::encode(e.content.to_bytes()),
        "signing_input": hex::encode(e.content.signing_input()),
        "signature": e.signature.to_string(),
        "encoding": hex::encode(e.to_bytes()),
        "hash": e.hash().to_string(),
    })
}

fn build() -> Value {
    let brand_a = key(0xa1).public_key();
    let brand_b = key(0xb2).public_key();

    // Chain 1: grant (rich fields), withdraw narrower, grant again with expiry, refuse all of B.
    let mut c1 = ChainBuilder::new(0x01, 0x02);
    let e1 = c1.push(Body::Grant(rich_consent(brand_a)));
    let e2 = c1.withdraw(brand_a, &["dpv:DirectMarketing"]);
    let mut g = consent(brand_a, &["dpv:Marketing"]);
    g.valid_until = Some(c1.time + 86_400_000);
    let e3 = c1.push(Body::Grant(g));
    let e4 = c1.refuse(brand_b, &[]);
    let t_after = c1.time;

    // Chain 2: rotation after a stolen key; the old key is retired.
    let mut c2 = ChainBuilder::new(0x11, 0x12);
    let r1 = c2.grant(brand_a, &["dpv:Marketing"]);
    let r2 = c2.rotate(0x13, 0x14);
    // The retired key tries to append after the rotation.
    let mut thief = ChainBuilder::new(0x11, 0x12);
    thief.entries = c2.entries.clone();
    thief.time = c2.time;
    let bad = thief.grant(brand_a, &["dpv:Marketing"]);
    let r3 = c2.withdraw(brand_a, &[]);

    // Chain 3: a fork at seq 2 (two different entries signed by the same key).
    let mut c3 = ChainBuilder::new(0x21, 0x22);
    let f1 = c3.grant(brand_b, &["dpv:Personalisation"]);
    let mut side = ChainBuilder::new(0x21, 0x22);
    side.entries = c3.entries.clone();
    side.time = c3.time;
    let f2a = c3.withdraw(brand_b, &["dpv:Personalisation"]);
    let f2b = side.grant(brand_b, &["dpv:ServicePersonalisation"]);
    let fork = ForkProof::new(f2a, f2b, key_history(std::slice::from_ref(&f1), 2)).expect("fork");

    let mut reordered = c1.entries.clone();
    reordered.swap(1, 2);

    let mut trailing = e2.to_bytes();
    trailing.push(0);
    let mut bad_version = e2.to_bytes();
    bad_version[0] = 2;
    let mut unsorted_purposes = e1.clone();
    if let Body::Grant(k) = &mut unsorted_purposes.content.body {
        k.purposes.reverse();
    }
    let mut unsorted_bytes = Vec::new();
    proto::encoding::encode_content(&unsorted_purposes.content, &mut unsorted_bytes);
    unsorted_bytes.extend_from_slice(unsorted_purposes.signature.as_bytes());

    let invalid: Vec<Value> = [
        ("trailing-byte", trailing),
        ("unknown-version", bad_version),
        ("unsorted-purposes", unsorted_bytes),
        ("truncated", e3.to_bytes()[..100].to_vec()),
    ]
    .into_iter()
    .map(|(name, b)| {
        json!({
            "name": name,
            "encoding": hex::encode(&b),
            "error": Entry::from_bytes(&b).err().map(|e| e.to_string()),
        })
    })
    .collect();

    let keys: Vec<Value> = [
        ("subject-1", 0x01u8),
        ("recovery-1", 0x02),
        ("subject-2", 0x11),
        ("recovery-2", 0x12),
        ("signing-2-after-rotation", 0x13),
        ("recovery-2-after-rotation", 0x14),
        ("subject-3", 0x21),
        ("brand-a", 0xa1),
        ("brand-b", 0xb2),
    ]
    .into_iter()
    .map(|(n, l)| {
        json!({
            "name": n,
            "seed": hex::encode([l; 32]),
            "public": key(l).public_key().to_string(),
            "recovery_commitment": proto::entry::recovery_commitment(&key(l).public_key()).to_string(),
        })
    })
    .collect();

    json!({
        "description": "consent-ledger entry v1 test vectors; see docs/PROTOCOL.md. Seeds are RFC 8032 secret keys.",
        "domains": {
            "signature": hex::encode(SIGNATURE_DOMAIN),
            "hash": hex::encode(HASH_DOMAIN),
            "recovery": hex::encode(RECOVERY_DOMAIN),
        },
        "keys": keys,
        "entries": [
            entry_json("grant-all-fields", 0x01, &e1),
            entry_json("withdraw-narrower", 0x01, &e2),
            entry_json("grant-with-expiry", 0x01, &e3),
            entry_json("refuse-everything", 0x01, &e4),
            entry_json("rotate", 0x12, &r2),
            entry_json("withdraw-after-rotation", 0x13, &r3),
        ],
        "chains": [
            chain_json("chain-1", &c1.entries, &[
                (0xa1, "dpv:DirectMarketing", t_after),
                (0xa1, "dpv:Marketing", t_after),
                (0xa1, "dpv:Marketing", t_after + 2 * 86_400_000),
                (0xa1, "dpv:Advertising", t_after),
                (0xa1, "dpv:ServicePersonalisation", t_after),
                (0xa1, "dpv:Personalisation", t_after),
                (0xb2, "dpv:ServiceProvision", t_after),
                (0xb2, "dpv:Marketing", t_after),
            ]),
            chain_json("chain-1-prefix-2", &c1.entries[..2], &[
                (0xa1, "dpv:DirectMarketing", T0 + 60_000),
                (0xa1, "dpv:Marketing", T0 + 60_000),
                (0xa1, "dpv:ServicePersonalisation", T0 + 60_000),
                (0xa1, "dpv:ServicePersonalisation", T0 + 401 * 86_400_000),
            ]),
            chain_json("chain-2-rotation", &[r1.clone(), r2.clone(), r3.clone()], &[
                (0xa1, "dpv:Marketing", c2.time),
            ]),
            chain_json("chain-2-retired-key", &[r1, r2, bad], &[]),
            chain_json("chain-1-reordered", &reordered, &[]),
            chain_json("chain-1-gap", &[c1.entries[0].clone(), c1.entries[2].clone()], &[]),
        ],
        "fork_proofs": [{
            "name": "fork-at-seq-2",
            "encoding": hex::encode(fork.to_bytes()),
            "valid": fork.verify().is_ok(),
        }],
        "invalid_encodings": invalid,
    })
}

#[test]
fn vectors_file_matches_the_implementation() {
    let text = serde_json::to_string_pretty(&build()).expect("json") + "\n";
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        std::fs::write(PATH, &text).expect("write vectors");
        // Comparing the file with what was just written would prove nothing.
        panic!("{PATH} regenerated; review the diff and run again without REGENERATE_VECTORS");
    }
    let committed = std::fs::read_to_string(PATH).expect("read proto/testdata/vectors/v1.json");
    assert!(
        committed == text,
        "proto/testdata/vectors/v1.json differs from what the code produces; if the wire format \
         changed on purpose, regenerate it (see this file's doc comment)"
    );
}

#[test]
fn vectors_file_checks_out_on_its_own() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("read")).expect("json");
    for k in v["keys"].as_array().expect("keys") {
        let seed: [u8; 32] = hex::decode(k["seed"].as_str().expect("seed"))
            .expect("hex")
            .try_into()
            .expect("32");
        let pk = proto::SecretKey::from_seed(seed).public_key();
        assert_eq!(pk.to_string(), k["public"].as_str().expect("public"));
    }
    for e in v["entries"].as_array().expect("entries") {
        let bytes = hex::decode(e["encoding"].as_str().expect("enc")).expect("hex");
        let entry = Entry::from_bytes(&bytes).expect("decodes");
        assert_eq!(entry.to_bytes(), bytes);
        assert_eq!(entry.hash().to_string(), e["hash"].as_str().expect("hash"));
        let from_json: Entry = serde_json::from_value(e["json"].clone()).expect("json form");
        assert_eq!(from_json, entry);
        let seed: [u8; 32] = hex::decode(e["signer_seed"].as_str().expect("seed"))
            .expect("hex")
            .try_into()
            .expect("32");
        let sig = proto::SecretKey::from_seed(seed).sign(&entry.content.signing_input());
        assert_eq!(sig, entry.signature);
        proto::verify_entry(&entry).expect("signature verifies");
    }
    for c in v["chains"].as_array().expect("chains") {
        let entries: Vec<Entry> = c["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|h| {
                Entry::from_bytes(&hex::decode(h.as_str().expect("hex")).expect("hex"))
                    .expect("entry")
            })
            .collect();
        let ok = proto::verify_chain(&entries).is_ok();
        assert_eq!(ok, c["valid"].as_bool().expect("valid"), "{}", c["name"]);
        if let Some(ds) = c["decisions"].as_array() {
            let state = ConsentState::fold(entries.iter());
            for d in ds {
                let controller: proto::PublicKey =
                    d["controller"].as_str().expect("c").parse().expect("key");
                let got = state
                    .decide(
                        &controller,
                        d["purpose"].as_str().expect("p"),
                        d["at"].as_u64().expect("at"),
                    )
                    .expect("decide");
                assert_eq!(
                    got.status.dpv(),
                    d["status"].as_str().expect("s"),
                    "{} {}",
                    c["name"],
                    d
                );
            }
        }
    }
    for f in v["fork_proofs"].as_array().expect("forks") {
        let bytes = hex::decode(f["encoding"].as_str().expect("enc")).expect("hex");
        assert_eq!(
            ForkProof::from_bytes(&bytes).is_ok(),
            f["valid"].as_bool().expect("valid")
        );
    }
    for b in v["invalid_encodings"].as_array().expect("invalid") {
        let bytes = hex::decode(b["encoding"].as_str().expect("enc")).expect("hex");
        assert!(Entry::from_bytes(&bytes).is_err(), "{}", b["name"]);
    }
}
