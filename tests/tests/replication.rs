//! Replication between real `consent-node` processes on loopback: gossip of new entries, sync of
//! what a node missed (late start, restart, partition), and the spread of fork proofs.

use std::collections::BTreeSet;
use std::time::Duration;

use proto::keys::PublicKey;
use tests::{cluster, key, wait_for, Chain, NodeOptions, TestNode};

const PURPOSE: &str = "dpv:Marketing";

fn brand() -> PublicKey {
    key("brand").public_key()
}

/// `n` chains of `len` grants each, labelled `label`.
fn chains(label: &str, n: usize, len: usize) -> Vec<Vec<proto::entry::Entry>> {
    tests::grant_chains(label, n, len, brand(), PURPOSE)
}

fn log_size(n: &TestNode) -> u64 {
    n.info().log_size
}

#[test]
fn a_node_started_late_catches_up_on_ten_thousand_entries() {
    let a = TestNode::new();
    a.submit_parallel(&chains("late", 2_000, 5), 16);
    assert_eq!(log_size(&a), 10_000);
    let b = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &a.p2p_addr()]));
    wait_for(
        Duration::from_secs(120),
        "B to catch up on 10,000 entries",
        || log_size(&b) == 10_000,
    );
    let (ha, hb): (BTreeSet<_>, BTreeSet<_>) = (
        a.log_hashes().into_iter().collect(),
        b.log_hashes().into_iter().collect(),
    );
    assert_eq!(ha, hb, "B holds exactly A's entries");
    assert!(b
        .get("/metrics")
        .body
        .contains("consent_sync_entries_fetched_total 10000"));
}

#[test]
fn a_restarted_node_catches_up_on_what_it_missed() {
    let a = TestNode::new();
    let mut b = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &a.p2p_addr()]));
    let first = chains("before", 10, 1);
    a.submit_parallel(&first, 4);
    wait_for(
        Duration::from_secs(20),
        "B to hold the first entries",
        || log_size(&b) == 10,
    );
    b.terminate();
    a.submit_parallel(&chains("missed", 200, 5), 16);
    assert_eq!(log_size(&a), 1_010);
    b.start();
    wait_for(
        Duration::from_secs(60),
        "B to catch up on 1,000 entries",
        || log_size(&b) == 1_010,
    );
    let (ha, hb): (BTreeSet<_>, BTreeSet<_>) = (
        a.log_hashes().into_iter().collect(),
        b.log_hashes().into_iter().collect(),
    );
    assert_eq!(ha, hb);
}

#[test]
fn partitioned_groups_converge_when_reconnected() {
    // Group 1: A, B. Group 2: C, D. No link between the groups.
    let a = TestNode::new();
    let b = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &a.p2p_addr()]));
    let c = TestNode::new();
    let d = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &c.p2p_addr()]));
    // A chain both sides extend in turn before the split cannot exist, so each side gets its
    // own subjects, plus entries of one shared chain: its start on one side, its continuation
    // on the other (pending there until the groups meet).
    let mut shared = Chain::new("shared");
    let s1 = shared.grant(brand(), &[PURPOSE]);
    let s2 = shared.withdraw(brand(), &[]);
    a.submit_parallel(&chains("left", 50, 3), 8);
    a.submit(&s1, 201);
    c.submit_parallel(&chains("right", 40, 4), 8);
    c.submit(&s2, 202);
    wait_for(Duration::from_secs(20), "each group to converge", || {
        log_size(&b) == 151 && log_size(&d) == 160
    });
    // Still apart: each side holds only its own group's entries, and C's continuation of the
    // shared chain waits for its start.
    assert_eq!((log_size(&a), log_size(&c)), (151, 160));
    assert_eq!(a.chain(&shared.id()).head_seq, 1);
    assert_eq!(c.chain(&shared.id()).head_seq, 0);
    b.connect(&d);
    let all = [&a, &b, &c, &d];
    wait_for(
        Duration::from_secs(60),
        "every node to hold every entry",
        || all.iter().all(|n| log_size(n) == 312),
    );
    let sets: Vec<BTreeSet<String>> = all
        .iter()
        .map(|n| n.log_hashes().into_iter().collect())
        .collect();
    for s in &sets[1..] {
        assert_eq!(s, &sets[0], "ingest logs hold the same entries");
    }
    for n in all {
        let chain = n.chain(&shared.id());
        assert_eq!(chain.head_seq, 2);
        assert_eq!(
            n.check(&shared.id(), &brand(), PURPOSE).decision,
            proto::api::Verdict::Deny
        );
    }
}

#[test]
fn a_fork_made_at_one_node_is_known_at_every_node() {
    let nodes = cluster(3);
    let mut c = Chain::new("forked");
    let g = c.grant(brand(), &[PURPOSE]);
    nodes[0].submit(&g, 201);
    for n in &nodes[1..] {
        wait_for(Duration::from_secs(10), "the grant everywhere", || {
            log_size(n) == 1
        });
    }
    // Two different entries at seq 2, signed by the subject's key, at two different nodes.
    let mut other = c.clone();
    let w = c.withdraw(brand(), &[]);
    let r = other.refuse(brand(), &[PURPOSE]);
    assert_ne!(w.hash(), r.hash());
    nodes[1].submit(&w, 201);
    let second = nodes[2].post_entry_json(&r);
    assert!(
        second.status == 201 || second.status == 409,
        "{}",
        second.body
    );
    for n in &nodes {
        wait_for(
            Duration::from_secs(20),
            "every node to answer forked",
            || n.check(&c.id(), &brand(), PURPOSE).status == "forked",
        );
        // The forked flag is visible once committed; the counter moves once it is durable.
        wait_for(
            Duration::from_secs(5),
            "the fork counted in node info",
            || n.info().forks == 1,
        );
        n.get(&format!("/v1/subjects/{}/fork", c.id()))
            .expect_status(200);
    }
}

#[test]
fn a_brand_node_replicates_only_the_chains_naming_its_controllers() {
    let x = key("brand-x").public_key();
    let y = key("brand-y").public_key();
    let a = TestNode::new();
    let chains_for = |label: &str, c: PublicKey, n: usize| -> Vec<Chain> {
        (0..n)
            .map(|i| {
                let mut ch = Chain::new(&format!("{label}/{i}"));
                ch.grant(c, &[PURPOSE]);
                ch.withdraw(c, &[]);
                ch
            })
            .collect()
    };
    let xs = chains_for("x", x, 30);
    let ys = chains_for("y", y, 40);
    let all: Vec<Vec<proto::entry::Entry>> =
        xs.iter().chain(&ys).map(|c| c.entries.clone()).collect();
    a.submit_parallel(&all, 8);
    assert_eq!(log_size(&a), 140);
    // B takes X's chains only: first by sync (what A already holds)...
    let b = TestNode::spawn(NodeOptions::new().args(&[
        "--bootstrap",
        &a.p2p_addr(),
        "--controller",
        &x.to_string(),
    ]));
    wait_for(Duration::from_secs(30), "B to hold X's chains", || {
        log_size(&b) == 60
    });
    // ...then by gossip on X's topic (a new grant for X), while a new
    // chain for Y does not reach it.
    let mut x0 = xs[0].clone();
    let g = x0.grant(x, &["dpv:Personalisation"]);
    a.submit(&g, 201);
    let mut y_new = Chain::new("y/new");
    a.submit(&y_new.grant(y, &[PURPOSE]), 201);
    wait_for(Duration::from_secs(10), "X's new entry at B", || {
        b.check(&x0.id(), &x, "dpv:Personalisation").decision == proto::api::Verdict::Allow
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(log_size(&b), 61, "B holds X's 61 entries and none of Y's");
    assert_eq!(b.chain(&y_new.id()).head_seq, 0);
    for c in &ys {
        assert_eq!(b.chain(&c.id()).head_seq, 0);
    }
}
