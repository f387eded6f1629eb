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
const TRIES: usize = 64;

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

/// What a flip did to a copy of the store, as `consent-node check` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    /// sled dropped the damaged message and everything after it; the journal names the loss.
    Lost,
    /// sled cannot open the store (it fails or panics while recovering it), or opens it but
    /// cannot read a page (it reads pages lazily).
    Unreadable,
}

/// Two nodes holding the same `n_chains` × 20 entries; the first one stopped cleanly.
struct Setup {
    peer: TestNode,
    node: TestNode,
    chains: Vec<Chain>,
    all: Vec<Entry>,
    before: Vec<String>,
    brand: proto::keys::PublicKey,
}

fn setup(n_chains: usize) -> Setup {
    let brand = key("brand/bitrot").public_key();
    let sync = ["--sync-interval-secs", "1"];
    let peer = TestNode::spawn(tests::NodeOptions::new().args(&sync));
    let mut node = TestNode::spawn(tests::NodeOptions::new().args(&sync));
    node.connect(&peer);
    let mut chains: Vec<Chain> = (0..n_chains)
        .map(|i| Chain::new(&format!("bitrot-{i}")))
        .collect();
    let mut per_chain: Vec<Vec<Entry>> = vec![Vec::new(); n_chains];
    for j in 0..PER_CHAIN {
        for (c, list) in chains.iter_mut().zip(&mut per_chain) {
            // Each chain alternates grant and withdraw: a lost withdrawal would read as allow.
            let e = if j % 2 == 0 {
                c.grant(brand, &["dpv:Marketing"])
            } else {
                c.withdraw(brand, &["dpv:Marketing"])
            };
            list.push(e);
        }
    }
    node.submit_parallel(&per_chain, 8);
    let all: Vec<Entry> = per_chain.concat();
    let total = all.len() as u64;
    wait_for(
        Duration::from_secs(30),
        "the peer to hold every entry",
        || peer.info().log_size == total,
    );
    let before = node.log_hashes();
    assert!(node.terminate().success(), "clean stop before the damage");
    Setup {
        peer,
        node,
        chains,
        all,
        before,
        brand,
    }
}

/// Tries seeded flips of one bit (for `Lost`, in a stored copy of an entry in `store/db`; else
/// anywhere in `store/conf`), each on a copy of the store, until one does `want`; makes that flip in the node's store. Every flip tried must
/// be detected or harmless: a passing check must still find every entry.
fn damage(s: &Setup, rng: &mut Rng, seed: u64, want: Damage) {
    let total = s.all.len() as u64;
    let store = s.node.data_dir().join("store");
    let work = tempfile::tempdir().expect("a work directory");
    let pristine = work.path().join("pristine");
    copy_dir(&store, &pristine);
    // For `Lost`, sled's log; else sled's settings file, which it cannot open past.
    let file = match want {
        Damage::Lost => "db",
        Damage::Unreadable => "conf",
    };
    let db = std::fs::read(pristine.join(file)).expect("reading sled's file");
    let mut chosen = None;
    let (mut whole, mut lost, mut unreadable, mut unopenable) = (0, 0, 0, 0);
    for attempt in 0..TRIES {
        let pos = match want {
            // A byte of a stored copy of an entry.
            Damage::Lost => {
                let victim = &s.all[rng.below(s.all.len())];
                let bytes = victim.to_bytes();
                let at = occurrences(&db, &bytes);
                if at.is_empty() {
                    continue;
                }
                at[rng.below(at.len())] + rng.below(bytes.len())
            }
            // Any byte of the file.
            Damage::Unreadable => rng.below(db.len()),
        };
        let bit = 1u8 << rng.below(8);
        let trial = work.path().join(format!("try-{attempt}"));
        copy_dir(&pristine, &trial.join("store"));
        let mut flipped = db.clone();
        flipped[pos] ^= bit;
        std::fs::write(trial.join("store").join(file), &flipped).expect("writing the flip");
        let out = store_check(&trial, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let got = if out.status.success() {
            // Whole: the flip hit a part of the file sled no longer reads. Nothing may be missing.
            assert!(
                stdout.contains(&format!("{total} entries verified")),
                "flip at {pos}: the check passed but the store does not hold all {total} \
                 entries (a silent loss): {stdout}"
            );
            whole += 1;
            None
        } else if stderr.contains("lost") {
            lost += 1;
            Some(Damage::Lost)
        } else {
            // sled cannot read the store whole: it cannot open it (it fails or panics while
            // recovering it), or cannot read a page. Detected, with the reason.
            assert!(
                stderr.contains("sled cannot read the store whole") && out.status.code() == Some(1),
                "flip at {pos}: a failed check that does not say why: {stderr}"
            );
            if stderr.contains("sled cannot open the store") {
                unopenable += 1;
            } else {
                unreadable += 1;
            }
            Some(Damage::Unreadable)
        };
        std::fs::remove_dir_all(&trial).ok();
        if got == Some(want) {
            eprintln!(
                "bitrot: flip of bit {bit:#04x} at byte {pos} ({want:?}): {}",
                stderr.trim()
            );
            chosen = Some((pos, bit));
            break;
        }
    }
    eprintln!(
        "bitrot: {whole} flips left the store whole, {lost} lost entries, {unreadable} \
         stores sled refused to read (conf, or a page), {unopenable} it panicked on"
    );
    let (pos, bit) = chosen.unwrap_or_else(|| {
        panic!("none of {TRIES} flips did {want:?} (seed {seed}); try another seed")
    });
    let mut flipped = db;
    flipped[pos] ^= bit;
    std::fs::write(store.join(file), &flipped).expect("damaging the node's store");
}

/// Starts the damaged node alone: while it repairs, it must refuse the damaged chains, lost
/// entries, exports and writes. Then connects it to its peer: every entry must come back at its
/// old log position.
fn refused_then_repaired(s: &mut Setup) {
    let total = s.all.len() as u64;
    let brand = s.brand;
    s.node.start();
    let info = s.node.info();
    if info.repairing {
        assert!(
            info.log_size < total,
            "repairing, but the damage took nothing from the log"
        );
        assert!(info.damaged_subjects > 0, "no damaged subject reported");
        let (mut refused, mut answered) = (0, 0);
        for c in &s.chains {
            let r = s.node.get(&format!(
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
                st => panic!("check on a damaged node: HTTP {st} {}", r.body),
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
        let lost_hash = &s.before[usize::try_from(info.log_size).expect("a log size")];
        let r = s.node.get(&format!("/v1/entries/{lost_hash}"));
        assert_eq!(r.status, 503, "a lost entry while repairing: {}", r.body);
        assert!(r.body.contains("chain_damaged"), "{}", r.body);
        let r = s.node.get("/v1/log/export");
        assert_eq!(r.status, 503, "an export while repairing: {}", r.body);
        let extra = s.chains[0].peek(proto::entry::Body::Grant(tests::consent(
            brand,
            &["dpv:Marketing"],
        )));
        let r = s.node.post_entry_json(&extra);
        assert_eq!(r.status, 503, "a write while repairing: {}", r.body);
        assert!(r.body.contains("repairing"), "{}", r.body);
    } else {
        // The damaged page held only records derived from the entries: rebuilt, nothing lost.
        assert_eq!(
            info.log_size, total,
            "not repairing, yet entries are missing"
        );
        eprintln!("bitrot: nothing lost; the derived records were rebuilt");
    }

    // With its peer, it puts every lost entry back at its old position.
    s.node.connect(&s.peer);
    wait_for(Duration::from_secs(30), "the repair to finish", || {
        !s.node.info().repairing
    });
    assert_eq!(s.node.info().log_size, total);
    assert_eq!(
        s.node.log_hashes(),
        s.before,
        "the repaired log differs from the original"
    );
    for c in &s.chains {
        let answer = s.node.check(&c.id(), &brand, "dpv:Marketing");
        // Every chain ends in a withdrawal.
        assert_eq!(answer.decision, proto::api::Verdict::Deny, "after repair");
        assert_eq!(answer.head_seq, PER_CHAIN as u64);
    }
    let extra = s.chains[0].grant(brand, &["dpv:Marketing"]);
    s.node.submit(&extra, 201);
    assert!(s.node.terminate().success());
    let out = store_check(s.node.data_dir(), &[]);
    assert!(
        out.status.success(),
        "check after the repair: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole scenario for one kind of damage (seeded with `BITROT_SEED`).
fn damaged_and_repaired(want: Damage) -> Setup {
    let seed = seed_from_env("bitrot", "BITROT_SEED", 1);
    let mut rng = Rng(seed | 1);
    let mut s = setup(CHAINS);
    damage(&s, &mut rng, seed, want);
    refused_then_repaired(&mut s);
    s
}

#[test]
fn bit_rot_is_detected_refused_and_repaired_from_peers() {
    damaged_and_repaired(Damage::Lost);
}

/// A flipped bit that sled cannot get past, here in its settings file (`store/conf`): it refuses
/// to open the store. (Flips in `store/db` can do the same: sled panics while recovering it, or
/// opens it and fails later on a page it reads lazily; the node handles those the same way.)
/// The node moves the store aside, salvages what sled can still read (here nothing) into a fresh
/// store with the old journal, and repairs every entry the journal names from its peer, at the
/// same log positions.
#[test]
fn a_store_sled_cannot_read_is_salvaged_and_repaired_from_peers() {
    let s = damaged_and_repaired(Damage::Unreadable);
    let kept_aside = std::fs::read_dir(s.node.data_dir())
        .expect("reading the data dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("store.damaged-")
        });
    assert!(
        kept_aside,
        "the damaged store was not kept beside the new one"
    );
}
