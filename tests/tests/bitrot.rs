//! Bit rot in the store's files (issue 7, item 3): detected at start, the damaged chains refused,
//! and repaired from a peer so that every entry is back at its old log position.
//!
//! sled checks a CRC on every message of its log and, on start, treats a damaged message as the
//! torn end of the log: it drops that message and everything after it, silently. The node's log
//! journal (`store/journal`, see `node/src/journal.rs`) names every log position, so the node
//! sees the loss, refuses the chains it touched (503 `chain_damaged`), takes no writes (503
//! `repairing`), and fetches exactly the lost entries back from its peers, in their old order.
//!
//! The flips are seeded (`BITROT_SEED`, printed). Each candidate flip is tried on a copy of the
//! store first: `consent-node check` must either find the store whole (and then it must hold
//! every entry: never a silent loss) or name the damage. The first flip that makes sled drop
//! entries is then made in the node's own store.

use std::path::Path;
use std::time::Duration;

use proto::entry::Entry;
use tests::{key, seed_from_env, store_check, wait_for, Chain, Rng, TestNode};

const CHAINS: usize = 10;
const PER_CHAIN: usize = 20;
const TRIES: usize = 24;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a copy of the store");
    for e in std::fs::read_dir(from).expect("reading the store dir") {
        let e = e.expect("a store dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copying a store file");
        }
    }
}

fn occurrences(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn bit_rot_is_detected_refused_and_repaired_from_peers() {
    let seed = seed_from_env("bitrot", "BITROT_SEED", 1);
    let mut rng = Rng(seed | 1);
    let brand = key("brand/bitrot").public_key();
    let sync = ["--sync-interval-secs", "1"];
    let peer = TestNode::spawn(tests::NodeOptions::new().args(&sync));
    let mut node = TestNode::spawn(tests::NodeOptions::new().args(&sync));
    node.connect(&peer);
    let mut chains: Vec<Chain> = (0..CHAINS)
        .map(|i| Chain::new(&format!("bitrot-{i}")))
        .collect();
    let mut all: Vec<Entry> = Vec::new();
    for j in 0..PER_CHAIN {
        for c in &mut chains {
            // Each chain alternates grant and withdraw: a lost withdrawal would read as allow.
            let e = if j % 2 == 0 {
                c.grant(brand, &["dpv:Marketing"])
            } else {
                c.withdraw(brand, &["dpv:Marketing"])
            };
            node.submit(&e, 201);
            all.push(e);
        }
    }
    let total = all.len() as u64;
    wait_for(
        Duration::from_secs(30),
        "the peer to hold every entry",
        || peer.info().log_size == total,
    );
    let before = node.log_hashes();
    assert!(node.terminate().success(), "clean stop before the damage");

    // Find a flip that makes sled drop entries, on copies of the store.
    let store = node.data_dir().join("store");
    let work = tempfile::tempdir().expect("a work directory");
    let pristine = work.path().join("pristine");
    copy_dir(&store, &pristine);
    let db = std::fs::read(pristine.join("db")).expect("reading sled's file");
    let mut chosen = None;
    let (mut whole, mut by_sled) = (0, 0);
    for attempt in 0..TRIES {
        let victim = &all[rng.below(all.len())];
        let bytes = victim.to_bytes();
        let at = occurrences(&db, &bytes);
        if at.is_empty() {
            continue;
        }
        let pos = at[rng.below(at.len())] + rng.below(bytes.len());
        let bit = 1u8 << rng.below(8);
        let trial = work.path().join(format!("try-{attempt}"));
        copy_dir(&pristine, &trial.join("store"));
        let mut flipped = db.clone();
        flipped[pos] ^= bit;
        std::fs::write(trial.join("store/db"), &flipped).expect("writing the flip");
        let out = store_check(&trial, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            // Whole: the flip hit a part of the file sled no longer reads. Nothing may be missing.
            assert!(
                stdout.contains(&format!("{total} entries verified")),
                "flip at {pos}: the check passed but the store does not hold all {total} \
                 entries (a silent loss): {stdout}"
            );
            whole += 1;
        } else if stderr.contains("lost") {
            eprintln!(
                "bitrot: flip of bit {bit:#04x} at byte {pos}: {}",
                stderr.trim()
            );
            chosen = Some((pos, bit));
            break;
        } else {
            // sled itself refused the damaged file: detected, with its reason.
            assert!(!stderr.trim().is_empty(), "a failed check must say why");
            eprintln!("bitrot: flip at {pos}: sled refused: {}", stderr.trim());
            by_sled += 1;
        }
        std::fs::remove_dir_all(&trial).ok();
    }
    eprintln!("bitrot: {whole} flips left the store whole, {by_sled} refused by sled");
    let (pos, bit) = chosen.unwrap_or_else(|| {
        panic!("none of {TRIES} flips made sled drop entries (seed {seed}); try another seed")
    });
    let mut flipped = db.clone();
    flipped[pos] ^= bit;
    std::fs::write(store.join("db"), &flipped).expect("damaging the node's store");

    // Alone, the node knows what it lost and refuses those chains.
    node.start();
    let info = node.info();
    assert!(info.repairing, "the node does not say it is repairing");
    assert!(
        info.log_size < total,
        "the damage took nothing from the log"
    );
    assert!(info.damaged_subjects > 0, "no damaged subject reported");
    let (mut refused, mut answered) = (0, 0);
    for c in &chains {
        let r = node.get(&format!(
            "/v1/consent/check?subject={}&controller={brand}&purpose=dpv:Marketing",
            c.id()
        ));
        match r.status {
            503 => {
                assert!(
                    r.body.contains("chain_damaged"),
                    "503 without chain_damaged: {}",
                    r.body
                );
                refused += 1;
            }
            200 => answered += 1,
            s => panic!("check on a damaged node: HTTP {s} {}", r.body),
        }
    }
    assert_eq!(
        refused, info.damaged_subjects,
        "refused chains vs damaged subjects"
    );
    eprintln!(
        "bitrot: {} entries lost; {refused} chains refused, {answered} answered",
        total - info.log_size
    );
    // A lost entry is not denied (404) but refused, and so is an export of the cut-down log.
    let lost_hash = &before[usize::try_from(info.log_size).expect("a log size")];
    let r = node.get(&format!("/v1/entries/{lost_hash}"));
    assert_eq!(r.status, 503, "a lost entry while repairing: {}", r.body);
    assert!(r.body.contains("chain_damaged"), "{}", r.body);
    let r = node.get("/v1/log/export");
    assert_eq!(r.status, 503, "an export while repairing: {}", r.body);
    let extra = chains[0].peek(proto::entry::Body::Grant(tests::consent(
        brand,
        &["dpv:Marketing"],
    )));
    let r = node.post_entry_json(&extra);
    assert_eq!(r.status, 503, "a write while repairing: {}", r.body);
    assert!(r.body.contains("repairing"), "{}", r.body);

    // With its peer, it puts every lost entry back at its old position.
    node.connect(&peer);
    wait_for(Duration::from_secs(30), "the repair to finish", || {
        !node.info().repairing
    });
    assert_eq!(node.info().log_size, total);
    assert_eq!(
        node.log_hashes(),
        before,
        "the repaired log differs from the original"
    );
    for c in &chains {
        let answer = node.check(&c.id(), &brand, "dpv:Marketing");
        // Every chain ends in a withdrawal.
        assert_eq!(answer.decision, proto::api::Verdict::Deny, "after repair");
        assert_eq!(answer.head_seq, PER_CHAIN as u64);
    }
    node.submit(&chains[0].commit(extra), 201);
    assert!(node.terminate().success());
    let out = store_check(node.data_dir(), &[]);
    assert!(
        out.status.success(),
        "check after the repair: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
