//! The HTTP API end to end against a real node: submit (JSON and binary), duplicates, the pending
//! area, forks, withdraw and refuse, single and batch checks, checks as of a past time, chain and
//! entry reads, the ingest log, and the service endpoints.

use proto::api::{
    ChainResponse, CheckResponse, ConsentsResponse, EntryRecord, LogLine, SubmitStatus, Verdict,
};
use proto::chain::ForkProof;
use proto::entry::hash_entry_bytes;
use proto::keys::{Hash, PublicKey};
use serde_json::{json, Value};
use tests::{key, now_ms, rfc3339, Chain, TestNode};

fn brand(name: &str) -> PublicKey {
    key(&format!("brand/{name}")).public_key()
}

#[track_caller]
fn assert_decision(r: &CheckResponse, decision: Verdict, status: &str, seq: Option<u64>) {
    assert_eq!(
        (r.decision, r.status.as_str(), r.seq),
        (decision, status, seq),
        "check answer for {}: {r:?}",
        r.purpose
    );
}

#[test]
fn submitted_grant_is_stored_with_a_log_index_and_then_allowed() {
    let node = TestNode::new();
    let b = brand("a");
    let mut alice = Chain::new("alice");

    let before = node.check(&alice.id(), &b, "dpv:Marketing");
    assert_decision(&before, Verdict::Unknown, "dpv:ConsentUnknown", None);
    assert_eq!(before.head_seq, 0);

    let e1 = alice.grant(b, &["dpv:Marketing"]);
    let r = node.submit(&e1, 201);
    assert_eq!(r.status, SubmitStatus::Stored);
    assert_eq!(r.hash, e1.hash());
    assert_eq!(r.subject, alice.id());
    assert_eq!(r.seq, 1);
    assert_eq!(r.log_index, Some(0));

    let chk = node.check(&alice.id(), &b, "dpv:Marketing");
    assert_decision(&chk, Verdict::Allow, "dpv:ConsentGiven", Some(1));
    assert_eq!(chk.hash, Some(e1.hash()));
    assert_eq!((chk.head_seq, chk.log_size), (1, 1));
    assert_eq!(chk.subject, alice.id());
    assert_eq!(chk.controller, b);
    // A grant of a purpose covers the narrower purposes, not the broader or unrelated ones.
    let narrower = node.check(&alice.id(), &b, "dpv:DirectMarketing");
    assert_decision(&narrower, Verdict::Allow, "dpv:ConsentGiven", Some(1));
    let unrelated = node.check(&alice.id(), &b, "dpv:ServiceProvision");
    assert_decision(&unrelated, Verdict::Unknown, "dpv:ConsentUnknown", None);
    let other_brand = node.check(&alice.id(), &brand("b"), "dpv:Marketing");
    assert_decision(&other_brand, Verdict::Unknown, "dpv:ConsentUnknown", None);

    // Another subject takes the next log index; the canonical binary form is accepted too.
    let mut bob = Chain::new("bob");
    let b1 = bob.grant(b, &["dpv:ServiceProvision"]);
    let r = node.post_entry_bytes(&b1.to_bytes()).expect_status(201);
    assert_eq!(r.json()["log_index"], json!(1));
    assert_eq!(r.json()["status"], json!("stored"));
    let e2 = alice.withdraw(b, &["dpv:Marketing"]);
    assert_eq!(node.submit(&e2, 201).log_index, Some(2));
    let info = node.info();
    assert_eq!((info.log_size, info.subjects, info.pending), (3, 2, 0));
}

#[test]
fn resubmitting_an_entry_answers_duplicate_with_the_same_log_index() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("dup");
    let other = Chain::new("dup-other").grant(b, &["dpv:Marketing"]);
    node.submit(&other, 201);
    let e = c.grant(b, &["dpv:Marketing"]);
    let first = node.submit(&e, 201);
    assert_eq!(first.log_index, Some(1));

    let again = node.submit(&e, 200);
    assert_eq!(again.status, SubmitStatus::Duplicate);
    assert_eq!((again.hash, again.log_index), (e.hash(), Some(1)));
    // The binary form of the same entry is the same entry.
    let bin = node
        .post_entry_bytes(&e.to_bytes())
        .expect_status(200)
        .json();
    assert_eq!(bin["status"], json!("duplicate"));
    assert_eq!(bin["log_index"], json!(1));
    assert_eq!(node.info().log_size, 2, "a duplicate must not grow the log");
}

#[test]
fn entry_ahead_of_its_predecessor_waits_pending_until_the_gap_fills() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("gap");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.grant(b, &["dpv:ServiceProvision"]);
    let e3 = c.withdraw(b, &["dpv:Marketing"]);
    node.submit(&e1, 201);

    let p = node.submit(&e3, 202);
    assert_eq!(p.status, SubmitStatus::Pending);
    assert_eq!((p.seq, p.log_index), (3, None));
    assert_eq!(node.info().pending, 1);
    assert_eq!(node.info().log_size, 1, "a pending entry is not in the log");
    node.get(&format!("/v1/entries/{}", e3.hash()))
        .expect_status(404);
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_decision(&chk, Verdict::Allow, "dpv:ConsentGiven", Some(1));
    assert_eq!(chk.head_seq, 1);
    // Asking again while it waits changes nothing.
    node.submit(&e3, 202);
    assert_eq!(node.info().pending, 1);

    let filled = node.submit(&e2, 201);
    assert_eq!(filled.log_index, Some(1));
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_decision(&chk, Verdict::Deny, "dpv:ConsentWithdrawn", Some(3));
    assert_eq!(chk.head_seq, 3);
    let chain: ChainResponse = node
        .get(&format!("/v1/subjects/{}/entries", c.id()))
        .expect_status(200)
        .parse();
    assert_eq!(chain.head_seq, 3);
    let hashes: Vec<Hash> = chain.entries.iter().map(|r| r.hash).collect();
    assert_eq!(hashes, vec![e1.hash(), e2.hash(), e3.hash()]);
    let rec: EntryRecord = node
        .get(&format!("/v1/entries/{}", e3.hash()))
        .expect_status(200)
        .parse();
    assert_eq!(rec.log_index, 2);
    let info = node.info();
    assert_eq!((info.pending, info.log_size), (0, 3));
    // Once stored, the formerly pending entry is a duplicate.
    assert_eq!(node.submit(&e3, 200).log_index, Some(2));
}

#[test]
fn second_valid_entry_at_a_taken_seq_is_a_fork_and_every_check_denies() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("forker");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.grant(b, &["dpv:ServiceProvision"]);
    node.submit_all(&[e1.clone(), e2.clone()]);
    let mut alt = c.clone();
    alt.entries.truncate(1);
    let conflicting = alt.withdraw(b, &[]);
    assert_ne!(conflicting.hash(), e2.hash());

    let r = node.post_entry_json(&conflicting).expect_status(409);
    let body = r.json();
    assert_eq!(body["error"], json!("fork"), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let proof: ForkProof = serde_json::from_value(body["fork_proof"].clone())
        .unwrap_or_else(|e| panic!("fork_proof does not parse ({e}): {body}"));
    proof.verify().expect("the served fork proof verifies");
    assert_eq!((proof.subject(), proof.seq()), (c.id(), 2));
    let mut pair = [proof.a.hash(), proof.b.hash()];
    pair.sort();
    let mut expected = [e2.hash(), conflicting.hash()];
    expected.sort();
    assert_eq!(pair, expected);

    for purpose in ["dpv:Marketing", "dpv:ServiceProvision", "dpv:Advertising"] {
        let chk = node.check(&c.id(), &b, purpose);
        assert_eq!(
            (chk.decision, chk.status.as_str()),
            (Verdict::Deny, "forked"),
            "{chk:?}"
        );
    }
    let chain: ChainResponse = node
        .get(&format!("/v1/subjects/{}/entries", c.id()))
        .expect_status(200)
        .parse();
    assert!(chain.forked);
    assert_eq!(chain.head_seq, 2);
    let hashes: Vec<Hash> = chain.entries.iter().map(|r| r.hash).collect();
    assert_eq!(
        hashes,
        vec![e1.hash(), e2.hash()],
        "the stored chain is kept"
    );
    let consents: ConsentsResponse = node
        .get(&format!("/v1/subjects/{}/consents", c.id()))
        .expect_status(200)
        .parse();
    assert!(consents.forked);
    assert!(!consents.consents.is_empty());
    assert!(
        consents
            .consents
            .iter()
            .all(|i| i.decision == Verdict::Deny && i.status == "forked"),
        "{consents:?}"
    );
    assert_eq!(node.info().forks, 1);
    assert_eq!(
        node.info().log_size,
        2,
        "the conflicting entry is not stored"
    );
    // The same conflict again is still a fork, counted once.
    node.post_entry_json(&conflicting).expect_status(409);
    assert_eq!(node.info().forks, 1);

    // A fork at seq 1: two different first entries signed by the subject.
    let mut d = Chain::new("forker-at-one");
    let d1 = d.grant(b, &["dpv:Marketing"]);
    node.submit(&d1, 201);
    let mut d_alt = Chain::new("forker-at-one");
    let d1_alt = d_alt.refuse(b, &[]);
    let r = node.post_entry_json(&d1_alt).expect_status(409);
    assert_eq!(r.json()["error"], json!("fork"));
    let chk = node.check(&d.id(), &b, "dpv:Marketing");
    assert_eq!(
        (chk.decision, chk.status.as_str()),
        (Verdict::Deny, "forked")
    );
    assert_eq!(node.info().forks, 2);
}

#[test]
fn withdraw_and_refuse_turn_allow_into_deny_with_their_dpv_status() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("withdrawer");
    node.submit(&c.grant(b, &["dpv:Marketing"]), 201);
    let chk = node.check(&c.id(), &b, "dpv:DirectMarketing");
    assert_decision(&chk, Verdict::Allow, "dpv:ConsentGiven", Some(1));

    node.submit(&c.withdraw(b, &["dpv:DirectMarketing"]), 201);
    let chk = node.check(&c.id(), &b, "dpv:DirectMarketing");
    assert_decision(&chk, Verdict::Deny, "dpv:ConsentWithdrawn", Some(2));
    // Withdrawing a narrower purpose means the broader one can no longer be used as a whole ...
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_decision(&chk, Verdict::Deny, "dpv:ConsentWithdrawn", Some(2));
    // ... while a sibling narrower purpose stays granted.
    let chk = node.check(&c.id(), &b, "dpv:Advertising");
    assert_decision(&chk, Verdict::Allow, "dpv:ConsentGiven", Some(1));

    // A refuse naming no purpose covers every purpose of the controller.
    node.submit(&c.refuse(b, &[]), 201);
    for p in ["dpv:Advertising", "dpv:Marketing", "dpv:ServiceProvision"] {
        let chk = node.check(&c.id(), &b, p);
        assert_decision(&chk, Verdict::Deny, "dpv:ConsentRefused", Some(3));
    }
    // Granting again allows again: the latest entry decides.
    node.submit(&c.grant(b, &["dpv:Advertising"]), 201);
    let chk = node.check(&c.id(), &b, "dpv:Advertising");
    assert_decision(&chk, Verdict::Allow, "dpv:ConsentGiven", Some(4));
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_decision(&chk, Verdict::Deny, "dpv:ConsentRefused", Some(3));
}

#[test]
fn batch_check_answers_each_question_in_order_and_flags_invalid_ones_individually() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("batch");
    let t = now_ms();
    node.submit(&c.at(t - 60_000).grant(b, &["dpv:Marketing"]), 201);
    let s = c.id().to_string();
    let q = |subject: &str, controller: &str, purpose: &str| json!({"subject": subject, "controller": controller, "purpose": purpose});
    let questions = vec![
        q(&s, &b.to_string(), "dpv:Marketing"),
        q(&s, &brand("other").to_string(), "dpv:Marketing"),
        q("not-hex", &b.to_string(), "dpv:Marketing"),
        q(&s, &b.to_string(), "dpv:Marketting"),
        json!({"subject": s, "controller": b.to_string(), "purpose": "dpv:Marketing", "at": "yesterday"}),
        json!({"subject": s, "controller": b.to_string(), "purpose": "dpv:Marketing", "at": rfc3339(t - 120_000)}),
        q(&s, &b.to_string(), "dpv:DirectMarketing"),
    ];
    let r = node
        .post_json("/v1/consent/check", &json!({ "questions": questions }))
        .expect_status(200)
        .json();
    let answers = r["answers"].as_array().expect("answers array");
    assert_eq!(answers.len(), questions.len(), "{r}");
    let decision = |i: usize| answers[i]["decision"].as_str().unwrap_or("(none)");
    let error = |i: usize| {
        (
            answers[i]["error"].as_str().unwrap_or("(none)"),
            answers[i]["message"].as_str().unwrap_or(""),
        )
    };
    assert_eq!(decision(0), "allow", "{}", answers[0]);
    assert_eq!(answers[0]["seq"], json!(1));
    assert_eq!(decision(1), "unknown", "{}", answers[1]);
    assert_eq!(error(2).0, "bad_request", "{}", answers[2]);
    assert!(error(2).1.contains("subject"), "{}", answers[2]);
    assert_eq!(error(3).0, "bad_request", "{}", answers[3]);
    assert!(
        error(3).1.contains("did you mean") && error(3).1.contains("dpv:Marketing"),
        "{}",
        answers[3]
    );
    assert_eq!(error(4).0, "bad_request", "{}", answers[4]);
    assert!(error(4).1.contains("RFC 3339"), "{}", answers[4]);
    assert_eq!(decision(5), "unknown", "before the grant: {}", answers[5]);
    assert_eq!(decision(6), "allow", "{}", answers[6]);
    assert_eq!(answers[6]["purpose"], json!("dpv:DirectMarketing"));

    // Exactly the limit is answered.
    let many: Vec<Value> = (0..1000)
        .map(|_| q(&s, &b.to_string(), "dpv:Marketing"))
        .collect();
    let r = node
        .post_json("/v1/consent/check", &json!({ "questions": many }))
        .expect_status(200)
        .json();
    assert_eq!(r["answers"].as_array().map(Vec::len), Some(1000));
}

#[test]
fn batch_check_with_more_than_1000_questions_is_refused() {
    let node = TestNode::new();
    let b = brand("a").to_string();
    let s = Chain::new("too-many").id().to_string();
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"subject": s, "controller": b, "purpose": "dpv:Marketing"}))
        .collect();
    let r = node
        .post_json("/v1/consent/check", &json!({ "questions": too_many }))
        .expect_status(400);
    let (code, message) = r.error_body().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, "bad_request");
    assert!(
        message.contains("1000") && message.contains("1001"),
        "{message}"
    );
}

#[test]
fn subject_entries_and_consents_serve_the_chain_and_its_current_state() {
    let node = TestNode::new();
    let (b, b2) = (brand("a"), brand("b"));
    let mut c = Chain::new("reader");
    let mut entries = vec![
        c.grant(b, &["dpv:Marketing", "dpv:ServicePersonalisation"]),
        c.withdraw(b, &["dpv:DirectMarketing"]),
        c.rotate(key("reader/second-key"), &key("reader/second-recovery")),
        c.refuse(b2, &[]),
    ];
    // An unrelated subject in between, so log indexes and seqs differ.
    node.submit(&Chain::new("noise").grant(b, &["dpv:Marketing"]), 201);
    let acks = node.submit_all(&entries);

    let chain: ChainResponse = node
        .get(&format!("/v1/subjects/{}/entries", c.id()))
        .expect_status(200)
        .parse();
    assert_eq!(
        (chain.subject, chain.head_seq, chain.forked),
        (c.id(), 4, false)
    );
    assert_eq!(chain.entries.len(), 4);
    for ((rec, e), ack) in chain.entries.iter().zip(&entries).zip(&acks) {
        assert_eq!(rec.hash, e.hash());
        assert_eq!(&rec.entry, e);
        assert_eq!(rec.hex, hex::encode(e.to_bytes()));
        assert_eq!(Some(rec.log_index), ack.log_index);
    }
    let page: ChainResponse = node
        .get(&format!(
            "/v1/subjects/{}/entries?from_seq=2&limit=2",
            c.id()
        ))
        .expect_status(200)
        .parse();
    let seqs: Vec<u64> = page.entries.iter().map(|r| r.entry.seq()).collect();
    assert_eq!((page.head_seq, seqs), (4, vec![2, 3]));
    let past_head: ChainResponse = node
        .get(&format!("/v1/subjects/{}/entries?from_seq=5", c.id()))
        .expect_status(200)
        .parse();
    assert!(past_head.entries.is_empty());
    let unknown: ChainResponse = node
        .get(&format!(
            "/v1/subjects/{}/entries",
            Chain::new("nobody").id()
        ))
        .expect_status(200)
        .parse();
    assert_eq!((unknown.head_seq, unknown.forked), (0, false));
    assert!(unknown.entries.is_empty());

    let subject = c.id();
    type Item = (PublicKey, String, Verdict, String, Option<u64>);
    let state = |node: &TestNode| -> Vec<Item> {
        let r: ConsentsResponse = node
            .get(&format!("/v1/subjects/{subject}/consents"))
            .expect_status(200)
            .parse();
        assert_eq!((r.subject, r.forked), (subject, false));
        r.consents
            .into_iter()
            .map(|i| (i.controller, i.purpose, i.decision, i.status, i.seq))
            .collect()
    };
    // A refuse naming no purpose is listed as purpose "*"; items are sorted by controller, purpose.
    let item = |ctl: PublicKey, purpose: &str, v: Verdict, status: &str, seq: u64| -> Item {
        (ctl, purpose.into(), v, status.into(), Some(seq))
    };
    let sorted = |mut v: Vec<Item>| {
        v.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
        v
    };
    let (allow, deny) = (Verdict::Allow, Verdict::Deny);
    let (given, withdrawn) = ("dpv:ConsentGiven", "dpv:ConsentWithdrawn");
    let refused_all = item(b2, "*", deny, "dpv:ConsentRefused", 4);
    assert_eq!(
        state(&node),
        sorted(vec![
            item(b, "dpv:DirectMarketing", deny, withdrawn, 2),
            item(b, "dpv:Marketing", deny, withdrawn, 2),
            item(b, "dpv:ServicePersonalisation", allow, given, 1),
            refused_all.clone(),
        ])
    );

    // After the rotation the new key signs; the state follows.
    let e5 = c.grant(b, &["dpv:Marketing"]);
    node.submit(&e5, 201);
    entries.push(e5);
    assert_eq!(
        state(&node),
        sorted(vec![
            item(b, "dpv:DirectMarketing", allow, given, 5),
            item(b, "dpv:Marketing", allow, given, 5),
            item(b, "dpv:ServicePersonalisation", allow, given, 1),
            refused_all,
        ])
    );
    let chk = node.check(&c.id(), &b2, "dpv:ServiceProvision");
    assert_decision(&chk, Verdict::Deny, "dpv:ConsentRefused", Some(4));
    let nobody: ConsentsResponse = node
        .get(&format!(
            "/v1/subjects/{}/consents",
            Chain::new("nobody").id()
        ))
        .expect_status(200)
        .parse();
    assert_eq!(nobody.head_seq, 0);
    assert!(nobody.consents.is_empty());
}

#[test]
fn entry_by_hash_serves_the_record_and_an_unknown_hash_is_404() {
    let node = TestNode::new();
    let mut c = Chain::new("by-hash");
    let e = c.grant(brand("a"), &["dpv:Marketing"]);
    node.submit(
        &Chain::new("first").grant(brand("a"), &["dpv:Marketing"]),
        201,
    );
    node.submit(&e, 201);
    let rec: EntryRecord = node
        .get(&format!("/v1/entries/{}", e.hash()))
        .expect_status(200)
        .parse();
    assert_eq!((rec.hash, rec.log_index), (e.hash(), 1));
    assert_eq!(rec.entry, e);
    assert_eq!(rec.hex, hex::encode(e.to_bytes()));

    let unknown = Hash::from_bytes([7; 32]);
    let r = node
        .get(&format!("/v1/entries/{unknown}"))
        .expect_status(404);
    let (code, message) = r.error_body().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, "not_found");
    assert!(message.contains(&unknown.to_string()), "{message}");
}

#[test]
fn log_entries_serve_ndjson_in_ingest_order_with_paging() {
    let node = TestNode::new();
    let b = brand("a");
    let (mut x, mut y) = (Chain::new("log-x"), Chain::new("log-y"));
    let order = vec![
        x.grant(b, &["dpv:Marketing"]),
        y.grant(b, &["dpv:Marketing"]),
        x.withdraw(b, &[]),
        y.refuse(b, &["dpv:Advertising"]),
        x.grant(b, &["dpv:ServiceProvision"]),
    ];
    node.submit_all(&order);

    let lines = |path: &str| -> Vec<LogLine> {
        let r = node.get(path).expect_status(200);
        assert_eq!(r.content_type.as_deref(), Some("application/x-ndjson"));
        r.body
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line ({e}): {l}"))
            })
            .collect()
    };
    let all = lines("/v1/log/entries");
    assert_eq!(all.len(), order.len());
    for (i, (line, e)) in all.iter().zip(&order).enumerate() {
        assert_eq!(line.log_index, i as u64);
        assert_eq!(line.hash, e.hash());
        let bytes = hex::decode(&line.hex).expect("hex in a log line");
        assert_eq!(hash_entry_bytes(&bytes), line.hash, "hex and hash agree");
        assert_eq!(bytes, e.to_bytes());
    }
    let page: Vec<u64> = lines("/v1/log/entries?start=1&limit=2")
        .iter()
        .map(|l| l.log_index)
        .collect();
    assert_eq!(page, vec![1, 2]);
    assert!(lines("/v1/log/entries?start=5").is_empty());
}

#[test]
fn service_endpoints_report_health_info_metrics_and_openapi() {
    let node = TestNode::new();
    node.submit(
        &Chain::new("svc").grant(brand("a"), &["dpv:Marketing"]),
        201,
    );

    let health = node.get("/healthz").expect_status(200).json();
    assert_eq!(health, json!({"status": "ok", "writable": true}));

    let info = node.info();
    assert_eq!(info.node_key.to_string().len(), 64);
    assert_eq!(info.entry_version, 1);
    assert!(!info.version.is_empty());
    assert!(!info.vocabulary.is_empty());
    assert_eq!(
        (info.log_size, info.subjects, info.pending, info.forks),
        (1, 1, 0, 0)
    );
    assert!(info.writable);

    let metrics = node.get("/metrics").expect_status(200);
    let ingested = metrics
        .body
        .lines()
        .find(|l| l.starts_with("consent_entries_ingested_total"))
        .unwrap_or_else(|| panic!("no consent_entries_ingested_total in:\n{}", metrics.body));
    assert_eq!(
        ingested.split_whitespace().nth(1),
        Some("1"),
        "one entry ingested: {ingested}"
    );
    assert!(
        metrics.body.contains("consent_log_size"),
        "{}",
        metrics.body
    );

    let api = node.get("/openapi.json").expect_status(200).json();
    let paths = api["paths"].as_object().expect("openapi paths object");
    for p in [
        "/v1/entries",
        "/v1/entries/{hash}",
        "/v1/consent/check",
        "/v1/events",
        "/v1/node/info",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
}

#[test]
fn check_at_a_past_time_answers_the_state_as_of_then() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("time-traveller");
    let t = now_ms();
    let (t1, t2, t3) = (t - 300_000, t - 200_000, t - 100_000);
    node.submit_all(&[
        c.at(t1).grant(b, &["dpv:Marketing"]),
        c.at(t2).withdraw(b, &["dpv:Marketing"]),
        c.at(t3).grant(b, &["dpv:DirectMarketing"]),
    ]);
    let s = c.id();

    let before = node.check_at(&s, &b, "dpv:Marketing", t1 - 1);
    assert_decision(&before, Verdict::Unknown, "dpv:ConsentUnknown", None);
    assert_eq!(before.at, t1 - 1, "the answer names the time judged at");
    let granted = node.check_at(&s, &b, "dpv:Marketing", t1);
    assert_decision(&granted, Verdict::Allow, "dpv:ConsentGiven", Some(1));
    let granted = node.check_at(&s, &b, "dpv:Marketing", t2 - 1);
    assert_decision(&granted, Verdict::Allow, "dpv:ConsentGiven", Some(1));
    let withdrawn = node.check_at(&s, &b, "dpv:DirectMarketing", t2);
    assert_decision(&withdrawn, Verdict::Deny, "dpv:ConsentWithdrawn", Some(2));
    let now = node.check(&s, &b, "dpv:DirectMarketing");
    assert_decision(&now, Verdict::Allow, "dpv:ConsentGiven", Some(3));
    let now = node.check(&s, &b, "dpv:Marketing");
    assert_decision(&now, Verdict::Deny, "dpv:ConsentWithdrawn", Some(2));

    // The same instant written with a +01:00 offset (the `+` percent-encoded in the query).
    let local = rfc3339(t1 + 1000 + 3_600_000).replace('Z', "%2B01:00");
    let r: CheckResponse = node
        .get(&format!(
            "/v1/consent/check?subject={s}&controller={b}&purpose=dpv:Marketing&at={local}"
        ))
        .expect_status(200)
        .parse();
    assert_eq!(r.at, t1 + 1000);
    assert_decision(&r, Verdict::Allow, "dpv:ConsentGiven", Some(1));
}

/// Regression (found by this suite at d0c97b3, ledger.rs `Pending::insert`): a second, different
/// entry for a (subject, seq) that already had one waiting was answered `202 pending` but kept
/// nowhere. A stranger could park junk (signed by their own key, which passes the stand-alone
/// checks) at a subject's future seq, and the subject's real withdraw was then silently dropped
/// when the gap filled: brands kept getting "allow".
#[test]
fn pending_withdraw_is_applied_when_its_gap_fills_even_if_a_stranger_parked_junk_at_its_seq() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("parked");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.grant(b, &["dpv:Advertising"]);
    let real3 = c.withdraw(b, &[]);
    node.submit(&e1, 201);

    let stranger = key("parked/stranger");
    let mut junk = real3.content.clone();
    junk.signer = stranger.public_key();
    junk.prev = Hash::from_bytes([3; 32]);
    let junk = tests::sign_as(junk, &stranger);
    node.submit(&junk, 202);

    let real3_status = node.post_entry_json(&real3).status;
    node.submit(&e2, 201);
    let head = node.chain(&c.id()).head_seq;
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    // docs/API.md: up to 4 different candidates wait at one (subject, seq), so the real withdraw
    // waits beside the junk (202), and the one that links is applied when the gap fills.
    assert_eq!(
        real3_status, 202,
        "a second candidate at a pending seq is kept (API.md, pending area)"
    );
    assert!(
        head == 3 && chk.status == "dpv:ConsentWithdrawn",
        "the withdraw at seq 3 was answered 202 (pending) but not applied when seq 2 arrived: \
         head_seq {head}, check {chk:?}"
    );
    assert_eq!(
        node.info().pending,
        0,
        "the junk candidate is dropped once seq 3 is taken"
    );
}

#[test]
fn pending_area_is_bounded_and_answers_503_when_full() {
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let config = config_dir.path().join("node.toml");
    tests::write_file(&config, "pending_max = 2\n");
    let node = TestNode::spawn(
        tests::NodeOptions::new().args(&["--config", config.to_str().expect("UTF-8 path")]),
    );
    let b = brand("a");
    let mut chains: Vec<Chain> = (0..3).map(|i| Chain::new(&format!("full-{i}"))).collect();
    let firsts: Vec<_> = chains
        .iter_mut()
        .map(|c| c.grant(b, &["dpv:Marketing"]))
        .collect();
    let seconds: Vec<_> = chains
        .iter_mut()
        .map(|c| c.withdraw(b, &["dpv:Marketing"]))
        .collect();
    node.submit(&seconds[0], 202);
    node.submit(&seconds[1], 202);
    let r = node.post_entry_json(&seconds[2]).expect_status(503);
    let (code, _) = r.error_body().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"), "503 says when to retry");
    assert_eq!(node.info().pending, 2);
    // An entry already waiting is answered 202 again even while the area is full.
    node.submit(&seconds[1], 202);
    assert_eq!(node.info().pending, 2);

    // Filling a gap frees a place.
    node.submit(&firsts[0], 201);
    assert_eq!(node.info().pending, 1);
    assert_eq!(node.chain(&chains[0].id()).head_seq, 2);
    node.submit(&seconds[2], 202);
    node.submit(&firsts[2], 201);
    node.submit(&firsts[1], 201);
    let info = node.info();
    assert_eq!((info.pending, info.log_size), (0, 6));
}

#[test]
fn entry_media_type_is_case_insensitive_may_carry_parameters_and_defaults_to_json() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("media");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.withdraw(b, &["dpv:Marketing"]);
    let e3 = c.grant(b, &["dpv:Advertising"]);
    let e4 = c.grant(b, &["dpv:ServiceProvision"]);
    let json_of = |e: &proto::entry::Entry| serde_json::to_vec(e).expect("entry JSON");
    node.post_raw(
        "/v1/entries",
        Some("application/json; charset=utf-8"),
        &json_of(&e1),
    )
    .expect_status(201);
    node.post_raw("/v1/entries", None, &json_of(&e2))
        .expect_status(201);
    node.post_raw(
        "/v1/entries",
        Some("application/octet-stream; x=y"),
        &e3.to_bytes(),
    )
    .expect_status(201);
    // Media type and subtype are case-insensitive (RFC 9110, section 8.3.1).
    node.post_raw("/v1/entries", Some("Application/JSON"), &json_of(&e4))
        .expect_status(201);
    assert_eq!(node.chain(&c.id()).head_seq, 4);
}

#[test]
fn two_valid_candidates_waiting_at_one_seq_become_a_fork_when_the_gap_fills() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("pending-fork");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.grant(b, &["dpv:Advertising"]);
    let mut alt = c.clone();
    let first = c.withdraw(b, &["dpv:Marketing"]);
    let second = alt.refuse(b, &[]);
    node.submit(&e1, 201);
    node.submit(&first, 202);
    node.submit(&second, 202);
    assert_eq!(node.info().pending, 2);

    node.submit(&e2, 201);
    // The first candidate in arrival order extends the chain; the other proves the fork.
    let chain = node.chain(&c.id());
    assert!(chain.forked);
    assert_eq!(chain.head_seq, 3);
    assert_eq!(chain.entries[2].hash, first.hash());
    let info = node.info();
    assert_eq!((info.pending, info.forks, info.log_size), (0, 1, 3));
    let proof: ForkProof = node
        .get(&format!("/v1/subjects/{}/fork", c.id()))
        .expect_status(200)
        .parse();
    let mut pair = [proof.a.hash(), proof.b.hash()];
    pair.sort();
    let mut expected = [first.hash(), second.hash()];
    expected.sort();
    assert_eq!(pair, expected);
    // Submitting the losing candidate again is a 409; the winner is a duplicate.
    node.post_entry_json(&second).expect_status(409);
    node.submit(&first, 200);
    let chk = node.check(&c.id(), &b, "dpv:Advertising");
    assert_eq!(
        (chk.decision, chk.status.as_str()),
        (Verdict::Deny, "forked")
    );

    // A forked subject still accepts later entries, which change no decision.
    let later = c.grant(b, &["dpv:ServiceProvision"]);
    node.submit(&later, 201);
    let chk = node.check(&c.id(), &b, "dpv:ServiceProvision");
    assert_eq!(
        (chk.decision, chk.status.as_str(), chk.head_seq),
        (Verdict::Deny, "forked", 4)
    );
}

#[test]
fn at_most_four_different_candidates_wait_at_one_seq() {
    let node = TestNode::new();
    let b = brand("a");
    let mut c = Chain::new("candidates");
    c.grant(b, &["dpv:Marketing"]); // seq 1, never submitted: seq 2 waits
    let stranger = key("candidates/stranger");
    let candidate = |i: u8| {
        let mut content = c.content(proto::entry::Body::Grant(tests::consent(
            b,
            &["dpv:Marketing"],
        )));
        content.signer = stranger.public_key();
        content.prev = Hash::from_bytes([i; 32]);
        tests::sign_as(content, &stranger)
    };
    let candidates: Vec<_> = (1..=5).map(candidate).collect();
    for e in &candidates[..4] {
        node.submit(e, 202);
    }
    let r = node.post_entry_json(&candidates[4]).expect_status(503);
    assert_eq!(
        r.error_body().map(|(code, _)| code),
        Ok("unavailable".to_owned())
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    // An entry that is already waiting is still answered 202.
    node.submit(&candidates[1], 202);
    assert_eq!(node.info().pending, 4);
}
