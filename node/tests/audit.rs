//! Export from a real node (in-process, real sled, real loopback HTTP) and audit it; every kind
//! of tampering named in the audit issue is caught and named in the report.

use std::sync::Arc;

use node::checkpoint::Checkpointer;
use node::clock::Clock;
use node::http::{router, AppState};
use node::ledger::{Ledger, PendingLimits};
use node::metrics::Metrics;
use node::store::SledStore;
use proto::audit::{audit, parse_export, verify_signatures_sequential, AuditOptions, ExportLine};
use proto::note::{Checkpoint, Verifier};

async fn exported() -> (Vec<ExportLine>, Verifier, proto::SecretKey) {
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
    let trusted = checkpoints.verifier();
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
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let text = tokio::task::spawn_blocking(move || {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../proto/testdata/vectors/v1.json"
            ))
            .expect("vectors"),
        )
        .expect("json");
        let agent = ureq::agent();
        let post = |hex: &str| {
            agent
                .post(&format!("{base}/v1/entries"))
                .set("content-type", "application/octet-stream")
                .send_bytes(&hex::decode(hex).expect("hex"))
                .map(|r| r.status())
                .map_err(|e| e.to_string())
        };
        let chains = v["chains"].as_array().expect("chains");
        for (i, e) in chains[0]["entries"]
            .as_array()
            .expect("c1")
            .iter()
            .enumerate()
        {
            post(e.as_str().expect("hex")).expect("submit");
            // A checkpoint after every entry, so the export carries several.
            let _ = agent
                .get(&format!("{base}/v1/log/checkpoint"))
                .call()
                .expect("checkpoint");
            let _ = i;
        }
        for e in chains[2]["entries"].as_array().expect("c2") {
            post(e.as_str().expect("hex")).expect("submit");
        }
        agent
            .get(&format!("{base}/v1/log/export"))
            .call()
            .expect("export")
            .into_string()
            .expect("body")
    })
    .await
    .expect("client");
    shutdown.cancel();
    server.await.expect("join").expect("serve");
    ledger.shutdown().await;
    (parse_export(&text).expect("parses"), trusted, key)
}

fn run(lines: &[ExportLine], trusted: &Verifier) -> proto::audit::AuditReport {
    let opts = AuditOptions {
        trusted: Some(trusted.clone()),
        ..AuditOptions::default()
    };
    audit(
        lines,
        &opts,
        1_900_000_000_000,
        &verify_signatures_sequential,
    )
}

fn entry_positions(lines: &[ExportLine]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, ExportLine::Entry { .. }))
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_an_honest_export_passes_and_every_tampering_is_named() {
    let (lines, trusted, key) = exported().await;
    let report = run(&lines, &trusted);
    assert!(report.ok, "{:?}", report.anomalies);
    assert_eq!(report.entries, 7);
    assert_eq!(report.subjects, 2);
    assert!(report.checkpoints.len() >= 5, "{:?}", report.checkpoints);
    assert!(report
        .checkpoints
        .iter()
        .all(|c| c.signature_ok && c.matches_log));
    assert!(!report.states.is_empty());

    let pos = entry_positions(&lines);

    // A changed byte in a stored entry.
    let mut t = lines.clone();
    if let ExportLine::Entry { hex, .. } = &mut t[pos[2]] {
        let mut b = hex::decode(&*hex).expect("hex");
        let n = b.len();
        b[n - 10] ^= 1;
        *hex = hex::encode(b);
    }
    let r = run(&t, &trusted);
    assert!(!r.ok);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("signature does not verify")),
        "{:?}",
        r.anomalies
    );
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("is not the root of the exported log")),
        "{:?}",
        r.anomalies
    );

    // A dropped entry.
    let mut t = lines.clone();
    t.remove(pos[1]);
    let r = run(&t, &trusted);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("where 1 was expected")),
        "{:?}",
        r.anomalies
    );
    assert!(
        r.anomalies.iter().any(|a| a.contains("is not the root")),
        "{:?}",
        r.anomalies
    );

    // A reordered log (indices relabelled to look contiguous).
    let mut t = lines.clone();
    t.swap(pos[1], pos[2]);
    for (n, p) in pos.iter().enumerate() {
        if let ExportLine::Entry { log_index, .. } = &mut t[*p] {
            *log_index = n as u64;
        }
    }
    let r = run(&t, &trusted);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("seq not incremental")),
        "{:?}",
        r.anomalies
    );
    assert!(
        r.anomalies.iter().any(|a| a.contains("is not the root")),
        "{:?}",
        r.anomalies
    );

    // A rewritten checkpoint (its size changed after signing).
    let mut t = lines.clone();
    let cp = t
        .iter_mut()
        .find_map(|l| match l {
            ExportLine::Checkpoint { note } => Some(note),
            _ => None,
        })
        .expect("a checkpoint");
    let mut parts: Vec<String> = cp.split('\n').map(str::to_owned).collect();
    parts[1] = "3".into();
    *cp = parts.join("\n");
    let r = run(&t, &trusted);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("signature does not verify")),
        "{:?}",
        r.anomalies
    );

    // A checkpoint, properly signed by the node's key, that is inconsistent with the log (a split
    // view: a different history at size 2).
    let mut t = lines.clone();
    let fake = Checkpoint {
        origin: trusted.name.clone(),
        size: 2,
        root: proto::merkle::leaf_hash(b"another history"),
        extensions: vec![],
    }
    .sign(&trusted.name, &key)
    .expect("sign")
    .to_text();
    t.insert(t.len() - 1, ExportLine::Checkpoint { note: fake });
    let r = run(&t, &trusted);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.contains("checkpoint at size 2") && a.contains("inconsistent")),
        "{:?}",
        r.anomalies
    );

    // A truncated export.
    let mut t = lines.clone();
    t.pop();
    let r = run(&t, &trusted);
    assert!(
        r.anomalies.iter().any(|a| a.contains("truncated")),
        "{:?}",
        r.anomalies
    );
}
