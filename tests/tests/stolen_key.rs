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
    // And a taken seq after the rotation (5, the customer's new withdrawal): the retired key
    // is not valid there, so the thief's entry is refused, not a fork.
    let mut at_taken = thief.clone();
    at_taken.entries.truncate(4);
    let taken = at_taken.peek(proto::entry::Body::Grant(tests::consent(
        brand(),
        &[PURPOSE],
    )));
    assert_eq!(taken.seq(), 5);
    assert_ne!(taken.hash(), customer.entries[4].hash());
    for n in nodes {
        for e in [&late, &taken] {
            let r = n.post_entry_json(e);
            assert_eq!(r.status, 400, "seq {}: {}", e.seq(), r.body);
            n.get(&format!("/v1/entries/{}", e.hash()))
                .expect_status(404);
        }
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

/// The thief races the customer's rotation: a grant signed by the stolen key at the very seq of
/// the rotation, where that key was still the subject's signing key. Two different valid entries
/// at one position are a fork: both nodes know it, keep the proof, and answer deny (forked).
#[test]
fn a_thief_racing_the_rotation_makes_a_fork_that_every_node_reports() {
    let cluster = tests::cluster(2);
    let (a, b) = (&cluster[0], &cluster[1]);
    let mut customer = Chain::new("raced");
    let id = customer.id();
    a.submit(&customer.grant(brand(), &[PURPOSE]), 201);
    wait_for(Duration::from_secs(20), "the grant at B", || {
        head(b, &id) == 1
    });

    let mut thief = customer.clone();
    let stolen = thief.grant(brand(), &[PURPOSE]);
    let rotation = customer.rotate(key("raced/new-signing"), &key("raced/next-recovery"));
    assert_eq!(stolen.seq(), 2);
    assert_eq!(rotation.seq(), 2);
    a.submit(&rotation, 201);
    let second = b.post_entry_json(&stolen);
    assert!(
        second.status == 201 || second.status == 409,
        "the thief's entry at the rotation's seq: {} {}",
        second.status,
        second.body
    );
    for n in [a, b] {
        wait_for(
            Duration::from_secs(20),
            "every node to answer forked",
            || n.check(&id, &brand(), PURPOSE).status == "forked",
        );
        assert_eq!(n.check(&id, &brand(), PURPOSE).decision, Verdict::Deny);
        // The proof parses (and so verifies) and holds exactly the two seq-2 entries.
        let proof: proto::chain::ForkProof = n
            .get(&format!("/v1/subjects/{id}/fork"))
            .expect_status(200)
            .parse();
        let mut got = [proof.a.hash(), proof.b.hash()];
        let mut want = [stolen.hash(), rotation.hash()];
        got.sort();
        want.sort();
        assert_eq!(got, want, "the fork proof's entries");
    }
}
