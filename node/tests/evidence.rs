//! Decision records (`evidence=true`) verify offline, and any changed byte makes them fail.
//! The node runs in-process on a real loopback socket with a real sled store.

use std::sync::Arc;

use node::checkpoint::Checkpointer;
use node::clock::Clock;
use node::http::{router, AppState};
use node::ledger::{Ledger, PendingLimits};
use node::metrics::Metrics;
use node::store::SledStore;
use proto::api::CheckResponse;
use proto::evidence::{verify_decision, EvidenceError};
use proto::note::Verifier;
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/testdata/vectors/v1.json"
    ))
    .expect("vectors");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_records_verify_offline_and_tampering_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("store"));
    let metrics = Arc::new(Metrics::new());
    let witness = Arc::new(node::witness::Witness::new(
        proto::SecretKey::from_seed([3; 32]),
        store.clone(),
        metrics.clone(),
        Clock::default(),
    ));
    let ledger = Ledger::start(store, metrics, Clock::default(), PendingLimits::default());
    let key = proto::SecretKey::from_seed([3; 32]);
    let checkpoints = Arc::new(Checkpointer::new(key.clone()));
    let trusted: Verifier = checkpoints.verifier();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = router(AppState {
        ledger: ledger.clone(),
        node_key: key.public_key(),
        checkpoints,
        witness,
        shutdown: shutdown.clone(),
        net: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });

    let v = vectors();
    let base = format!("http://{addr}");
    let result = tokio::task::spawn_blocking(move || {
        let agent = ureq::agent();
        for e in v["chains"][0]["entries"].as_array().expect("entries") {
            let bytes = hex::decode(e.as_str().expect("hex")).expect("hex");
            let r = agent
                .post(&format!("{base}/v1/entries"))
                .set("content-type", "application/octet-stream")
                .send_bytes(&bytes)
                .expect("submit");
            assert_eq!(r.status(), 201);
        }
        let subject = v["keys"][0]["public"].as_str().expect("subject").to_owned();
        let brand = v["keys"][7]["public"].as_str().expect("brand").to_owned();
        let ask = |purpose: &str, at: &str| -> CheckResponse {
            agent
                .get(&format!(
                    "{base}/v1/consent/check?subject={subject}&controller={brand}&purpose={purpose}&evidence=true{at}"
                ))
                .call()
                .expect("check")
                .into_json()
                .expect("json")
        };
        let now = ask("dpv:ServicePersonalisation", "");
        let past = ask("dpv:DirectMarketing", "&at=2026-01-01T00:00:30Z");
        let before = ask("dpv:ServicePersonalisation", "&at=2025-12-31T23:59:59Z");
        (now, past, before)
    })
    .await
    .expect("client");
    let (now, past, before) = result;
    assert_eq!(now.status, "dpv:ConsentGiven");
    let cp = verify_decision(&now, Some(&trusted)).expect("record verifies");
    assert_eq!(cp.size, 4);
    // As of a past time: only the first entry had been signed.
    assert_eq!(past.status, "dpv:ConsentGiven");
    assert_eq!(past.seq, Some(1));
    verify_decision(&past, Some(&trusted)).expect("past record verifies");
    // Before the first entry: an empty chain, nothing decides, and the record still verifies
    // although the subject's head is further on.
    assert_eq!(before.decision, proto::api::Verdict::Unknown);
    assert!(before.evidence.as_ref().expect("ev").chain.is_empty());
    assert!(before.head_seq > 0);
    verify_decision(&before, Some(&trusted)).expect("record before the first entry verifies");

    // Any changed byte of the chain, the decision or the checkpoint fails.
    let ev = now.evidence.clone().expect("evidence");
    for i in 0..ev.chain.len() {
        let mut bad = now.clone();
        let mut bytes = hex::decode(&ev.chain[i]).expect("hex");
        bytes[50] ^= 1;
        bad.evidence.as_mut().expect("ev").chain[i] = hex::encode(bytes);
        assert!(
            verify_decision(&bad, Some(&trusted)).is_err(),
            "chain entry {i}"
        );
    }
    let mut bad = now.clone();
    bad.status = "dpv:ConsentWithdrawn".into();
    assert!(matches!(
        verify_decision(&bad, Some(&trusted)),
        Err(EvidenceError::Decision(_))
    ));
    let mut bad = now.clone();
    bad.evidence.as_mut().expect("ev").checkpoint = ev.checkpoint.replacen('4', "5", 1);
    assert!(matches!(
        verify_decision(&bad, Some(&trusted)),
        Err(EvidenceError::Checkpoint(_))
    ));
    let mut bad = now.clone();
    bad.evidence.as_mut().expect("ev").chain.pop();
    assert!(
        verify_decision(&bad, Some(&trusted)).is_err(),
        "dropped head"
    );
    let other = Verifier {
        name: trusted.name.clone(),
        key: proto::SecretKey::from_seed([4; 32]).public_key(),
    };
    assert!(matches!(
        verify_decision(&now, Some(&other)),
        Err(EvidenceError::Checkpoint(_))
    ));

    shutdown.cancel();
    server.await.expect("join").expect("serve");
    ledger.shutdown().await;
}
