//! Witnesses (issue 6, item 3) on three real replicating nodes: every node collects its peers'
//! C2SP cosignatures on its checkpoints and serves them at `/v1/log/checkpoint`; the C2SP
//! add-checkpoint endpoint answers each bad request with its status and changes nothing; and a
//! log that shows two witnesses two histories of one size is caught: every node reports the
//! split view.

use std::time::Duration;

use proto::keys::{Hash, SecretKey};
use proto::merkle;
use proto::note::{Checkpoint, Note};
use proto::witness::{AddCheckpoint, Cosigner, SplitView, NODE_ORIGIN_PREFIX};
use serde_json::Value;
use tests::{key, wait_for, Chain, TestNode};

const WAIT: Duration = Duration::from_secs(40);

fn cosigner_of(n: &TestNode) -> Cosigner {
    Cosigner::from_vkey(&n.info().witness_vkey).expect("witness vkey")
}

/// A forged log: its key and trees the test builds itself.
struct FakeLog {
    key: SecretKey,
}

impl FakeLog {
    fn origin(&self) -> String {
        format!("{NODE_ORIGIN_PREFIX}{}", self.key.public_key())
    }

    fn leaves(size: u64, history: u8) -> Vec<Hash> {
        (0..size)
            .map(|i| {
                let mut b = [history; 32];
                b[..8].copy_from_slice(&i.to_be_bytes());
                merkle::leaf_hash(&b)
            })
            .collect()
    }

    fn checkpoint(&self, size: u64, history: u8) -> String {
        Checkpoint {
            origin: self.origin(),
            size,
            root: merkle::root(&Self::leaves(size, history)[..], size),
            extensions: vec![],
        }
        .sign(&self.origin(), &self.key)
        .expect("sign")
        .to_text()
    }

    fn add(&self, old: u64, size: u64, history: u8) -> Vec<u8> {
        let proof = if old == 0 {
            vec![]
        } else {
            merkle::consistency_proof(&Self::leaves(size, history)[..], old, size).expect("proof")
        };
        AddCheckpoint {
            old,
            proof,
            checkpoint: self.checkpoint(size, history),
        }
        .to_text()
        .into_bytes()
    }
}

fn audit_export(n: &TestNode) -> proto::audit::AuditReport {
    let export = n.get("/v1/log/export").expect_status(200).body;
    let lines = proto::audit::parse_export(&export).expect("export parses");
    proto::audit::audit(
        &lines,
        &proto::audit::AuditOptions::default(),
        tests::now_ms(),
        &proto::audit::verify_signatures_sequential,
    )
}

fn add_checkpoint(n: &TestNode, body: &[u8]) -> tests::Reply {
    n.post_raw("/v1/witness/add-checkpoint", Some("text/plain"), body)
}

fn witnessed_size(n: &TestNode, origin: &str) -> Option<u64> {
    n.get("/v1/witness").expect_status(200).json()["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .find(|l| l["origin"] == origin)
        .and_then(|l| l["size"].as_u64())
}

#[test]
fn nodes_cosign_each_others_checkpoints() {
    let cluster = tests::cluster(3);
    let [a, b, c] = [&cluster[0], &cluster[1], &cluster[2]];
    let mut customer = Chain::new("witnessed");
    a.submit(
        &customer.grant(key("brand").public_key(), &["dpv:Marketing"]),
        201,
    );
    a.submit(
        &customer.withdraw(key("brand").public_key(), &["dpv:Marketing"]),
        201,
    );
    let log = Cosigner::from_vkey(&a.info().witness_vkey).expect("vkey");
    let log_verifier = proto::note::Verifier::from_vkey(&a.info().log_vkey).expect("log vkey");
    let (wb, wc) = (cosigner_of(b), cosigner_of(c));
    assert_ne!(wb, log);
    wait_for(WAIT, "A's checkpoint cosigned by B and C", || {
        let r = a.get("/v1/log/checkpoint?cosigned=true");
        if r.status != 200 {
            return false;
        }
        let note = Note::parse(&r.body).expect("note");
        wb.verify(&note).is_ok() && wc.verify(&note).is_ok()
    });
    let note = Note::parse(&a.get("/v1/log/checkpoint?cosigned=true").body).expect("note");
    note.verify(&log_verifier).expect("A's own signature");
    let (cp, _) = Checkpoint::open(&note.to_text(), &log_verifier).expect("checkpoint");
    assert!(cp.size >= 2, "size {}", cp.size);
    // The witnesses say what they hold for A's log, and it is what they cosigned or newer.
    for w in [b, c] {
        let held = witnessed_size(w, &a.info().log_origin).expect("A's log witnessed");
        assert!(held >= cp.size);
    }
    // Once the log grows, the witnesses cosign the larger checkpoint (a consistency proof from
    // the size they hold).
    a.submit(
        &customer.grant(key("brand").public_key(), &["dpv:ServiceProvision"]),
        201,
    );
    wait_for(WAIT, "a larger checkpoint cosigned", || {
        let r = a.get("/v1/log/checkpoint?cosigned=true");
        let Ok(n) = Note::parse(&r.body) else {
            return false;
        };
        Checkpoint::from_text(&n.text).is_ok_and(|c| c.size > cp.size)
            && wb.verify(&n).is_ok()
            && wc.verify(&n).is_ok()
    });
    // The export carries the cosigned checkpoints, and the audit checks every cosignature.
    let report = audit_export(a);
    assert!(report.ok, "{:?}", report.anomalies);
    assert!(
        report
            .checkpoints
            .iter()
            .any(|c| c.cosigners.contains(&wb.name) && c.cosigners.contains(&wc.name)),
        "{:?}",
        report.checkpoints
    );
    // Nobody has seen a split view.
    for n in [a, b, c] {
        assert_eq!(n.info().split_views, 0);
        assert_eq!(n.get("/v1/log/split-views").json(), Value::Array(vec![]));
    }
}

#[test]
fn add_checkpoint_refuses_bad_requests_with_the_c2sp_status_and_keeps_its_state() {
    let n = TestNode::new();
    let log = FakeLog {
        key: SecretKey::from_seed([41; 32]),
    };
    let origin = log.origin();
    // First contact: old 0, no proof.
    let r = add_checkpoint(&n, &log.add(0, 4, 1)).expect_status(200);
    let mut note = Note::parse(&log.checkpoint(4, 1)).expect("note");
    proto::witness::add_signature_lines(&mut note, &r.body).expect("cosignature lines");
    let ts = cosigner_of(&n).verify(&note).expect("cosignature verifies");
    assert!(ts > 1_600_000_000, "timestamp {ts}");
    assert_eq!(witnessed_size(&n, &origin), Some(4));

    let other_key = FakeLog {
        key: SecretKey::from_seed([42; 32]),
    };
    let mut forged = other_key.checkpoint(6, 1);
    forged = forged.replace(&other_key.origin(), &origin);
    // Its own log's checkpoint, as a first contact: a witness does not cosign itself.
    let own = format!(
        "old 0\n\n{}",
        n.get("/v1/log/checkpoint").expect_status(200).body
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("the witness's own log", own.into_bytes(), 404),
        ("not a body", b"hello".to_vec(), 400),
        ("not UTF-8", vec![0xff, 0xfe, b'\n', b'\n'], 400),
        (
            "old with a leading zero",
            {
                let b = String::from_utf8(log.add(4, 6, 1)).expect("utf8");
                b.replacen("old 4", "old 04", 1).into_bytes()
            },
            400,
        ),
        (
            "old beyond the size",
            AddCheckpoint {
                old: 9,
                proof: vec![],
                checkpoint: log.checkpoint(6, 1),
            }
            .to_text()
            .into_bytes(),
            400,
        ),
        (
            "an origin that is not a consent-ledger log",
            AddCheckpoint {
                old: 0,
                proof: vec![],
                checkpoint: Checkpoint {
                    origin: "example.com/log".into(),
                    size: 1,
                    root: Hash::ZERO,
                    extensions: vec![],
                }
                .sign("example.com/log", &log.key)
                .expect("sign")
                .to_text(),
            }
            .to_text()
            .into_bytes(),
            404,
        ),
        (
            "a signature by another key",
            AddCheckpoint {
                old: 4,
                proof: vec![],
                checkpoint: forged,
            }
            .to_text()
            .into_bytes(),
            403,
        ),
        ("a stale old size", log.add(0, 6, 1), 409),
        ("a proof towards another history", log.add(4, 6, 2), 422),
    ];
    for (what, body, status) in cases {
        let r = add_checkpoint(&n, &body);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        if status == 409 {
            assert_eq!(
                r.content_type.as_deref(),
                Some("text/x.tlog.size"),
                "{what}"
            );
            assert_eq!(r.body, "4\n", "{what}");
        }
        assert_eq!(
            witnessed_size(&n, &origin),
            Some(4),
            "{what} changed the state"
        );
    }
    assert_eq!(n.info().split_views, 0);
    // The consistent extension is cosigned and recorded.
    add_checkpoint(&n, &log.add(4, 6, 1)).expect_status(200);
    assert_eq!(witnessed_size(&n, &origin), Some(6));
    // A different root for the size held: 409, and the two notes are a split-view proof.
    let r = add_checkpoint(&n, &log.add(6, 6, 2));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(witnessed_size(&n, &origin), Some(6));
    let views = n.get("/v1/log/split-views").expect_status(200).json();
    assert_eq!(views.as_array().map(Vec::len), Some(1), "{views}");
    assert_eq!(views[0]["origin"], origin);
    assert_eq!(views[0]["size"], 6);
    let proof: SplitView = serde_json::from_value(views[0].clone()).expect("a proof");
    proof.verify().expect("the proof verifies offline");
    // A larger checkpoint whose proof leads from another history's root at the held size (6,
    // not a power of two, so the proof names that root): 422, and the held note, the offered
    // note and that root with the proof are a split-view proof across two sizes.
    let r = add_checkpoint(&n, &log.add(6, 9, 2));
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(witnessed_size(&n, &origin), Some(6));
    assert_eq!(n.info().split_views, 2);
    let views = n.get("/v1/log/split-views").expect_status(200).json();
    let across = views
        .as_array()
        .and_then(|v| v.iter().find(|p| p["other_size"] == 9))
        .expect("a proof across sizes 6 and 9")
        .clone();
    assert_eq!(across["size"], 6, "{across}");
    let proof: SplitView = serde_json::from_value(across).expect("a proof");
    let (x, y) = proof.verify().expect("the proof verifies offline");
    assert_eq!((x.size.min(y.size), x.size.max(y.size)), (6, 9));
    // The node survives a restart with them.
    let mut n = n;
    n.restart();
    assert_eq!(n.info().split_views, 2);
    assert_eq!(witnessed_size(&n, &origin), Some(6));
}

#[test]
fn a_log_showing_two_witnesses_two_histories_is_reported_by_every_node() {
    let cluster = tests::cluster(3);
    let [a, b, c] = [&cluster[0], &cluster[1], &cluster[2]];
    let log = FakeLog {
        key: SecretKey::from_seed([51; 32]),
    };
    // The lying log shows B one history and C another, both of size 5: each witness, on its
    // own, sees nothing wrong and cosigns.
    add_checkpoint(b, &log.add(0, 5, 1)).expect_status(200);
    add_checkpoint(c, &log.add(0, 5, 2)).expect_status(200);
    // The witnesses gossip what they cosigned; every node compares and finds the split view.
    for n in [a, b, c] {
        wait_for(WAIT, "every node reports the split view", || {
            n.info().split_views == 1
        });
        let views = n.get("/v1/log/split-views").json();
        assert_eq!(views[0]["origin"], log.origin());
        let proof: SplitView = serde_json::from_value(views[0].clone()).expect("a proof");
        let (x, y) = proof.verify().expect("verifies");
        assert_eq!((x.size, y.size), (5, 5));
    }
    // Exports carry the proof, and the audit verifies and lists it (it is about another log, so
    // the exporting node's own log is still sound).
    let report = audit_export(a);
    assert!(report.ok, "{:?}", report.anomalies);
    assert_eq!(report.split_views.len(), 1);
    assert_eq!(report.split_views[0].origin, log.origin());
    let metrics = a.get("/metrics").body;
    assert!(
        metrics.lines().any(|l| l == "consent_split_views 1"),
        "metrics: {metrics}"
    );
}
