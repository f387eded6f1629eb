//! The freshness bound (issue 7, item 7): a brand node cut off from its peers for longer than
//! `--max-staleness-secs` stops allowing (deny, status `stale`), so a withdrawal it cannot see
//! is never overridden by an old grant; once it syncs again it answers from the fresh chain.

use std::time::Duration;

use proto::api::{CheckResponse, Verdict};
use tests::{key, wait_for, Chain, NodeOptions, TestNode};

const PURPOSE: &str = "dpv:Marketing";

fn check_with_evidence(n: &TestNode, c: &Chain) -> CheckResponse {
    n.get(&format!(
        "/v1/consent/check?subject={}&controller={}&purpose={PURPOSE}&evidence=true",
        c.id(),
        key("brand").public_key()
    ))
    .expect_status(200)
    .parse()
}

#[test]
fn a_cut_off_brand_node_answers_stale_instead_of_allow() {
    let brand = key("brand").public_key();
    let a = TestNode::new();
    let b = TestNode::spawn(NodeOptions::new().args(&[
        "--bootstrap",
        &a.p2p_addr(),
        "--controller",
        &brand.to_string(),
        "--sync-interval-secs",
        "1",
        "--max-staleness-secs",
        "3",
    ]));
    let mut customer = Chain::new("fresh");
    a.submit(&customer.grant(brand, &[PURPOSE]), 201);
    wait_for(Duration::from_secs(20), "B allows after syncing", || {
        b.check(&customer.id(), &brand, PURPOSE).decision == Verdict::Allow
    });
    assert!(!b.info().stale);
    assert!(b.info().last_sync_ms > 0);

    // Cut B off. The customer withdraws at A; B cannot hear of it.
    let (ida, idb) = (a.info().peer_id, b.info().peer_id);
    b.set_blocked(&ida, true);
    a.set_blocked(&idb, true);
    a.submit(&customer.withdraw(brand, &[PURPOSE]), 201);
    wait_for(Duration::from_secs(20), "B's view to go stale", || {
        b.info().stale
    });
    let r = check_with_evidence(&b, &customer);
    assert_eq!(r.decision, Verdict::Deny);
    assert_eq!(r.status, "stale");
    assert_eq!(r.seq, Some(1), "the grant B holds is named");
    // The record still verifies offline: the chain as held would have allowed.
    proto::evidence::verify_decision(&r, None).expect("a stale record verifies");
    // A forged record claiming allow on the same evidence is caught.
    let mut forged = r.clone();
    forged.status = "stale".into();
    forged.decision = Verdict::Allow;
    assert!(proto::evidence::verify_decision(&forged, None).is_err());
    // A node without a bound is unaffected: A answers from its own chain.
    assert_eq!(
        a.check(&customer.id(), &brand, PURPOSE).status,
        "dpv:ConsentWithdrawn"
    );

    // Heal: B syncs, sees the withdrawal and is fresh again.
    b.set_blocked(&ida, false);
    a.set_blocked(&idb, false);
    wait_for(
        Duration::from_secs(30),
        "B fresh with the withdrawal",
        || {
            let r = b.check(&customer.id(), &brand, PURPOSE);
            !b.info().stale && r.status == "dpv:ConsentWithdrawn" && r.decision == Verdict::Deny
        },
    );
}

#[test]
fn the_bound_needs_replication_and_a_positive_value() {
    for args in [
        &["--no-p2p", "--max-staleness-secs", "5"][..],
        &["--max-staleness-secs", "0"][..],
    ] {
        let out = std::process::Command::new(tests::node_binary())
            .arg("run")
            .args([
                "--data-dir",
                tempfile_dir().as_str(),
                "--http",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .expect("run consent-node");
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("max_staleness_secs"), "{args:?}: {err}");
    }
}

fn tempfile_dir() -> String {
    let d = std::env::temp_dir().join(format!("freshness-{}", std::process::id()));
    d.to_string_lossy().into_owned()
}
