//! Clock skew (issue 7, item 9): three replicating nodes whose clocks read 10 minutes slow, right,
//! and 10 minutes fast. Replication does not depend on clocks; entries without expiry get the
//! same answer everywhere; an expiry is judged at each node's own `now` (the `at` of its answer),
//! and with an explicit `at` every node gives the same answer.

use std::time::Duration;

use proto::api::Verdict;
use proto::keys::PublicKey;
use tests::{key, now_ms, rfc3339, wait_for, Chain, NodeOptions, TestNode};

const TEN_MIN: i64 = 10 * 60 * 1000;

fn brand() -> PublicKey {
    key("skew/brand").public_key()
}

#[test]
fn skewed_clocks_agree_on_everything_but_their_own_now() {
    let slow =
        TestNode::spawn(NodeOptions::new().args(&["--clock-offset-ms", &(-TEN_MIN).to_string()]));
    let addr = slow.p2p_addr();
    let right = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &addr]));
    let fast = TestNode::spawn(NodeOptions::new().args(&[
        "--bootstrap",
        &addr,
        "--clock-offset-ms",
        &TEN_MIN.to_string(),
    ]));
    let nodes = [&slow, &right, &fast];

    // One grant without expiry, one that expires in 5 minutes (real time).
    let mut forever = Chain::new("skew/forever");
    let g1 = forever.grant(brand(), &["dpv:Marketing"]);
    let mut soon = Chain::new("skew/soon");
    let expiry = now_ms() + 5 * 60 * 1000;
    let g2 = soon.grant_until(brand(), &["dpv:Personalisation"], expiry);
    slow.submit(&g1, 201);
    fast.submit(&g2, 201);
    for n in nodes {
        wait_for(Duration::from_secs(20), "both grants on every node", || {
            n.info().log_size == 2
        });
    }

    // Without expiry: the same answer at every node, whatever its clock.
    for n in nodes {
        let c = n.check(&forever.id(), &brand(), "dpv:Marketing");
        assert_eq!(c.decision, Verdict::Allow);
        assert_eq!(c.hash, Some(g1.hash()));
    }

    // With an expiry 5 minutes ahead: the slow and the right node allow, the fast node (10
    // minutes ahead) judges it expired; each answer names the time it was judged at.
    let answers: Vec<_> = nodes
        .iter()
        .map(|n| n.check(&soon.id(), &brand(), "dpv:Personalisation"))
        .collect();
    assert_eq!(answers[0].decision, Verdict::Allow);
    assert_eq!(answers[1].decision, Verdict::Allow);
    assert_eq!(answers[2].decision, Verdict::Deny);
    assert_eq!(answers[2].status, "dpv:ConsentExpired");
    assert!(
        answers[0].at + 19 * 60 * 1000 < answers[2].at,
        "the nodes' clocks differ by 20 minutes"
    );

    // With an explicit time, every node gives the same answer: before and after the expiry.
    for at in [expiry - 1, expiry + 1] {
        let got: Vec<_> = nodes
            .iter()
            .map(|n| {
                let c = n.check_at(&soon.id(), &brand(), "dpv:Personalisation", at);
                (c.decision, c.status, c.hash, c.at)
            })
            .collect();
        assert!(
            got.iter().all(|g| g == &got[0]),
            "at {}: {got:?}",
            rfc3339(at)
        );
    }
    // The fast node's verdict is the verdict of any node asked at the fast node's time.
    let at_fast = answers[2].at;
    let c = slow.check_at(&soon.id(), &brand(), "dpv:Personalisation", at_fast);
    assert_eq!(
        (c.decision, c.status.as_str()),
        (Verdict::Deny, "dpv:ConsentExpired")
    );
}
