//! Durability across a graceful restart (SIGTERM, then a new process on the same data dir), and
//! the offline store check `consent-node check --data-dir`.

use proto::api::{CheckResponse, ConsentsResponse, EntryRecord, NodeInfo};
use proto::entry::Entry;
use proto::keys::PublicKey;
use tests::{key, now_ms, store_check, Chain, TestNode};

const PURPOSES: [&str; 4] = [
    "dpv:Marketing",
    "dpv:DirectMarketing",
    "dpv:ServiceProvision",
    "dpv:Advertising",
];

/// Everything a client can observe about the stored state.
#[derive(Debug, PartialEq)]
struct Observed {
    info: NodeInfo,
    log: String,
    records: Vec<EntryRecord>,
    checks: Vec<CheckResponse>,
    consents: Vec<ConsentsResponse>,
}

fn observe(
    node: &TestNode,
    entries: &[Entry],
    subjects: &[PublicKey],
    brands: &[PublicKey],
) -> Observed {
    let records = entries
        .iter()
        .map(|e| {
            node.get(&format!("/v1/entries/{}", e.hash()))
                .expect_status(200)
                .parse()
        })
        .collect();
    let mut checks = Vec::new();
    for s in subjects {
        for b in brands {
            for p in PURPOSES {
                let mut c = node.check(s, b, p);
                c.at = 0; // the time judged at differs between calls
                checks.push(c);
            }
        }
    }
    let consents = subjects
        .iter()
        .map(|s| {
            let mut c: ConsentsResponse = node
                .get(&format!("/v1/subjects/{s}/consents"))
                .expect_status(200)
                .parse();
            c.at = 0;
            c
        })
        .collect();
    Observed {
        info: node.info(),
        log: node.get("/v1/log/entries").expect_status(200).body,
        records,
        checks,
        consents,
    }
}

#[test]
fn graceful_restart_keeps_every_entry_every_answer_and_the_node_key() {
    let mut node = TestNode::new();
    let (b1, b2) = (
        key("brand/persist-1").public_key(),
        key("brand/persist-2").public_key(),
    );
    let day = 86_400_000;
    let mut alice = Chain::new("persist-alice");
    let mut bob = Chain::new("persist-bob");
    let mut forker = Chain::new("persist-forker");
    let mut entries = vec![
        alice.grant_until(b1, &["dpv:Marketing"], now_ms() + day),
        bob.grant(b2, &["dpv:ServiceProvision", "dpv:Marketing"]),
        alice.withdraw(b1, &["dpv:DirectMarketing"]),
        alice.rotate(key("persist-alice/new"), &key("persist-alice/rec2")),
        alice.grant(b2, &["dpv:Advertising"]),
        bob.refuse(b1, &[]),
        forker.grant(b1, &["dpv:Marketing"]),
        forker.grant(b2, &["dpv:Marketing"]),
    ];
    node.submit_all(&entries);
    let mut alt = forker.clone();
    alt.entries.truncate(1);
    node.post_entry_json(&alt.withdraw(b1, &[]))
        .expect_status(409);
    // A pending entry lives in memory only (by design): it is gone after a restart.
    let mut ahead = bob.clone();
    ahead.grant(b1, &["dpv:Marketing"]);
    let pending = ahead.grant(b1, &["dpv:Advertising"]);
    node.submit(&pending, 202);

    let subjects = [alice.id(), bob.id(), forker.id()];
    let brands = [b1, b2];
    let before = observe(&node, &entries, &subjects, &brands);
    assert_eq!(
        (
            before.info.log_size,
            before.info.subjects,
            before.info.forks,
            before.info.pending
        ),
        (8, 3, 1, 1)
    );

    // A store in use by the running node cannot be checked: exit 2, not 1, so a script can tell
    // it from a damaged store (a missing store: the test below).
    let out = store_check(node.data_dir(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "consent-node check on a store in use: {stderr}"
    );
    assert!(stderr.contains("cannot check the store"), "{stderr}");

    let status = node.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        node.logs().contains("consent-node stopped"),
        "no clean-shutdown line in the log:\n{}",
        node.logs()
    );
    let out = store_check(node.data_dir(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "consent-node check on the stopped node's store: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("store intact: 8 entries verified"),
        "{stdout}"
    );

    node.start();
    let mut after = observe(&node, &entries, &subjects, &brands);
    assert_eq!(after.info.pending, 0, "pending entries are not persisted");
    after.info.pending = before.info.pending;
    assert_eq!(
        after.info.peer_id, before.info.peer_id,
        "the p2p identity is the node key"
    );
    // The p2p port is picked anew (port 0) on every start.
    after.info.p2p_addrs.clone_from(&before.info.p2p_addrs);
    assert_eq!(after, before, "the restarted node serves a different state");
    node.get(&format!("/v1/entries/{}", pending.hash()))
        .expect_status(404);

    // Chains continue where they stopped, in the same log.
    let next = alice.grant(b1, &["dpv:Marketing"]);
    assert_eq!(node.submit(&next, 201).log_index, Some(8));
    entries.push(next);
    // A forked subject stays forked.
    assert!(node.chain(&forker.id()).forked);

    // And once more, for the entry written after the first restart.
    node.restart();
    let again = observe(&node, &entries, &subjects, &brands);
    assert_eq!(again.info.log_size, 9);
    assert_eq!(again.records[..8], before.records[..]);
}

#[test]
fn store_check_passes_an_intact_store_with_or_without_rebuild_and_fails_without_a_store() {
    let mut node = TestNode::new();
    let b = key("brand/check").public_key();
    let mut c = Chain::new("check");
    node.submit_all(&[
        c.grant(b, &["dpv:Marketing"]),
        c.withdraw(b, &[]),
        c.rotate(key("check/new"), &key("check/rec2")),
        c.grant(b, &["dpv:Advertising"]),
    ]);
    let status = node.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    for extra in [&[][..], &["--rebuild"][..], &[][..]] {
        let out = store_check(node.data_dir(), extra);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "check {extra:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("store intact: 4 entries verified"),
            "{stdout}"
        );
    }

    // The node still starts on the checked (and rebuilt) store and answers the same.
    node.start();
    let chk = node.check(&c.id(), &b, "dpv:Advertising");
    assert_eq!(
        (chk.status.as_str(), chk.seq, chk.head_seq),
        ("dpv:ConsentGiven", Some(4), 4)
    );
    drop(node);

    let empty = tempfile::tempdir().expect("a temporary directory");
    let out = store_check(empty.path(), &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "check without a store must exit 2 (cannot check), not 1 (damaged)"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
