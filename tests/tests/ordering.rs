//! Ordering (issue 7, item 5): a 200-entry chain delivered in many seeded random orders, with
//! duplicates and replays of old grants after later withdrawals mixed in, always ends in the same
//! state as in-order delivery; the pending area stays bounded and drains; and at every moment the
//! node answers from the contiguous prefix it holds (never from entries beyond a gap).
//!
//! One real node; each order is a different subject (its own keys), so the orders do not meet.
//! The seed is printed; set `ORDERING_SEED` to replay a run.

use proto::state::ConsentState;
use proto::Entry;
use tests::{key, seed_from_env, Chain, Rng, TestNode};

const ENTRIES: usize = 200;
const ORDERS: usize = 50;
const PURPOSES: [&str; 4] = [
    "dpv:Marketing",
    "dpv:DirectMarketing",
    "dpv:Personalisation",
    "dpv:ServiceProvision",
];

/// xorshift64*: small, seeded, good enough to shuffle.
fn build_chain(label: &str, rng: &mut Rng) -> Chain {
    let brand = key("ordering/brand").public_key();
    let mut c = Chain::new(label);
    while c.entries.len() < ENTRIES {
        let p = PURPOSES[rng.below(PURPOSES.len())];
        match rng.below(10) {
            0..=4 => {
                c.grant(brand, &[p]);
            }
            5..=7 => {
                c.withdraw(brand, &[p]);
            }
            8 => {
                c.refuse(brand, &[]);
            }
            _ if c.entries.len() > 20 && c.entries.len() < 150 => {
                let n = c.entries.len();
                let new = key(&format!("{label}/signing/{n}"));
                let next = key(&format!("{label}/recovery/{n}"));
                c.rotate(new, &next);
            }
            _ => {
                c.grant(brand, &[p]);
            }
        }
    }
    c
}

/// The decisions for every purpose, as (status, deciding seq), from a chain prefix.
fn decisions(prefix: &[Entry], now: u64) -> Vec<(String, Option<u64>)> {
    let brand = key("ordering/brand").public_key();
    let state = ConsentState::fold(prefix.iter());
    PURPOSES
        .iter()
        .map(|p| {
            let d = state.decide(&brand, p, now).expect("known purpose");
            (d.status.dpv().to_owned(), d.seq)
        })
        .collect()
}

#[test]
fn any_delivery_order_with_duplicates_and_replays_ends_in_the_in_order_state() {
    let seed = seed_from_env("ordering", "ORDERING_SEED", 20_261_125);
    let mut rng = Rng(seed | 1);
    let node = TestNode::new();
    let brand = key("ordering/brand").public_key();
    let mut max_pending = 0;
    for order in 0..ORDERS {
        let chain = build_chain(&format!("ordering/{seed}/{order}"), &mut rng);
        let subject = chain.id();
        // A delivery: every entry once, shuffled, plus duplicates and replays of earlier entries
        // (old grants after later withdrawals) at random points.
        let mut delivery: Vec<usize> = (0..ENTRIES).collect();
        for i in (1..delivery.len()).rev() {
            let j = rng.below(i + 1);
            delivery.swap(i, j);
        }
        for _ in 0..ENTRIES / 10 {
            let at = rng.below(delivery.len());
            let again = rng.below(ENTRIES);
            delivery.insert(at, again);
        }
        let mut delivered = std::collections::BTreeSet::new();
        for (n, &i) in delivery.iter().enumerate() {
            let reply = node.post_entry_bytes(&chain.entries[i].to_bytes());
            delivered.insert(i + 1);
            assert!(
                matches!(reply.status, 200..=202),
                "order {order}: entry seq {} answered {}: {}",
                i + 1,
                reply.status,
                reply.body
            );
            if n % 17 == 0 {
                // The head is exactly the contiguous prefix delivered so far, and every later
                // seq delivered waits in the pending area.
                let prefix = (1..).take_while(|s| delivered.contains(s)).count();
                let later = delivered.iter().filter(|&&s| s > prefix).count() as u64;
                assert_eq!(
                    node.chain(&subject).head_seq,
                    prefix as u64,
                    "order {order}, after {n} deliveries: the head is not the delivered prefix"
                );
                assert_eq!(
                    node.info().pending,
                    later,
                    "order {order}, after {n} deliveries: pending entries"
                );
                // The node answers from the contiguous prefix it holds, whatever is pending.
                for (p, purpose) in PURPOSES.iter().enumerate() {
                    let got = node.check(&subject, &brand, purpose);
                    let head = got.head_seq as usize;
                    let want = &decisions(&chain.entries[..head], got.at)[p];
                    assert_eq!(
                        (&got.status, got.seq),
                        (&want.0, want.1),
                        "order {order}, after {n} deliveries, head {head}, purpose {purpose}"
                    );
                }
                max_pending = max_pending.max(node.info().pending);
            }
        }
        // Everything arrived: the whole chain, the in-order state, nothing left pending.
        let info = node.info();
        assert_eq!(info.pending, 0, "order {order}: entries left pending");
        let got_chain = node.chain(&subject);
        assert_eq!(got_chain.head_seq, ENTRIES as u64, "order {order}");
        assert!(
            !got_chain.forked,
            "order {order}: duplicates and replays are no fork"
        );
        for (p, purpose) in PURPOSES.iter().enumerate() {
            let got = node.check(&subject, &brand, purpose);
            let want = &decisions(&chain.entries, got.at)[p];
            assert_eq!(
                (&got.status, got.seq),
                (&want.0, want.1),
                "order {order}, {purpose}"
            );
        }
    }
    // (The pending count was checked exactly at every sample above.)
    eprintln!("ordering: {ORDERS} orders converged; at most {max_pending} entries were pending");
}
