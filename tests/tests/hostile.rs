//! A hostile peer against real nodes: the `hostile-peer` binary of this package speaks the
//! node's protocols and sends invalid signatures, broken links, oversized and garbage messages,
//! garbage sync frames and floods of duplicates. The node it attacks must score it down and
//! disconnect it (and keep it out), honest replication must still complete, no node may store a
//! bad entry, and the node's memory must stay bounded.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::entry::Entry;
use proto::keys::PublicKey;
use serde_json::Value;
use tests::{key, metric, wait_for, NodeOptions, TestNode};

const PURPOSE: &str = "dpv:Marketing";
/// How long the hostile peer misbehaves.
const ATTACK_SECS: u64 = 8;
/// Most the attacked node's resident memory may grow during the attack.
const MAX_RSS_GROWTH_KIB: u64 = 200 * 1024;

fn brand() -> PublicKey {
    key("brand").public_key()
}

/// `n` chains of `len` grants each, labelled `label`.
fn chains(label: &str, n: usize, len: usize) -> Vec<Vec<Entry>> {
    tests::grant_chains(label, n, len, brand(), PURPOSE)
}

/// A running `hostile-peer` process, killed when dropped.
struct Hostile {
    child: Child,
    lines: Receiver<String>,
    peer_id: String,
}

impl Hostile {
    /// Starts the binary against `target` and waits for its `started` line.
    fn spawn(target: &str, args: &[&str]) -> Hostile {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hostile-peer"))
            .args(["--target", target])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning hostile-peer");
        let stdout = child.stdout.take().expect("hostile-peer stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("hostile-peer printed no `started` line within 10 s");
        let v: Value = serde_json::from_str(&first).expect("a JSON line from hostile-peer");
        assert_eq!(v["event"], "started", "{first}");
        let peer_id = v["peer_id"].as_str().expect("a peer id").to_owned();
        Hostile {
            child,
            lines,
            peer_id,
        }
    }

    /// Waits (at most `within`) for the process to exit 0 and returns its summary line.
    fn summary(&mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait().expect("waiting for hostile-peer") {
                Some(s) => break s,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("hostile-peer did not exit within {within:?}");
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert!(status.success(), "hostile-peer exited with {status}");
        let mut summary = None;
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            let v: Value = serde_json::from_str(&line).expect("a JSON line from hostile-peer");
            if v["event"] == "summary" {
                summary = Some(v);
            }
        }
        summary.expect("hostile-peer printed no summary line")
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The summary with its hash lists replaced by their lengths, for printing.
fn brief(summary: &Value) -> Value {
    let mut v = summary.clone();
    if let Some(o) = v.as_object_mut() {
        for (_, x) in o.iter_mut() {
            if let Some(a) = x.as_array() {
                *x = Value::from(a.len());
            }
        }
    }
    v
}

/// One look at the attacked node's peer list: when, and the hostile peer's entry if listed.
struct PeerSample {
    at: Instant,
    hostile: Option<Value>,
}

/// Polls `GET /v1/peers` of `node` every 50 ms until `stop`, noting the entry of `peer_id`.
fn poll_peers(
    node: &TestNode,
    peer_id: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<PeerSample>> {
    let client = node.client();
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(r) = client.try_request("GET", "/v1/peers", &[], None) {
                if r.status == 200 {
                    let v = r.json();
                    let hostile = v.as_array().and_then(|a| {
                        a.iter()
                            .find(|p| p["peer_id"].as_str() == Some(peer_id.as_str()))
                            .cloned()
                    });
                    samples.push(PeerSample {
                        at: Instant::now(),
                        hostile,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        samples
    })
}

/// A and B replicate honest chains submitted at A while the hostile peer attacks A. The strikes
/// that get it banned come from its garbage answers to A's own sync requests (A's round on
/// connect, A's gap fetches for the orphans it gossips), its garbage sync requests, and the invalid
/// gossip that reaches A before gossipsub graylists it (a strike while graylisted bans at once).
#[test]
fn a_hostile_peer_is_banned_while_honest_replication_completes() {
    let started = Instant::now();
    let a = TestNode::new();
    let b = TestNode::spawn(NodeOptions::new().args(&["--bootstrap", &a.p2p_addr()]));
    let a_id = a.info().peer_id;
    eprintln!("{:?}: nodes started", started.elapsed());
    wait_for(Duration::from_secs(20), "B to connect to A", || {
        b.peer_ids().contains(&a_id)
    });
    let honest = chains("honest", 50, 4);
    let honest_hashes: BTreeSet<String> = honest
        .iter()
        .flatten()
        .map(|e| e.hash().to_string())
        .collect();
    let rss_before = rss_kib(a.pid());
    eprintln!("{:?}: nodes up, attack starts", started.elapsed());

    // The attack on A, with honest entries submitted at A in waves while it lasts.
    let mut hostile = Hostile::spawn(&a.p2p_addr(), &["--seconds", &ATTACK_SECS.to_string()]);
    let hostile_id = hostile.peer_id.clone();
    assert_ne!(hostile_id, a_id);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_peers(&a, hostile_id.clone(), stop.clone());
    for wave in honest.chunks(10) {
        a.submit_parallel(wave, 4);
        std::thread::sleep(Duration::from_millis(1_500));
    }
    eprintln!("{:?}: honest entries submitted", started.elapsed());
    let summary = hostile.summary(Duration::from_secs(ATTACK_SECS + 25));
    let exited = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let samples = poller.join().expect("the peer poller");
    let rss_after = rss_kib(a.pid());
    eprintln!(
        "{:?}: hostile-peer summary: {}",
        started.elapsed(),
        brief(&summary)
    );

    // The attack happened.
    assert_eq!(summary["connected"], true, "{summary}");
    assert_eq!(summary["subscribed"], true, "{summary}");
    assert!(summary["published"].as_u64().unwrap_or(0) > 0, "{summary}");
    let logs = a.logs();
    assert!(
        logs.contains(&format!("peer connected peer={hostile_id}")),
        "A never saw the hostile peer connect"
    );

    // A scored it down (strikes, by reason) and banned it.
    let metrics = a.get("/metrics").body;
    let gossip_rejected = metric(
        &metrics,
        r#"consent_p2p_rejected_total{reason="gossip_invalid_entry"}"#,
    ) + metric(
        &metrics,
        r#"consent_p2p_rejected_total{reason="gossip_malformed"}"#,
    );
    assert!(
        gossip_rejected > 0.0,
        "A rejected no gossip from the hostile peer:\n{metrics}"
    );
    assert!(
        metric(&metrics, "consent_peers_banned_total") >= 1.0,
        "A banned no peer:\n{metrics}\n{}",
        a.log_tail(100)
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("banning peer") && l.contains(&format!("peer={hostile_id}"))),
        "A's log does not say it banned {hostile_id}"
    );
    // ... disconnected it, and did not let it back in.
    assert_eq!(summary["disconnected"], true, "{summary}");
    assert!(
        summary["redials"].as_u64().unwrap_or(0) > 0,
        "the hostile peer never redialled, so keeping it out was not tried: {summary}"
    );
    assert_eq!(summary["still_connected"], false, "{summary}");
    assert!(
        summary["reconnect_held_ms_max"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 2_000,
        "a redial of the banned peer stayed connected: {summary}"
    );
    let listed: Vec<&PeerSample> = samples.iter().filter(|s| s.hostile.is_some()).collect();
    let late: Vec<&Value> = samples
        .iter()
        .filter(|s| exited.duration_since(s.at) < Duration::from_secs(3))
        .filter_map(|s| s.hostile.as_ref())
        .collect();
    assert!(
        samples
            .iter()
            .any(|s| exited.duration_since(s.at) < Duration::from_secs(3)),
        "no look at A's peers in the attack's last 3 s"
    );
    assert!(
        late.is_empty(),
        "A still listed the hostile peer in the attack's last 3 s: {late:?}"
    );
    if let Some(worst) = listed
        .iter()
        .filter_map(|s| s.hostile.as_ref())
        .max_by_key(|p| p["strikes"].as_u64().unwrap_or(0))
    {
        eprintln!(
            "A listed the hostile peer in {} of {} looks; at worst: {worst}",
            listed.len(),
            samples.len()
        );
    }
    assert!(!a.peer_ids().contains(&hostile_id));

    eprintln!("{:?}: checking replication", started.elapsed());
    // Honest replication completed: A and B hold every honest entry.
    wait_for(
        Duration::from_secs(20),
        "B to hold every honest entry",
        || {
            let hb: BTreeSet<String> = b.log_hashes().into_iter().collect();
            honest_hashes.is_subset(&hb)
        },
    );
    let ha: BTreeSet<String> = a.log_hashes().into_iter().collect();
    assert!(honest_hashes.is_subset(&ha), "A lost honest entries");

    // No node stored a bad entry: every stored entry is honest or one of the few valid ones
    // the hostile peer published, and none of its invalid or orphaned entries is found.
    let valid: BTreeSet<String> = strings(&summary["valid_hashes"]).into_iter().collect();
    let bad = strings(&summary["bad_hashes"]);
    let orphans = strings(&summary["orphan_hashes"]);
    assert!(!bad.is_empty() && !orphans.is_empty(), "{summary}");
    for (name, node) in [("A", &a), ("B", &b)] {
        let stored: BTreeSet<String> = node.log_hashes().into_iter().collect();
        let unknown: Vec<&String> = stored
            .iter()
            .filter(|h| !honest_hashes.contains(*h) && !valid.contains(*h))
            .collect();
        assert!(
            unknown.is_empty(),
            "{name} stored entries nobody sent validly: {unknown:?}"
        );
        for h in bad.iter().chain(&orphans) {
            assert!(!stored.contains(h), "{name} stored the bad entry {h}");
        }
        for h in bad.iter().take(200).chain(orphans.iter().take(200)) {
            let r = node.get(&format!("/v1/entries/{h}"));
            assert_eq!(r.status, 404, "{name} serves the bad entry {h}: {}", r.body);
        }
    }
    eprintln!("{:?}: checking convergence", started.elapsed());
    // ... and the nodes converge (what A stored from the hostile peer reaches B by sync).
    wait_for(Duration::from_secs(20), "A and B to converge", || {
        let ha: BTreeSet<String> = a.log_hashes().into_iter().collect();
        let hb: BTreeSet<String> = b.log_hashes().into_iter().collect();
        ha == hb
    });

    // Memory stayed bounded.
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "A's VmRSS: {rss_before} KiB before the attack, {rss_after} KiB after (+{growth} KiB)"
    );
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "A's resident memory grew by {growth} KiB during the attack"
    );
    eprintln!("hostile test took {:?}", started.elapsed());
}

/// Garbage sync requests alone (undecodable bodies, a limit beyond `MAX_ENTRIES`, a frame
/// header announcing 100 MiB) are refused with `Error` code 1, and are strikes that get the sender
/// banned.
#[test]
fn garbage_sync_requests_alone_get_a_peer_banned() {
    let a = TestNode::new();
    let mut hostile = Hostile::spawn(&a.p2p_addr(), &["--seconds", "4", "--sync-requests-only"]);
    let summary = hostile.summary(Duration::from_secs(30));
    eprintln!("hostile-peer summary: {}", brief(&summary));
    assert!(
        // Ten strikes ban: the attack runs at least that long.
        summary["sync_requests"].as_u64().unwrap_or(0) >= 10,
        "{summary}"
    );
    let metrics = a.get("/metrics").body;
    assert!(
        metric(
            &metrics,
            r#"consent_p2p_rejected_total{reason="sync_garbage"}"#
        ) > 0.0,
        "no garbage sync request was counted:\n{metrics}"
    );
    assert!(
        metric(&metrics, "consent_peers_banned_total") >= 1.0,
        "the peer was not banned:\n{metrics}"
    );
    assert_eq!(summary["disconnected"], true, "{summary}");
}
