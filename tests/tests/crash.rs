//! Crash safety: `kill -9` (and, separately, SIGTERM) in the middle of bursts of concurrent
//! submissions, many times over. Every entry the node acknowledged (2xx) must be there after the
//! restart, chains must go on from what the node actually kept, the store as each stop left it
//! must pass `consent-node check`, and the restarted node must rejoin replication: a peer that
//! runs throughout is connected again after every restart and ends with exactly the node's
//! entries.

use std::time::{Duration, Instant};

use proto::api::ChainResponse;
use proto::entry::{Body, Entry};
use proto::keys::{Hash, PublicKey};
use tests::{
    consent, key, signal, store_check, wait_for, Chain, Client, NodeOptions, Reply, TestNode,
};

/// kill -9 / restart cycles.
const KILL_CYCLES: usize = 50;
/// SIGTERM / restart cycles.
const TERM_CYCLES: usize = 5;
/// Concurrent submitter threads, each with its own subjects.
const WRITERS: usize = 4;
/// Subjects per submitter, submitted round-robin.
const SUBJECTS_PER_WRITER: usize = 3;

/// One submitter's chains and what the node acknowledged.
struct Writer {
    chains: Vec<Chain>,
    /// Per chain: how many of its entries were acknowledged (a prefix of `chains[i].entries`).
    acked: Vec<usize>,
    /// Entries acknowledged in the current cycle: (chain, hash).
    acked_this_cycle: Vec<(usize, Hash)>,
    /// The entry in flight when the node died (its ack was lost), per chain.
    in_flight: Vec<Option<Entry>>,
}

/// How one burst ended for one writer.
enum BurstEnd {
    /// The node stopped answering (expected: it was stopped).
    NodeGone,
    /// The node answered something other than 200/201: a bug.
    Unexpected(String),
}

impl Writer {
    fn new(w: usize) -> Writer {
        let chains = (0..SUBJECTS_PER_WRITER)
            .map(|s| Chain::new(&format!("crash/w{w}/s{s}")))
            .collect();
        Writer {
            chains,
            acked: vec![0; SUBJECTS_PER_WRITER],
            acked_this_cycle: vec![],
            in_flight: vec![None; SUBJECTS_PER_WRITER],
        }
    }

    /// Submits round-robin until the node stops answering (or, a failure, `deadline` passes). With
    /// `refusals_allowed`, a `503 unavailable` (a node shutting down) also ends the burst, and the
    /// refused entry counts as in flight (it may or may not have been stored).
    fn burst(
        &mut self,
        client: &Client,
        brand: PublicKey,
        refusals_allowed: bool,
        deadline: Instant,
    ) -> BurstEnd {
        let mut i = 0;
        loop {
            if Instant::now() > deadline {
                return BurstEnd::Unexpected(
                    "the node kept answering long after it was told to stop".into(),
                );
            }
            let chain = &mut self.chains[i];
            let body = if chain.next_seq() % 2 == 1 {
                Body::Grant(consent(brand, &["dpv:Marketing"]))
            } else {
                Body::Withdraw(consent(brand, &["dpv:Marketing"]))
            };
            let e = chain.peek(body);
            match client.try_post_entry_json(&e) {
                Ok(Reply {
                    status: 200 | 201, ..
                }) => {
                    self.acked_this_cycle.push((i, e.hash()));
                    chain.commit(e);
                    self.acked[i] = chain.entries.len();
                }
                Ok(Reply { status: 503, .. }) if refusals_allowed => {
                    self.in_flight[i] = Some(e);
                    return BurstEnd::NodeGone;
                }
                Ok(r) => {
                    return BurstEnd::Unexpected(format!(
                        "seq {} of chain {i}: HTTP {} {}",
                        e.seq(),
                        r.status,
                        r.body
                    ))
                }
                Err(_) => {
                    self.in_flight[i] = Some(e);
                    return BurstEnd::NodeGone;
                }
            }
            i = (i + 1) % self.chains.len();
        }
    }
}

/// Checks every chain against the restarted node and adopts what the node kept. Returns
/// (entries verified, in-flight entries that were kept).
fn verify_and_resync(node: &TestNode, writers: &mut [Writer], cycle: usize) -> (usize, usize) {
    let mut verified = 0;
    let mut kept_in_flight = 0;
    for (w, writer) in writers.iter_mut().enumerate() {
        for (i, chain) in writer.chains.iter_mut().enumerate() {
            let served: ChainResponse = node.chain(&chain.id());
            let acked = writer.acked[i];
            let served_entries: Vec<Entry> =
                served.entries.iter().map(|r| r.entry.clone()).collect();
            assert!(
                served_entries.len() >= acked,
                "cycle {cycle}: writer {w} chain {i}: {acked} entries acknowledged, only {} after restart",
                served_entries.len()
            );
            for (seq0, (mine, theirs)) in chain.entries[..acked]
                .iter()
                .zip(&served_entries)
                .enumerate()
            {
                assert_eq!(
                    mine.hash(),
                    theirs.hash(),
                    "cycle {cycle}: writer {w} chain {i}: acknowledged seq {} differs after restart",
                    seq0 + 1
                );
            }
            verified += acked;
            let extra = &served_entries[acked..];
            match (extra, writer.in_flight[i].take()) {
                ([], _) => {}
                ([kept], Some(lost_ack)) if kept.hash() == lost_ack.hash() => kept_in_flight += 1,
                (extra, in_flight) => panic!(
                    "cycle {cycle}: writer {w} chain {i}: the node holds {} entries nobody acknowledged \
                     (in flight: {:?})",
                    extra.len(),
                    in_flight.map(|e| e.hash())
                ),
            }
            assert!(
                !served.forked,
                "cycle {cycle}: writer {w} chain {i} is forked"
            );
            // Go on from the node's head: the lost-ack entry counts if the node kept it.
            chain.reset_to(served_entries);
            writer.acked[i] = chain.entries.len();
        }
        for (_, hash) in writer.acked_this_cycle.drain(..) {
            node.get(&format!("/v1/entries/{hash}")).expect_status(200);
        }
    }
    (verified, kept_in_flight)
}

/// How the node is stopped in the middle of each burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: no shutdown at all.
    Kill9,
    /// SIGTERM: graceful shutdown, which must exit 0.
    Term,
}

/// Runs `cycles` of (burst, stop mid-burst, offline store check, restart, verify), and finally
/// continues every chain once more and stops gracefully. Returns the entries acknowledged.
fn run_cycles(how: Stop, cycles: usize, label: &str) -> usize {
    let started = Instant::now();
    let brand = key(&format!("brand/{label}")).public_key();
    let mut writers: Vec<Writer> = (0..WRITERS).map(Writer::new).collect();
    // The peer runs throughout; the node dials it at every start.
    let peer = TestNode::new();
    let peer_id = peer.info().peer_id;
    let mut node = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &peer.p2p_addr()]));
    let rejoined = |node: &TestNode, cycle: usize| {
        wait_for(
            tests::WAIT,
            &format!("cycle {cycle}: the restarted node to reconnect to its peer"),
            || node.peer_ids().contains(&peer_id),
        );
    };
    let mut total_acked = 0usize;

    for cycle in 1..=cycles {
        let client = node.client();
        let pid = node.pid();
        // Vary the burst length so the stop lands at different points of the group commit.
        let burst = Duration::from_millis(60 + (cycle as u64 * 37) % 150);
        let deadline = Instant::now() + burst + tests::WAIT;
        let watched = writers[0].chains[0].id();
        let check_path =
            format!("/v1/consent/check?subject={watched}&controller={brand}&purpose=dpv:Marketing");
        let (unexpected, (seen, seen_head)) = std::thread::scope(|s| {
            let handles: Vec<_> = writers
                .iter_mut()
                .map(|w| {
                    let client = client.clone();
                    s.spawn(move || w.burst(&client, brand, how == Stop::Term, deadline))
                })
                .collect();
            // A reader asks for the log size (node info, and a check of one written subject)
            // throughout the burst: the largest size and head any answer showed, which a node
            // answers only once they are durable.
            let reader = {
                let client = client.clone();
                let check_path = &check_path;
                s.spawn(move || {
                    let (mut seen, mut seen_head) = (0u64, 0u64);
                    for i in 0.. {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let path = if i % 2 == 0 {
                            "/v1/node/info"
                        } else {
                            check_path
                        };
                        match client.try_request("GET", path, &[], None) {
                            Ok(r) if r.status == 200 => {
                                let j = r.json();
                                seen = seen.max(j["log_size"].as_u64().expect("log_size"));
                                if let Some(h) = j["head_seq"].as_u64() {
                                    seen_head = seen_head.max(h);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    (seen, seen_head)
                })
            };
            // The burst runs for its planned length, then the node is stopped mid-flight.
            std::thread::sleep(burst);
            signal(pid, if how == Stop::Kill9 { "KILL" } else { "TERM" });
            let mut unexpected = Vec::new();
            for h in handles {
                if let BurstEnd::Unexpected(e) = h.join().expect("a submitter thread panicked") {
                    unexpected.push(e);
                }
            }
            (
                unexpected,
                reader.join().expect("the reader thread panicked"),
            )
        });
        let acked_now: usize = writers.iter().map(|w| w.acked_this_cycle.len()).sum();
        let status = node.wait_for_exit();
        if how == Stop::Term {
            assert!(
                status.success(),
                "cycle {cycle}: exit status after SIGTERM: {status}"
            );
        }
        assert!(
            unexpected.is_empty(),
            "cycle {cycle}: unexpected answers during the burst:\n{}",
            unexpected.join("\n")
        );
        total_acked += acked_now;

        // The store as the stop left it must pass the offline check (about 0.1 s per cycle).
        let out = store_check(node.data_dir(), &[]);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success(),
            "cycle {cycle}: consent-node check after {how:?}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );

        // The peer's only source is this node, and a node hands a peer only durable entries:
        // the peer cannot hold more than the stopped node's store kept.
        let kept: u64 = stdout
            .strip_prefix("store intact: ")
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cycle {cycle}: unexpected check output {stdout:?}"));
        assert!(
            seen <= kept,
            "cycle {cycle}: an answer showed a log of {seen} entries, the stopped node's store \
             kept {kept}: the node answered with entries that were not durable"
        );
        let peer_size = peer.info().log_size;
        assert!(
            peer_size <= kept,
            "cycle {cycle}: the peer holds {peer_size} entries, the stopped node's store only \
             {kept}: the node handed out entries that were not durable"
        );

        node.start();
        let head_after = node.chain(&watched).head_seq;
        assert!(
            seen_head <= head_after,
            "cycle {cycle}: a check showed head seq {seen_head} of a subject that has {head_after} \
             after the restart: the node answered with a state that was not durable"
        );
        rejoined(&node, cycle);
        let (verified, kept_in_flight) = verify_and_resync(&node, &mut writers, cycle);
        let info = node.info();
        let held: usize = writers
            .iter()
            .flat_map(|w| w.chains.iter())
            .map(|c| c.entries.len())
            .sum();
        assert_eq!(
            info.log_size as usize, held,
            "cycle {cycle}: the log and the chains disagree"
        );
        assert_eq!(info.forks, 0);
        assert_eq!(
            stdout,
            format!("store intact: {} entries verified", info.log_size),
            "cycle {cycle}: the offline check and the restarted node disagree"
        );
        eprintln!(
            "{how:?} cycle {cycle:2}: burst {:3} ms, acked {acked_now:4} (total {total_acked:5}), \
             present {verified:5}, in-flight kept {kept_in_flight}, log size {}",
            burst.as_millis(),
            info.log_size
        );
    }
    assert!(
        total_acked >= cycles * 10,
        "only {total_acked} entries acknowledged in {cycles} bursts: the test exercised too little"
    );

    // The chains go on after the last restart, and a graceful stop leaves an intact store.
    for w in &mut writers {
        let e = w.chains[0].withdraw(brand, &[]);
        node.submit(&e, 201);
    }
    // The peer ends with exactly the node's entries.
    let mine: std::collections::BTreeSet<String> = node.log_hashes().into_iter().collect();
    wait_for(
        Duration::from_secs(60),
        "the peer to hold exactly the node's entries",
        || {
            peer.log_hashes()
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                == mine
        },
    );
    let status = node.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let out = store_check(node.data_dir(), &[]);
    assert!(
        out.status.success(),
        "consent-node check after the final graceful stop: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{cycles} {how:?} cycles, {total_acked} entries acknowledged, in {:?}",
        started.elapsed()
    );
    total_acked
}

#[test]
fn acknowledged_entries_survive_kill_9_during_concurrent_bursts() {
    run_cycles(Stop::Kill9, KILL_CYCLES, "kill9");
}

#[test]
fn graceful_shutdown_during_concurrent_bursts_loses_no_acknowledged_entry() {
    run_cycles(Stop::Term, TERM_CYCLES, "term");
}
