//! Withholding (issue 7, item 7): a peer that hides a withdrawal from a brand node is caught
//! through its signed, witnessed checkpoints, and a brand node that cannot complete an audited
//! round answers `stale` once its freshness bound has passed.
//!
//! The adversary is a real `consent-node` started with the test-only flag
//! `--adversary-withhold SUBJECT:SEQ`: its sync answers (digest, heads, entries) and its gossip
//! show the subject as if its chain ended before SEQ, while its own store, log and signed
//! checkpoints stay honest; with `--adversary-withhold-log` the log it serves to auditors leaves
//! the entries out too. The brand node under test has a freshness bound, so it audits each peer's
//! log against the peer's signed checkpoint after every sync round (docs/PROTOCOL.md 16.8).
//!
//! Each scenario also runs a control node with no bound (no audit) beside the brand node: it
//! keeps allowing, which shows that the withdrawal really was hidden from sync and gossip.

use std::time::Duration;

use proto::api::Verdict;
use tests::{key, wait_for, Chain, NodeOptions, TestNode};

const PURPOSE: &str = "dpv:Marketing";

/// The adversary, and a brand node with a bound and a control node without one, each peering
/// only with the adversary.
fn cluster(customer: &Chain, hide_log: bool) -> (TestNode, TestNode, TestNode) {
    let withhold = format!("{}:2", customer.id());
    let mut args = vec!["--adversary-withhold", withhold.as_str()];
    if hide_log {
        args.push("--adversary-withhold-log");
    }
    let adversary = TestNode::spawn(NodeOptions::new().args(&args));
    let peer = |bound: bool| {
        let addr = adversary.p2p_addr();
        let mut a = vec!["--bootstrap", addr.as_str(), "--sync-interval-secs", "1"];
        if bound {
            a.extend(["--max-staleness-secs", "4"]);
        }
        TestNode::spawn(NodeOptions::new().args(&a))
    };
    let brand_node = peer(true);
    let control = peer(false);
    // Discovery through the adversary would connect the two; each must see only the adversary.
    let (b, c) = (brand_node.info().peer_id, control.info().peer_id);
    brand_node.set_blocked(&c, true);
    control.set_blocked(&b, true);
    (adversary, brand_node, control)
}

/// The cluster of [`cluster`]; the customer grants at the adversary (both nodes then allow,
/// the brand node fresh) and withdraws there, which the adversary hides from seq 2 on.
fn withdrawn_at_adversary(label: &str, hide_log: bool) -> (Chain, TestNode, TestNode, TestNode) {
    let mut customer = Chain::new(label);
    let (adversary, brand_node, control) = cluster(&customer, hide_log);
    let brand = key("brand").public_key();
    adversary.submit(&customer.grant(brand, &[PURPOSE]), 201);
    wait_for(
        Duration::from_secs(30),
        "both nodes allow, the brand node fresh",
        || {
            brand_node.check(&customer.id(), &brand, PURPOSE).decision == Verdict::Allow
                && control.check(&customer.id(), &brand, PURPOSE).decision == Verdict::Allow
                && !brand_node.info().stale
        },
    );
    adversary.submit(&customer.withdraw(brand, &[PURPOSE]), 201);
    (customer, adversary, brand_node, control)
}

#[test]
fn a_withdrawal_hidden_from_sync_comes_in_through_the_log_audit() {
    let brand = key("brand").public_key();
    let (customer, adversary, brand_node, control) = withdrawn_at_adversary("withheld-sync", false);
    assert_eq!(
        adversary.check(&customer.id(), &brand, PURPOSE).status,
        "dpv:ConsentWithdrawn",
        "the adversary's own answers stay honest"
    );
    wait_for(
        Duration::from_secs(20),
        "the brand node denies: withdrawn",
        || {
            let r = brand_node.check(&customer.id(), &brand, PURPOSE);
            r.decision == Verdict::Deny && r.status == "dpv:ConsentWithdrawn"
        },
    );
    wait_for(
        Duration::from_secs(10),
        "the withholding is counted",
        || brand_node.metric("consent_withheld_entries_total") >= 1.0,
    );
    let metrics = brand_node.get("/metrics").expect_status(200).body;
    assert!(
        metrics.contains("\nconsent_log_audit_failures_total 0\n"),
        "an honest log (the adversary's, here) was taken for a rewritten one"
    );
    assert!(brand_node.metric("consent_log_audited_entries_total") >= 2.0);
    assert!(!brand_node.info().stale);
    // The control node, which does not audit, was kept in the dark all along.
    let c = control.check(&customer.id(), &brand, PURPOSE);
    assert_eq!(c.decision, Verdict::Allow, "control: {c:?}");
    assert_eq!(c.head_seq, 1);
}

#[test]
fn a_log_that_hides_a_withdrawal_is_caught_and_the_brand_node_goes_stale() {
    let brand = key("brand").public_key();
    let (customer, _adversary, brand_node, control) = withdrawn_at_adversary("withheld-log", true);
    wait_for(
        Duration::from_secs(20),
        "the audit catches the adversary",
        || brand_node.metric("consent_log_audit_failures_total") >= 1.0,
    );
    assert!(brand_node.metric("consent_peers_banned_total") >= 1.0);
    // With its only peer caught and banned, no audited round completes: past the bound the
    // brand node denies with status stale instead of allowing on the grant it holds.
    wait_for(
        Duration::from_secs(20),
        "the brand node answers stale",
        || {
            let r = brand_node.check(&customer.id(), &brand, PURPOSE);
            r.decision == Verdict::Deny && r.status == "stale"
        },
    );
    assert!(brand_node.info().stale);
    let c = control.check(&customer.id(), &brand, PURPOSE);
    assert_eq!(c.decision, Verdict::Allow, "control: {c:?}");
}
