//! Gossip latency between real `consent-node` processes on loopback: an entry stored at A is
//! answered at B and C within two seconds (the requirement). Alone in its test binary, so
//! that the other multi-node tests do not share the cores with it.

use std::time::{Duration, Instant};

use proto::keys::PublicKey;
use tests::{cluster, key, wait_for, Chain};

const PURPOSE: &str = "dpv:Marketing";

fn brand() -> PublicKey {
    key("brand").public_key()
}

#[test]
fn an_entry_submitted_at_a_is_checkable_at_b_and_c_within_two_seconds() {
    let t0 = Instant::now();
    let nodes = cluster(3);
    eprintln!("started in {:?}", t0.elapsed());
    // Let the gossip mesh form (heartbeats) before timing.
    wait_for(Duration::from_secs(10), "a full mesh", || {
        nodes.iter().all(|n| n.peer_ids().len() == 2)
    });
    eprintln!("full mesh after {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    let mut c = Chain::new("gossip");
    let g = c.grant(brand(), &[PURPOSE]);
    nodes[0].submit(&g, 201);
    let started = Instant::now();
    for n in &nodes[1..] {
        wait_for(
            Duration::from_secs(2),
            "the grant to reach every node",
            || n.check(&c.id(), &brand(), PURPOSE).decision == proto::api::Verdict::Allow,
        );
    }
    // And the withdrawal, as the demo does.
    let w = c.withdraw(brand(), &[]);
    nodes[0].submit(&w, 201);
    for n in &nodes[1..] {
        wait_for(
            Duration::from_secs(2),
            "the withdrawal to reach every node",
            || n.check(&c.id(), &brand(), PURPOSE).decision == proto::api::Verdict::Deny,
        );
    }
    eprintln!("replicated to B and C in {:?}", started.elapsed());
    let metrics = nodes[1].get("/metrics").body;
    assert!(
        metrics.contains("consent_gossip_received_total"),
        "{metrics}"
    );
}
