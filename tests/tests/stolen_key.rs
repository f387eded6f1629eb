//! A stolen key across three replicating nodes (issue 7, item 8): the thief's grant is accepted
//! (it is validly signed), the customer rotates with the recovery key and withdraws, every node
//! converges on the same chain, the thief's later entries are refused everywhere, and an audit of
//! every node's export agrees.

use std::time::Duration;

use proto::api::Verdict;
use proto::audit::{audit, parse_export, verify_signatures_sequential, AuditOptions};
use proto::keys::PublicKey;
use tests::{key, wait_for, Chain, TestNode};

const PURPOSE: &str = "dpv:Marketing";

fn brand() -> PublicKey {
    key("brand").public_key()
}

fn head(n: &TestNode, subject: &PublicKey) -> u64 {
    n.chain(subject).head_seq
}

#[test]
fn a_stolen_key_is_recovered_from_and_every_node_and_the_audit_agree() {
    let cluster = tests::cluster(3);
    let [a, b, c] = [&cluster[0], &cluster[1], &cluster[2]];
    let nodes = [a, b, c];
    let everywhere = |what: &str, seq: u64, subject: PublicKey| {
        for n in nodes {
            wait_for(Duration::from_secs(20), what, || head(n, &subject) == seq);
        }
    };

    // The customer grants at A and withdraws at B.
    let mut customer = Chain::new("stolen");
    let id = customer.id();
    a.submit(&customer.grant(brand(), &[PURPOSE]), 201);
    everywhere("the grant everywhere", 1, id);
    b.submit(&customer.withdraw(brand(), &[PURPOSE]), 201);
    everywhere("the withdrawal everywhere", 2, id);

    // The thief, holding the subject key, grants again at C: validly signed, so accepted.
    let mut thief = customer.clone();
    c.submit(&thief.grant(brand(), &[PURPOSE]), 201);
    everywhere("the thief's grant everywhere", 3, id);
    for n in nodes {
        assert_eq!(n.check(&id, &brand(), PURPOSE).decision, Verdict::Allow);
    }

    // The customer sees it, rotates with the recovery key (at A) and withdraws with the new key
    // (at B).
    customer.reset_to(
        a.chain(&id)
            .entries
            .iter()
            .map(|r| r.entry.clone())
            .collect(),
    );
    let new_key = key("stolen/new-signing");
    let next_recovery = key("stolen/next-recovery");
    a.submit(&customer.rotate(new_key, &next_recovery), 201);
    everywhere("the rotation everywhere", 4, id);
    b.submit(&customer.withdraw(brand(), &[PURPOSE]), 201);
    everywhere("the new withdrawal everywhere", 5, id);

    // The thief's entries signed by the retired key are refused at every node, whatever the
    // position: the next seq (a wrong signer) or a taken one (not valid there, so no fork).
    thief.reset_to(
        a.chain(&id).entries[..3]
            .iter()
            .map(|r| r.entry.clone())
            .collect(),
    );
    thief.entries.push(customer.entries[3].clone());
    thief.entries.push(customer.entries[4].clone());
    let late = thief.peek(proto::entry::Body::Grant(tests::consent(
        brand(),
        &[PURPOSE],
    )));
    assert_eq!(late.seq(), 6);
    for n in nodes {
        let r = n.post_entry_json(&late);
        assert_eq!(r.status, 400, "{}", r.body);
        n.get(&format!("/v1/entries/{}", late.hash()))
            .expect_status(404);
    }
    // Converged: one chain, no fork, deny everywhere.
    let chains: Vec<_> = nodes.iter().map(|n| n.chain(&id)).collect();
    for ch in &chains[1..] {
        assert_eq!(ch.entries, chains[0].entries);
    }
    for n in nodes {
        assert_eq!(n.check(&id, &brand(), PURPOSE).decision, Verdict::Deny);
        assert_eq!(n.info().forks, 0);
    }

    // The auditor's replay of each node's export agrees: no anomaly, and withdrawn at seq 5.
    for n in nodes {
        let text = n.get("/v1/log/export").expect_status(200).body;
        let lines = parse_export(&text).expect("the export parses");
        let report = audit(
            &lines,
            &AuditOptions::default(),
            tests::now_ms(),
            &verify_signatures_sequential,
        );
        assert!(report.ok, "{:?}", report.anomalies);
        assert_eq!(report.kinds.get("rotate"), Some(&1));
        let state = report
            .states
            .iter()
            .find(|s| s.subject == id && s.purpose == PURPOSE)
            .expect("the subject's state in the report");
        assert_eq!(state.status, "dpv:ConsentWithdrawn");
        assert_eq!(state.seq, Some(5));
    }
}
