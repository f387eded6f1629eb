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
use proto::entry::{Body, Content, Entry, HASH_DOMAIN, RECOVERY_DOMAIN, SIGNATURE_DOMAIN};
use proto::keys::{Hash, Signature};
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

    // Chain 4: an earlier open-ended grant, then a grant of the same purpose that expires (section
    // 12.3: the later grant decides, also once it has expired).
    let mut c4 = ChainBuilder::new(0x31, 0x32);
    c4.grant(brand_a, &["dpv:Marketing"]);
    let mut g4 = consent(brand_a, &["dpv:Marketing"]);
    g4.valid_until = Some(c4.time + 86_400_000);
    c4.push(Body::Grant(g4));
    let t4 = c4.time;

    // Invalid chains, one per chain rule of section 10.3 not covered above. Each bad entry is
    // well formed and validly signed by the key that signs it.
    let next_of_e1 = |f: &dyn Fn(&mut Content)| {
        let mut b = ChainBuilder::new(0x01, 0x02);
        b.entries = vec![e1.clone()];
        b.time = T0 + 60_000;
        let mut c = b.content(Body::Withdraw(consent(brand_a, &["dpv:DirectMarketing"])));
        f(&mut c);
        c.sign(&key(0x01)).expect("well formed")
    };
    let bad_prev = next_of_e1(&|c| c.prev = Hash::from_bytes([7; 32]));
    let time_back = next_of_e1(&|c| c.issued_at = T0 - 1);
    let mut bad_sig = e2.clone();
    let mut sig = *e2.signature.as_bytes();
    sig[40] ^= 0x01;
    bad_sig.signature = Signature::from_bytes(sig);
    let rotate_by_signing_key = {
        let mut b = ChainBuilder::new(0x11, 0x12);
        b.entries = vec![c2.entries[0].clone()];
        b.time = T0 + 60_000;
        let c = b.content(Body::Rotate(proto::entry::Rotation {
            new_key: key(0x13).public_key(),
            next_recovery: proto::entry::recovery_commitment(&key(0x14).public_key()),
        }));
        c.sign(&key(0x11)).expect("well formed")
    };

    // Fork proofs: the canonical one above, more valid ones, and one per failing rule of section
    // 11 (built with a plain encoder of section 11.2, which neither orders nor checks).
    let fork_bytes = |a: &Entry, b: &Entry, history: &[&Entry]| {
        // Each entry with its u16 length, in section 11.2's order.
        let push = |out: &mut Vec<u8>, e: &Entry| {
            let bytes = e.to_bytes();
            out.extend_from_slice(&u16::try_from(bytes.len()).expect("short").to_be_bytes());
            out.extend_from_slice(&bytes);
        };
        let mut out = vec![1u8];
        push(&mut out, a);
        push(&mut out, b);
        out.push(u8::try_from(history.len()).expect("few"));
        for e in history {
            push(&mut out, e);
        }
        out
    };
    let ordered = |x: &Entry, y: &Entry| {
        if x.hash() < y.hash() {
            (x.clone(), y.clone())
        } else {
            (y.clone(), x.clone())
        }
    };
    let (fa, fb) = ordered(&fork.a, &fork.b);
    // Seq 1: two different first entries, both signed by the subject key.
    let mut other_first = ChainBuilder::new(0x21, 0x22);
    let g1 = other_first.grant(brand_a, &["dpv:Marketing"]);
    let (s1a, s1b) = ordered(&f1, &g1);
    // After a rotation: two entries at seq 3, both signed by the new key 13.
    let mut alt = ChainBuilder::new(0x11, 0x12);
    alt.entries = c2.entries[..2].to_vec();
    alt.signing = key(0x13);
    alt.recovery = key(0x14);
    alt.time = c2.time - 60_000;
    let r3_alt = alt.grant(brand_a, &["dpv:Advertising"]);
    let (ra, rb) = ordered(&c2.entries[2], &r3_alt);
    // Seq 2 of chain 3, the other side signed by a key that may not sign there.
    let mut stranger = ChainBuilder::new(0x21, 0x22);
    stranger.entries = vec![f1.clone()];
    stranger.signing = key(0x99);
    stranger.time = c3.time;
    let f2_stranger = stranger.grant(brand_b, &["dpv:Marketing"]);
    let (xa, xb) = ordered(&fork.a, &f2_stranger);
    let (da, db) = ordered(&fork.a, &e2);
    let mut trailing_fork = fork.to_bytes();
    trailing_fork.push(0);
    let forks: Vec<Value> = [
        ("fork-at-seq-2", fork.to_bytes()),
        ("fork-at-seq-1", fork_bytes(&s1a, &s1b, &[])),
        (
            "fork-after-rotation",
            fork_bytes(&ra, &rb, &[&c2.entries[0], &c2.entries[1]]),
        ),
        ("fork-sides-swapped", fork_bytes(&fb, &fa, &[&f1])),
        ("fork-same-entry-twice", fork_bytes(&fa, &fa, &[&f1])),
        ("fork-without-key-history", fork_bytes(&fa, &fb, &[])),
        (
            "fork-key-history-of-another-subject",
            fork_bytes(&fa, &fb, &[&e1]),
        ),
        (
            "fork-history-missing-the-rotation",
            fork_bytes(&ra, &rb, &[&c2.entries[0]]),
        ),
        ("fork-different-subjects", fork_bytes(&da, &db, &[&f1])),
        (
            "fork-side-signed-by-another-key",
            fork_bytes(&xa, &xb, &[&f1]),
        ),
        ("fork-trailing-byte", trailing_fork),
    ]
    .into_iter()
    .map(|(name, b)| {
        json!({
            "name": name,
            "encoding": hex::encode(&b),
            "valid": ForkProof::from_bytes(&b).is_ok(),
        })
    })
    .collect();

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

    // One byte string per decoder step and form rule (sections 6.1 to 6.3). The form-rule cases
    // are built with the raw encoder (no form checks) and carry `e1`'s signature: every one of
    // them fails before any signature is looked at.
    let raw = |c: &Content| {
        let mut b = Vec::new();
        proto::encoding::encode_content(c, &mut b);
        b.extend_from_slice(e1.signature.as_bytes());
        b
    };
    let with_consent = |e: &Entry, f: &dyn Fn(&mut proto::entry::Consent)| {
        let mut c = e.content.clone();
        match &mut c.body {
            Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => f(k),
            Body::Rotate(_) => unreachable!("consent entries only"),
        }
        raw(&c)
    };
    let patched = |e: &Entry, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = e.to_bytes();
        f(&mut b);
        b
    };
    let with_content = |e: &Entry, f: &dyn Fn(&mut Content)| {
        let mut c = e.content.clone();
        f(&mut c);
        raw(&c)
    };
    // e1 (seq 1, every optional field) ends in: jurisdiction tag 01, length 02, "EU", method, gpc,
    // signature; e2 (seq 2, no options) has its body at B = 115: controller, then the purposes
    // count at 147 and the first purpose's length at 148.
    let n1 = e1.to_bytes().len();
    assert_eq!(&e1.to_bytes()[n1 - 70..n1 - 66], &[1, 2, b'E', b'U']);
    let n2 = e2.to_bytes().len();
    assert_eq!(e2.to_bytes()[147], 1, "withdraw-narrower names one purpose");
    let max_u53 = (1u64 << 53) - 1;

    let invalid: Vec<Value> = [
        ("trailing-byte", "6.1 step 7", trailing),
        ("unknown-version", "6.1 step 3", bad_version),
        ("unsorted-purposes", "6.2 rule 7", unsorted_bytes),
        ("truncated", "6.1 step 2", e3.to_bytes()[..100].to_vec()),
        (
            "longer-than-4096",
            "6.1 step 1",
            patched(&e2, &|b| b.resize(4097, 0)),
        ),
        ("unknown-kind", "6.1 step 4", patched(&e2, &|b| b[1] = 5)),
        (
            "recovery-tag-02",
            "6.1 step 5",
            patched(&e1, &|b| b[114] = 2),
        ),
        (
            "purposes-count-17",
            "6.1 step 6",
            patched(&e2, &|b| b[147] = 17),
        ),
        (
            "code-length-65",
            "6.1 step 6",
            patched(&e2, &|b| b[148] = 65),
        ),
        (
            "jurisdiction-not-utf8",
            "6.1 step 6",
            patched(&e1, &|b| {
                b[n1 - 68] = 0xff;
                b[n1 - 67] = 0xfe;
            }),
        ),
        (
            "unknown-method",
            "6.1 step 6",
            patched(&e2, &|b| b[n2 - 66] = 6),
        ),
        (
            "unknown-gpc",
            "6.1 step 6",
            patched(&e2, &|b| b[n2 - 65] = 3),
        ),
        ("seq-zero", "6.2 rule 1", with_content(&e2, &|c| c.seq = 0)),
        (
            "seq-above-max-u53",
            "6.2 rule 1",
            with_content(&e2, &|c| c.seq = max_u53 + 1),
        ),
        (
            "issued-at-above-max-u53",
            "6.2 rule 2",
            with_content(&e2, &|c| c.issued_at = max_u53 + 1),
        ),
        (
            "prev-zero-at-seq-2",
            "6.2 rule 3",
            with_content(&e2, &|c| c.prev = Hash::ZERO),
        ),
        (
            "prev-set-at-seq-1",
            "6.2 rule 3",
            with_content(&e1, &|c| c.prev = e2.hash()),
        ),
        (
            "recovery-missing-at-seq-1",
            "6.2 rule 4",
            with_content(&e1, &|c| c.recovery = None),
        ),
        (
            "recovery-at-seq-2",
            "6.2 rule 4",
            with_content(&e2, &|c| c.recovery = e1.content.recovery),
        ),
        (
            "rotate-at-seq-1",
            "6.2 rule 5",
            with_content(&e1, &|c| c.body = r2.content.body.clone()),
        ),
        (
            "grant-without-purposes",
            "6.2 rule 6",
            with_consent(&e1, &|k| k.purposes.clear()),
        ),
        (
            "purpose-not-in-vocabulary",
            "6.2 rule 7",
            with_consent(&e2, &|k| k.purposes = vec!["dpv:Purpose".into()]),
        ),
        (
            "data-category-as-purpose",
            "6.2 rule 7",
            with_consent(&e2, &|k| k.purposes = vec!["pd:EmailAddress".into()]),
        ),
        (
            "duplicate-purposes",
            "6.2 rule 7",
            with_consent(&e2, &|k| {
                k.purposes = vec!["dpv:Marketing".into(), "dpv:Marketing".into()]
            }),
        ),
        (
            "code-bad-character",
            "6.3",
            with_consent(&e2, &|k| k.purposes = vec!["dpv:Direct-Marketing".into()]),
        ),
        (
            "purpose-as-data-category",
            "6.2 rule 8",
            with_consent(&e2, &|k| k.data = vec!["dpv:Marketing".into()]),
        ),
        (
            "purpose-as-legal-basis",
            "6.2 rule 9",
            with_consent(&e2, &|k| k.legal_basis = "dpv:Marketing".into()),
        ),
        (
            "notice-url-with-space",
            "6.2 rule 10",
            with_consent(&e1, &|k| {
                if let Some(n) = &mut k.notice {
                    n.url = "https://brand.example/privacy v3".into();
                }
            }),
        ),
        (
            "notice-version-empty",
            "6.2 rule 10",
            with_consent(&e1, &|k| {
                if let Some(n) = &mut k.notice {
                    n.version = String::new();
                }
            }),
        ),
        (
            "valid-until-on-withdraw",
            "6.2 rule 11",
            with_consent(&e2, &|k| k.valid_until = Some(T0 + 86_400_000)),
        ),
        (
            "valid-until-not-after-issued-at",
            "6.2 rule 11",
            with_consent(&e1, &|k| k.valid_until = Some(T0)),
        ),
        (
            "jurisdiction-lower-case",
            "6.2 rule 12",
            with_consent(&e1, &|k| k.jurisdiction = Some("eu".into())),
        ),
    ]
    .into_iter()
    .map(|(name, rule, b)| {
        let error = Entry::from_bytes(&b).err().map(|e| e.to_string());
        assert!(error.is_some(), "invalid encoding {name} decodes");
        json!({
            "name": name,
            "rule": rule,
            "encoding": hex::encode(&b),
            "error": error,
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
        ("subject-4", 0x31),
        ("recovery-4", 0x32),
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
            chain_json("chain-4-expiring-grant-decides", &c4.entries, &[
                (0xa1, "dpv:Marketing", t4),
                (0xa1, "dpv:DirectMarketing", t4),
                (0xa1, "dpv:Marketing", t4 + 2 * 86_400_000),
                (0xa1, "dpv:DirectMarketing", t4 + 2 * 86_400_000),
            ]),
            chain_json("chain-1-bad-prev", &[e1.clone(), bad_prev], &[]),
            chain_json("chain-1-time-went-back", &[e1.clone(), time_back], &[]),
            chain_json("chain-1-bad-signature", &[e1.clone(), bad_sig], &[]),
            chain_json("chain-1-then-other-subject", &[e1.clone(), c3.entries[1].clone()], &[]),
            chain_json("chain-2-rotate-by-signing-key", &[c2.entries[0].clone(), rotate_by_signing_key], &[]),
            chain_json("chain-starts-at-seq-2", std::slice::from_ref(&e2), &[]),
        ],
        "fork_proofs": forks,
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
