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
    let id = c.id();
    // One two-second window from the acknowledgement for both B and C.
    let within_two_seconds = |what: &str, decision: proto::api::Verdict| {
        let since = Instant::now();
        let deadline = since + Duration::from_secs(2);
        for n in &nodes[1..] {
            wait_for(
                deadline.saturating_duration_since(Instant::now()),
                what,
                || n.check(&id, &brand(), PURPOSE).decision == decision,
            );
        }
        since.elapsed()
    };
    let grant_took = within_two_seconds("the grant to reach B and C", proto::api::Verdict::Allow);
    // And the withdrawal, as the demo does.
    let w = c.withdraw(brand(), &[]);
    nodes[0].submit(&w, 201);
    let withdraw_took =
        within_two_seconds("the withdrawal to reach B and C", proto::api::Verdict::Deny);
    eprintln!(
        "replicated to B and C: grant in {grant_took:?}, withdrawal in {withdraw_took:?} \
         ({:?} in all)",
        started.elapsed()
    );
    for n in &nodes[1..] {
        assert!(
            n.metric("consent_gossip_received_total") >= 1.0,
            "no gossip message counted at a follower"
        );
    }
}
