//! Partitions (issue 7, item 6): five replicating nodes; every few seconds the links between two
//! random halves are cut (each side blocks the other's peers) and the previous cut heals, while
//! customers append to their chains at random nodes and brands check at random nodes. After the
//! last heal every node must hold every acknowledged entry and nothing else, with identical
//! chains: a Jepsen-style set check, printed as lost / unexpected / recovered counts.
//!
//! Seeded and bounded: `PARTITION_SEED` replays a schedule, `PARTITION_SECONDS` (default 20 in CI;
//! 60 for the long form) sets how long the cuts go on.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::keys::PublicKey;
use tests::{key, now_ms, wait_for, Chain, NodeOptions, Rng, TestNode};

const NODES: usize = 5;
const SUBJECTS: usize = 12;
const PURPOSES: [&str; 3] = [
    "dpv:Marketing",
    "dpv:Personalisation",
    "dpv:ServiceProvision",
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn cut_and_healed_links_lose_nothing_and_converge() {
    let seed = env_u64("PARTITION_SEED", now_ms());
    let seconds = env_u64("PARTITION_SECONDS", 20);
    eprintln!("partition: seed {seed}, {seconds} s of cuts (set PARTITION_SEED / PARTITION_SECONDS to replay)");
    let brand: PublicKey = key("partition/brand").public_key();

    let first = TestNode::new();
    let addr = first.p2p_addr();
    let mut nodes = vec![first];
    for _ in 1..NODES {
        nodes.push(TestNode::spawn(
            NodeOptions::new().args(&["--bootstrap", &addr]),
        ));
    }
    // A full mesh of links, so that a cut is exactly what the schedule says.
    for i in 0..NODES {
        for j in (i + 1)..NODES {
            nodes[i].connect(&nodes[j]);
        }
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.info().peer_id).collect();

    let acked: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let submitted: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let stop = AtomicBool::new(false);
    let mut rng = Rng(seed | 1);
    let mut writer_rng = Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1);
    let mut checker_rng = Rng((seed ^ 0x5851_f42d_4c95_7f2d) | 1);
    let (mut cuts, mut checks) = (0u32, 0u64);

    std::thread::scope(|s| {
        // Customers: each step appends the next entry of a random chain at a random node.
        let writer = s.spawn(|| {
            let mut chains: Vec<Chain> = (0..SUBJECTS)
                .map(|i| Chain::new(&format!("partition/{seed}/{i}")))
                .collect();
            while !stop.load(Ordering::SeqCst) {
                let c = &mut chains[writer_rng.below(SUBJECTS)];
                let p = PURPOSES[writer_rng.below(PURPOSES.len())];
                let e = if writer_rng.below(3) == 0 {
                    c.withdraw(brand, &[p])
                } else {
                    c.grant(brand, &[p])
                };
                let hash = e.hash().to_string();
                submitted.lock().expect("lock").insert(hash.clone());
                let n = &nodes[writer_rng.below(NODES)];
                match n.try_post_entry_json(&e) {
                    // Stored (201) or waiting for its predecessor from another node (202).
                    Ok(r) if r.status == 201 || r.status == 202 => {
                        acked.lock().expect("lock").insert(hash);
                    }
                    Ok(r) => panic!("entry refused with {}: {}", r.status, r.body),
                    Err(e) => panic!("submitting failed: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Brands: checks at random nodes must always answer (200), whatever the cuts.
        let checker = s.spawn(|| {
            let mut n_checks = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let subject =
                    Chain::new(&format!("partition/{seed}/{}", checker_rng.below(SUBJECTS))).id();
                let n = &nodes[checker_rng.below(NODES)];
                let r = n
                    .try_request(
                        "GET",
                        &format!(
                            "/v1/consent/check?subject={subject}&controller={brand}&purpose={}",
                            PURPOSES[0]
                        ),
                        &[],
                        None,
                    )
                    .expect("a check gets an answer");
                assert_eq!(r.status, 200, "{}", r.body);
                n_checks += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n_checks
        });

        // The cuts: every 2-4 s, heal the previous cut and cut between two random halves.
        let started = Instant::now();
        let mut cut: Vec<(usize, usize)> = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            for &(i, j) in &cut {
                nodes[i].set_blocked(&ids[j], false);
                nodes[j].set_blocked(&ids[i], false);
            }
            let mut side = [false; NODES];
            let size = 1 + rng.below(NODES - 1);
            let mut placed = 0;
            while placed < size {
                let k = rng.below(NODES);
                if !side[k] {
                    side[k] = true;
                    placed += 1;
                }
            }
            cut.clear();
            for i in 0..NODES {
                for j in 0..NODES {
                    if side[i] && !side[j] {
                        nodes[i].set_blocked(&ids[j], true);
                        nodes[j].set_blocked(&ids[i], true);
                        cut.push((i, j));
                    }
                }
            }
            cuts += 1;
            // The cut takes effect: no link across it stays up.
            wait_for(tests::WAIT, "the cut to take effect", || {
                cut.iter()
                    .all(|&(i, j)| !nodes[i].peer_ids().contains(&ids[j]))
            });
            std::thread::sleep(Duration::from_millis(2000 + rng.below(2000) as u64));
        }
        for &(i, j) in &cut {
            nodes[i].set_blocked(&ids[j], false);
            nodes[j].set_blocked(&ids[i], false);
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer");
        checks = checker.join().expect("the checker");
    });

    let acked = acked.into_inner().expect("lock");
    let submitted = submitted.into_inner().expect("lock");
    // Healed: every node converges on every acknowledged entry.
    let converged = Instant::now();
    let mut last_report = Instant::now();
    let done = |report: bool| {
        nodes.iter().enumerate().all(|(i, n)| {
            let have: BTreeSet<String> = n.log_hashes().into_iter().collect();
            if report {
                let info = n.info();
                eprintln!(
                    "partition: node {i}: log {} pending {} peers {} missing {}",
                    info.log_size,
                    info.pending,
                    n.peer_ids().len(),
                    acked.difference(&have).count()
                );
            }
            acked.is_subset(&have)
        })
    };
    wait_for(
        Duration::from_secs(90),
        "every node to hold every acknowledged entry",
        || {
            let report = last_report.elapsed() > Duration::from_secs(10);
            if report {
                last_report = Instant::now();
            }
            done(report)
        },
    );
    let sets: Vec<BTreeSet<String>> = nodes
        .iter()
        .map(|n| n.log_hashes().into_iter().collect())
        .collect();
    let lost: usize = sets.iter().map(|s| acked.difference(s).count()).sum();
    let unexpected: usize = sets.iter().map(|s| s.difference(&submitted).count()).sum();
    eprintln!(
        "partition: {cuts} cuts healed, {} entries acknowledged, {checks} checks answered; \
         lost {lost}, unexpected {unexpected}, recovered on every node within {:?} of the last heal",
        acked.len(),
        converged.elapsed()
    );
    assert_eq!(lost, 0);
    assert_eq!(unexpected, 0);
    for s in &sets[1..] {
        assert_eq!(s, &sets[0], "every node holds the same entries");
    }
    for i in 0..SUBJECTS {
        let subject = Chain::new(&format!("partition/{seed}/{i}")).id();
        // The same entries in the same order (log indexes differ from node to node).
        let chains: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                n.chain(&subject)
                    .entries
                    .iter()
                    .map(|r| r.hash.to_string())
                    .collect()
            })
            .collect();
        for c in &chains[1..] {
            assert_eq!(c, &chains[0], "identical chains");
        }
        for n in &nodes {
            assert_eq!(n.info().pending, 0);
        }
    }
    assert!(cuts >= 3, "the schedule cut links at least three times");
}
