//! Property tests: round trips, tamper detection, chain mutations, and state folding against a
//! simple reference model.

mod common;

use common::*;
use proptest::prelude::*;
use proto::entry::{recovery_commitment, Body, Consent, Content, Entry, Method, Notice};
use proto::keys::{Hash, PublicKey};
use proto::state::{ConsentState, Status};
use proto::vocab::{self, TermKind};

fn codes(kind: TermKind) -> Vec<String> {
    vocab::v1()
        .terms(kind)
        .into_iter()
        .map(|t| t.code.clone())
        .collect()
}

fn code_set(kind: TermKind, min: usize) -> impl Strategy<Value = Vec<String>> {
    let all = codes(kind);
    proptest::sample::subsequence(all.clone(), min..=4.min(all.len()))
}

fn visible(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[!-~]{{1,{max}}}")).expect("regex")
}

prop_compose! {
    fn arb_consent(grant: bool)(
        controller in any::<[u8; 32]>(),
        purposes in code_set(TermKind::Purpose, usize::from(grant)),
        data in code_set(TermKind::DataCategory, 0),
        legal in proptest::sample::select(codes(TermKind::LegalBasis)),
        notice in proptest::option::of((visible(80), any::<[u8; 32]>(), visible(12))),
        valid_for in proptest::option::of(1u64..10_000_000_000),
        jurisdiction in proptest::option::of("[A-Z0-9-]{2,16}"),
        method in 1u8..=5,
        gpc in proptest::option::of(any::<bool>()),
    ) -> (Consent, Option<u64>) {
        let mut purposes = purposes;
        purposes.sort();
        let mut data = data;
        data.sort();
        (Consent {
            controller: PublicKey::from_bytes(controller),
            purposes,
            data,
            legal_basis: legal,
            notice: notice.map(|(url, h, version)| Notice { url, sha256: Hash::from_bytes(h), version }),
            valid_until: None,
            jurisdiction,
            method: Method::from_byte(method).expect("method"),
            gpc,
        }, if grant { valid_for } else { None })
    }
}

prop_compose! {
    fn arb_entry()(
        seed in any::<[u8; 32]>(),
        kind in 0u8..4,
        seq in prop_oneof![Just(1u64), 2u64..1000, Just(proto::entry::MAX_U53)],
        prev in any::<[u8; 32]>(),
        issued_at in 0u64..=4_000_000_000_000,
        recovery in any::<[u8; 32]>(),
        grant in arb_consent(true),
        other in arb_consent(false),
        new_key in any::<[u8; 32]>(),
        next in any::<[u8; 32]>(),
    ) -> Entry {
        let key = proto::SecretKey::from_seed(seed);
        let mut prev = prev;
        prev[0] |= 1; // never all zero
        let seq = if kind == 3 && seq == 1 { 2 } else { seq };
        let body = match kind {
            0 => {
                let (mut c, valid_for) = grant;
                c.valid_until = valid_for.map(|v| issued_at + v);
                Body::Grant(c)
            }
            1 => Body::Withdraw(other.0),
            2 => Body::Refuse(other.0),
            _ => Body::Rotate(proto::entry::Rotation {
                new_key: PublicKey::from_bytes(new_key),
                next_recovery: Hash::from_bytes(next),
            }),
        };
        let content = Content {
            subject: key.public_key(),
            seq,
            prev: if seq == 1 { Hash::ZERO } else { Hash::from_bytes(prev) },
            issued_at,
            signer: key.public_key(),
            recovery: (seq == 1).then(|| Hash::from_bytes(recovery)),
            body,
        };
        content.sign(&key).expect("generated content is well formed")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_round_trip(e in arb_entry()) {
        let bytes = e.to_bytes();
        prop_assert!(bytes.len() <= proto::entry::MAX_ENTRY_BYTES);
        let d = Entry::from_bytes(&bytes).expect("decodes");
        prop_assert_eq!(&d, &e);
        prop_assert_eq!(d.hash(), e.hash());
        prop_assert!(proto::verify_entry(&d).is_ok());
    }

    #[test]
    fn json_round_trip_is_lossless(e in arb_entry()) {
        let text = serde_json::to_string(&e).expect("json");
        let back: Entry = serde_json::from_str(&text).expect("parses");
        prop_assert_eq!(back.to_bytes(), e.to_bytes());
    }

    #[test]
    fn accepted_bytes_re_encode_identically(e in arb_entry(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<Option<usize>>()) {
        // Mutate an honest encoding; whenever the decoder accepts the result, it must be canonical.
        let mut b = e.to_bytes();
        for (pos, val) in edits {
            let i = pos % b.len();
            b[i] = val;
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        if let Ok(d) = Entry::from_bytes(&b) {
            prop_assert_eq!(d.to_bytes(), b);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip_when_accepted(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(d) = Entry::from_bytes(&b) {
            prop_assert_eq!(d.to_bytes(), b);
        }
    }
}

proptest! {
    // The acceptance criterion: at least 10,000 single-byte flips, every one rejected.
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn every_single_byte_flip_is_rejected(seed in 0usize..64, pos in any::<usize>(), xor in 1u8..=255) {
        let e = flip_corpus()[seed % flip_corpus().len()].clone();
        let mut b = e.to_bytes();
        let i = pos % b.len();
        b[i] ^= xor;
        match Entry::from_bytes(&b) {
            Err(_) => {}
            Ok(d) => prop_assert!(proto::verify_entry(&d).is_err(), "flip at {} accepted", i),
        }
    }
}

/// A fixed corpus of valid entries of every kind and shape for the flip test.
fn flip_corpus() -> &'static [Entry] {
    use std::sync::OnceLock;
    static C: OnceLock<Vec<Entry>> = OnceLock::new();
    C.get_or_init(|| {
        let mut out = vec![];
        for s in 0..8u8 {
            let brand = key(0xa0 + s).public_key();
            let mut b = ChainBuilder::new(s + 1, s + 101);
            out.push(b.push(Body::Grant(rich_consent(brand))));
            out.push(b.withdraw(brand, &["dpv:DirectMarketing"]));
            out.push(b.refuse(brand, &[]));
            out.push(b.rotate(s + 51, s + 151));
            out.push(b.grant(brand, &["dpv:Marketing", "dpv:ServiceProvision"]));
        }
        out
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Swap(usize, usize),
    Drop(usize),
    Duplicate(usize),
    Foreign(usize),
    Truncate0,
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        any::<usize>().prop_map(Mutation::Foreign),
        Just(Mutation::Truncate0),
    ]
}

fn build_chain(ops: &[u8], subject: u8) -> Vec<Entry> {
    let brand = key(0xa1).public_key();
    let mut b = ChainBuilder::new(subject, subject.wrapping_add(100));
    for (i, op) in ops.iter().enumerate() {
        match op % 4 {
            0 => b.grant(brand, &["dpv:Marketing"]),
            1 => b.withdraw(brand, &[]),
            2 => b.refuse(brand, &["dpv:Advertising"]),
            _ if i > 0 => b.rotate(
                subject.wrapping_add(10 + i as u8),
                subject.wrapping_add(120 + i as u8),
            ),
            _ => b.grant(brand, &["dpv:ServiceProvision"]),
        };
    }
    b.entries
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_reorder_gap_duplicate_or_foreign_entry_is_rejected(ops in proptest::collection::vec(any::<u8>(), 3..10), m in arb_mutation()) {
        let chain = build_chain(&ops, 1);
        prop_assert!(proto::verify_chain(&chain).is_ok());
        let n = chain.len();
        let mut bad = chain.clone();
        match m {
            Mutation::Swap(a, b) => {
                let (a, b) = (a % n, b % n);
                prop_assume!(a != b);
                bad.swap(a, b);
            }
            Mutation::Drop(i) => {
                // Dropping the last entry leaves a valid prefix; any other drop is a gap.
                bad.remove(i % (n - 1));
            }
            Mutation::Duplicate(i) => {
                let i = i % n;
                let e = bad[i].clone();
                bad.insert(i, e);
            }
            Mutation::Foreign(i) => {
                // The same operations by another subject: every entry is valid in its own chain.
                let other = build_chain(&ops, 2);
                let i = i % n;
                bad[i] = other[i].clone();
            }
            Mutation::Truncate0 => bad.clear(),
        }
        prop_assert!(proto::verify_chain(&bad).is_err());
    }
}

/// The reference model: scan the chain backwards for the first entry of `controller` that touches
/// `purpose`, straight from the rules in docs/PROTOCOL.md.
fn reference(
    chain: &[Entry],
    controller: &PublicKey,
    purpose: &str,
    now: u64,
) -> (Status, Option<u64>) {
    let v = vocab::v1();
    for e in chain.iter().rev() {
        let (k, grant) = match &e.content.body {
            Body::Grant(k) => (k, true),
            Body::Withdraw(k) | Body::Refuse(k) => (k, false),
            Body::Rotate(_) => continue,
        };
        if k.controller != *controller {
            continue;
        }
        let touches = if grant {
            k.purposes.iter().any(|q| v.covers(q, purpose))
        } else {
            k.purposes.is_empty()
                || k.purposes
                    .iter()
                    .any(|q| v.covers(q, purpose) || v.covers(purpose, q))
        };
        if !touches {
            continue;
        }
        let status = match &e.content.body {
            Body::Grant(k) if k.valid_until.is_some_and(|t| now >= t) => Status::Expired,
            Body::Grant(_) => Status::Given,
            Body::Withdraw(_) => Status::Withdrawn,
            _ => Status::Refused,
        };
        return (status, Some(e.seq()));
    }
    (Status::Unknown, None)
}

const PURPOSES: [&str; 9] = [
    "dpv:Marketing",
    "dpv:DirectMarketing",
    "dpv:Advertising",
    "dpv:PersonalisedAdvertising",
    "dpv:TargetedAdvertising",
    "dpv:Personalisation",
    "dpv:ServicePersonalisation",
    "dpv:ServiceProvision",
    "dpv:SocialMediaMarketing",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn state_folding_agrees_with_the_reference_model(
        ops in proptest::collection::vec((0u8..4, 0usize..2, proptest::sample::subsequence(PURPOSES.to_vec(), 0..3), proptest::option::of(1u64..600_000)), 1..25),
        // Seconds after T0: a chain spans at most about 25 minutes and a grant lasts at most 10
        // more, so 40 minutes puts most probes inside a chain or a grant's validity.
        probe_time in 0u64..2_400,
    ) {
        let brands = [key(0xa1).public_key(), key(0xb2).public_key()];
        let mut b = ChainBuilder::new(7, 8);
        for (kind, brand, purposes, valid_for) in &ops {
            let mut c = consent(brands[*brand], purposes);
            match kind {
                0 | 3 => {
                    if c.purposes.is_empty() {
                        c.purposes.push("dpv:ServiceProvision".into());
                    }
                    c.valid_until = valid_for.map(|v| b.time + v);
                    b.push(Body::Grant(c));
                }
                1 => { b.push(Body::Withdraw(c)); }
                _ => { b.push(Body::Refuse(c)); }
            }
        }
        let chain = b.entries.clone();
        let state = ConsentState::fold(chain.iter());
        let now = T0 + probe_time * 1_000;
        for c in &brands {
            for p in PURPOSES {
                let d = state.decide(c, p, now).expect("known purpose");
                prop_assert_eq!((d.status, d.seq), reference(&chain, c, p, now), "{} {}", c, p);
            }
        }
        // Folding up to a time equals folding the prefix signed by then.
        let cut = now;
        let prefix: Vec<Entry> = chain.iter().filter(|e| e.content.issued_at <= cut).cloned().collect();
        prop_assert_eq!(ConsentState::fold_until(chain.iter(), cut), ConsentState::fold(prefix.iter()));
    }
}

#[test]
fn state_examples() {
    let brand = key(0xa1).public_key();
    let other = key(0xb2).public_key();
    let mut b = ChainBuilder::new(1, 2);
    b.grant(brand, &["dpv:Marketing"]);
    let s = ConsentState::fold(b.entries.iter());
    let d =
        |s: &ConsentState, c: &PublicKey, p: &str| s.decide(c, p, T0 + 1).expect("purpose").status;
    assert_eq!(d(&s, &brand, "dpv:DirectMarketing"), Status::Given);
    assert_eq!(d(&s, &brand, "dpv:Marketing"), Status::Given);
    assert_eq!(d(&s, &brand, "dpv:ServiceProvision"), Status::Unknown);
    assert_eq!(d(&s, &other, "dpv:Marketing"), Status::Unknown);
    b.withdraw(brand, &["dpv:DirectMarketing"]);
    let s = ConsentState::fold(b.entries.iter());
    assert_eq!(d(&s, &brand, "dpv:DirectMarketing"), Status::Withdrawn);
    assert_eq!(d(&s, &brand, "dpv:Marketing"), Status::Withdrawn);
    assert_eq!(d(&s, &brand, "dpv:Advertising"), Status::Given);
    b.withdraw(brand, &[]);
    let s = ConsentState::fold(b.entries.iter());
    assert_eq!(d(&s, &brand, "dpv:Advertising"), Status::Withdrawn);
    assert!(s.decide(&brand, "dpv:NotAPurpose", 0).is_err());
    assert!(s.decide(&brand, "pd:EmailAddress", 0).is_err());
}

#[test]
fn rotation_retires_the_old_key_and_the_recovery_key_can_still_withdraw() {
    let brand = key(0xa1).public_key();
    let mut b = ChainBuilder::new(1, 2);
    b.grant(brand, &["dpv:Marketing"]);
    // A thief with key 1 appends a grant; the customer rotates with the recovery key, withdraws.
    b.grant(brand, &["dpv:Advertising"]);
    let thief_time = b.time;
    b.rotate(3, 4);
    b.withdraw(brand, &[]);
    let head = proto::verify_chain(&b.entries).expect("valid chain");
    assert_eq!(head.signing_key, key(3).public_key());
    assert_eq!(head.recovery, recovery_commitment(&key(4).public_key()));
    let s = ConsentState::fold(b.entries.iter());
    assert_eq!(
        s.decide(&brand, "dpv:Advertising", thief_time)
            .expect("p")
            .status,
        Status::Withdrawn
    );
    // The thief's next entry, signed by the retired key, is rejected.
    let mut thief = ChainBuilder::new(1, 2);
    thief.entries = b.entries.clone();
    thief.time = b.time;
    let stolen = thief.grant(brand, &["dpv:Marketing"]);
    assert!(matches!(
        head.check_next(&stolen),
        Err(proto::ChainError::WrongSigner { .. })
    ));
    // A rotation signed by a key that is not the committed recovery key is rejected.
    let mut fake = ChainBuilder::new(1, 99);
    fake.entries = b.entries.clone();
    fake.signing = key(3);
    fake.time = b.time;
    let bad_rotation = fake.rotate(5, 6);
    assert!(matches!(
        head.check_next(&bad_rotation),
        Err(proto::ChainError::RecoveryKeyMismatch { .. })
    ));
    // A second rotation with the committed key 4 works.
    b.rotate(5, 6);
    b.grant(brand, &["dpv:ServiceProvision"]);
    assert!(proto::verify_chain(&b.entries).is_ok());
}

#[test]
fn fork_proofs_check_alone() {
    use proto::chain::{detect_fork, key_history, ForkProof};
    use proto::ForkError;
    let brand = key(0xa1).public_key();
    // Fork at seq 1: two different first entries signed by the subject.
    let mut x = ChainBuilder::new(1, 2);
    let mut y = ChainBuilder::new(1, 2);
    let a1 = x.grant(brand, &["dpv:Marketing"]);
    let b1 = y.refuse(brand, &[]);
    let p = detect_fork(&a1, &b1, vec![]).expect("fork at seq 1");
    assert_eq!(ForkProof::from_bytes(&p.to_bytes()), Ok(p.clone()));
    let json = serde_json::to_string(&p).expect("json");
    assert_eq!(serde_json::from_str::<ForkProof>(&json).expect("parse"), p);
    // Not a fork: the same entry twice, or different seqs.
    assert_eq!(
        ForkProof::new(a1.clone(), a1.clone(), vec![]),
        Err(ForkError::SameEntry)
    );
    let a2 = x.grant(brand, &["dpv:Advertising"]);
    assert_eq!(
        ForkProof::new(a1.clone(), a2.clone(), vec![]),
        Err(ForkError::DifferentPosition)
    );
    // Fork after a rotation: needs the key history; entries by the retired key do not count.
    x.rotate(3, 4);
    let mut z = ChainBuilder::new(1, 2);
    z.entries = x.entries.clone();
    z.signing = key(3);
    z.recovery = key(4);
    z.time = x.time;
    let left = x.withdraw(brand, &[]);
    let right = z.grant(brand, &["dpv:Marketing"]);
    let hist = key_history(&x.entries, left.seq());
    assert_eq!(hist.len(), 2);
    let p = ForkProof::new(left.clone(), right.clone(), hist.clone()).expect("fork after rotation");
    assert_eq!(ForkProof::from_bytes(&p.to_bytes()), Ok(p));
    // Without the rotation in the history, the new key is not authorised.
    assert!(matches!(
        ForkProof::new(left.clone(), right.clone(), hist[..1].to_vec()),
        Err(ForkError::Entry { .. })
    ));
    // A forged entry by an outside key is no fork.
    let mut forger = ChainBuilder::new(1, 2);
    forger.entries = x.entries[..3].to_vec();
    forger.signing = key(66);
    forger.time = x.time;
    let forged = forger.grant(brand, &["dpv:Marketing"]);
    assert!(ForkProof::new(left, forged, hist).is_err());
    // Trailing bytes are rejected.
    let mut b = detect_fork(&a1, &b1, vec![]).expect("fork").to_bytes();
    b.push(0);
    assert!(ForkProof::from_bytes(&b).is_err());
}

#[test]
fn json_form_rejects_unknown_missing_and_misplaced_fields() {
    let mut b = ChainBuilder::new(1, 2);
    let e = b.push(Body::Grant(rich_consent(key(0xa1).public_key())));
    let v = serde_json::to_value(&e).expect("json");
    let mut extra = v.clone();
    extra["name"] = "Alice".into();
    assert!(serde_json::from_value::<Entry>(extra).is_err());
    let mut missing = v.clone();
    missing.as_object_mut().expect("obj").remove("legal_basis");
    assert!(serde_json::from_value::<Entry>(missing).is_err());
    let mut misplaced = v.clone();
    misplaced["new_key"] = v["subject"].clone();
    assert!(serde_json::from_value::<Entry>(misplaced).is_err());
    let mut unknown_code = v.clone();
    unknown_code["purposes"] = serde_json::json!(["dpv:Analytics"]);
    let err = serde_json::from_value::<Entry>(unknown_code).expect_err("unknown code");
    assert!(
        err.to_string().contains("unknown code dpv:Analytics"),
        "{err}"
    );
    let mut big = v.clone();
    big["seq"] = serde_json::json!(1u64 << 53);
    assert!(serde_json::from_value::<Entry>(big).is_err());
    // An entry and its notice are JSON objects: serde's derived deserializers would also take
    // the members by position in an array (this took the same entry before the fix).
    // MEMBERS is the order the writer uses (section 9's table).
    let written = serde_json::to_string(&e).expect("json");
    let at: Vec<usize> = proto::json::MEMBERS
        .iter()
        .filter_map(|m| written.find(&format!("\"{m}\":")))
        .collect();
    assert!(
        at.len() >= 17 && at.windows(2).all(|w| w[0] < w[1]),
        "{written}"
    );
    let positional: Vec<serde_json::Value> = proto::json::MEMBERS
        .iter()
        .map(|k| v.get(*k).cloned().unwrap_or(serde_json::Value::Null))
        .collect();
    let text = serde_json::to_string(&positional).expect("json");
    let err = serde_json::from_str::<Entry>(&text).expect_err("an array is not an entry");
    assert!(err.to_string().contains("a JSON object"), "{err}");
    let mut notice_array = v.clone();
    let n = &v["notice"];
    notice_array["notice"] = serde_json::json!([n["url"], n["sha256"], n["version"]]);
    let text = serde_json::to_string(&notice_array).expect("json");
    let err = serde_json::from_str::<Entry>(&text).expect_err("an array is not a notice");
    assert!(err.to_string().contains("a JSON object"), "{err}");
    // null for the whole notice is absent; null inside it is refused.
    let mut null_notice = v.clone();
    null_notice["notice"] = serde_json::Value::Null;
    let parsed = serde_json::from_str::<Entry>(&null_notice.to_string()).expect("null is absent");
    assert!(matches!(&parsed.content.body, Body::Grant(k) if k.notice.is_none()));
    let mut null_inside = v.clone();
    null_inside["notice"]["version"] = serde_json::Value::Null;
    assert!(serde_json::from_str::<Entry>(&null_inside.to_string()).is_err());
    // The entry itself still parses, from text and from a value.
    assert_eq!(
        serde_json::from_str::<Entry>(&v.to_string()).expect("parses"),
        e
    );
    assert_eq!(serde_json::from_value::<Entry>(v).expect("parses"), e);
}

#[test]
fn decoder_errors_are_precise() {
    use proto::DecodeError;
    let mut b = ChainBuilder::new(1, 2);
    let e = b.push(Body::Grant(rich_consent(key(0xa1).public_key())));
    let bytes = e.to_bytes();
    assert!(matches!(
        Entry::from_bytes(&vec![1u8; 5000]),
        Err(DecodeError::TooLarge { len: 5000, .. })
    ));
    assert!(matches!(
        Entry::from_bytes(&[]),
        Err(DecodeError::Truncated { field: "version" })
    ));
    let mut k = bytes.clone();
    k[1] = 9;
    assert_eq!(Entry::from_bytes(&k), Err(DecodeError::UnknownKind(9)));
    let mut t = bytes.clone();
    t.extend_from_slice(&[0, 0]);
    assert_eq!(
        Entry::from_bytes(&t),
        Err(DecodeError::TrailingBytes { count: 2 })
    );
    // Recovery tag (offset 1+1+32+8+32+8+32 = 114) set to 2.
    let mut r = bytes.clone();
    r[114] = 2;
    assert_eq!(
        Entry::from_bytes(&r),
        Err(DecodeError::BadOptionTag {
            field: "recovery",
            tag: 2
        })
    );
    // seq 0.
    let mut c = e.content.clone();
    c.seq = 0;
    assert!(matches!(
        c.check_form(),
        Err(DecodeError::OutOfRange { field: "seq", .. })
    ));
    // Grants need a purpose; valid_until only on grants and after issued_at.
    let mut g = consent(key(0xa1).public_key(), &[]);
    let content = |body| Content {
        body,
        ..e.content.clone()
    };
    assert_eq!(
        content(Body::Grant(g.clone())).check_form(),
        Err(DecodeError::NoPurposes)
    );
    g.purposes = vec!["dpv:Marketing".into()];
    g.valid_until = Some(e.content.issued_at);
    assert_eq!(
        content(Body::Grant(g.clone())).check_form(),
        Err(DecodeError::ValidUntilNotAfterIssue)
    );
    g.valid_until = Some(e.content.issued_at + 1);
    assert_eq!(
        content(Body::Withdraw(g)).check_form(),
        Err(DecodeError::ValidUntilNotAllowed)
    );
}

#[test]
fn verify_entries_names_the_first_bad_entry_of_a_log() {
    let mut log: Vec<Entry> = flip_corpus().to_vec();
    assert_eq!(proto::chain::verify_entries(&log), Ok(()));
    // Re-sign entry 17 with a different key than it names: its signature no longer verifies.
    let mut bad = log[17].clone();
    bad.signature = key(200).sign(&bad.content.signing_input());
    log[17] = bad;
    let (i, err) = proto::chain::verify_entries(&log).expect_err("bad signature");
    assert_eq!(i, 17);
    assert_eq!(err, proto::EntryError::Signature(proto::SigError::Equation));
    // The same entry in a chain is named by seq.
    let brand = key(0xa1).public_key();
    let mut b = ChainBuilder::new(1, 2);
    b.grant(brand, &["dpv:Marketing"]);
    b.withdraw(brand, &[]);
    b.grant(brand, &["dpv:Advertising"]);
    b.entries[1].signature = key(200).sign(&b.entries[1].content.signing_input());
    assert!(matches!(
        proto::verify_chain(&b.entries),
        Err(proto::ChainError::Entry { seq: 2, .. })
    ));
}

#[test]
fn fork_proof_json_is_verified_and_strict() {
    use proto::chain::{detect_fork, ForkProof};
    let brand = key(0xa1).public_key();
    let mut x = ChainBuilder::new(1, 2);
    let mut y = ChainBuilder::new(1, 2);
    let a = x.grant(brand, &["dpv:Marketing"]);
    let b = y.refuse(brand, &[]);
    let p = detect_fork(&a, &b, vec![]).expect("fork");
    let mut v = serde_json::to_value(&p).expect("json");
    assert_eq!(
        serde_json::from_value::<ForkProof>(v.clone()).expect("valid"),
        p
    );
    v["extra"] = 1.into();
    assert!(serde_json::from_value::<ForkProof>(v.clone()).is_err());
    v.as_object_mut().expect("obj").remove("extra");
    v["b"] = v["a"].clone();
    assert!(
        serde_json::from_value::<ForkProof>(v).is_err(),
        "same entry twice is no fork"
    );
}

#[test]
fn verify_chain_applies_the_form_rules_to_in_memory_entries() {
    let brand = key(0xa1).public_key();
    let mut b = ChainBuilder::new(1, 2);
    b.grant(brand, &["dpv:Marketing"]);
    b.grant(brand, &["dpv:Advertising"]);
    // Re-sign entry 2 with a purpose code outside the vocabulary, bypassing Content::sign.
    let mut bad = b.entries[1].clone();
    if let Body::Grant(k) = &mut bad.content.body {
        k.purposes = vec!["dpv:Analytics".into()];
    }
    bad.signature = key(1).sign(&bad.content.signing_input());
    b.entries[1] = bad;
    assert!(matches!(
        proto::verify_chain(&b.entries),
        Err(proto::ChainError::Entry {
            seq: 2,
            error: proto::EntryError::Form(_)
        })
    ));
}

#[test]
fn verdict_names_are_their_json_names() {
    use proto::api::Verdict;
    for v in [Verdict::Allow, Verdict::Deny, Verdict::Unknown] {
        assert_eq!(serde_json::to_value(v).expect("json"), v.as_str());
    }
}
