//! Store conformance: a model-based property test of the store against a `BTreeMap` model, with
//! reopen steps (sled's own `test_tree.rs` pattern), plus the rebuild and scrub checks.
//!
//! The tests are written against the `Store` trait through `open`, so another engine is a swap.

use std::collections::BTreeMap;
use std::path::Path;

use node::store::{Append, SledStore, Store, SubjectRecord};
use proptest::prelude::*;
use proto::chain::{ChainHead, ForkProof};
use proto::entry::{recovery_commitment, Body, Consent, Content, Entry, Method};
use proto::keys::{Hash, PublicKey, SecretKey};
use proto::state::ConsentState;

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir).expect("open store")
}

fn key(label: u8) -> SecretKey {
    SecretKey::from_seed([label; 32])
}

fn entry(subject: u8, seq: u64, prev: Hash, variant: u8) -> Entry {
    let sk = key(subject);
    let body = Consent {
        controller: key(200).public_key(),
        purposes: vec![if variant.is_multiple_of(2) {
            "dpv:Marketing".into()
        } else {
            "dpv:ServiceProvision".into()
        }],
        data: vec![],
        legal_basis: "dpv:Consent".into(),
        notice: None,
        valid_until: None,
        jurisdiction: None,
        method: Method::Api,
        gpc: None,
    };
    Content {
        subject: sk.public_key(),
        seq,
        prev,
        issued_at: 1_767_225_600_000 + seq,
        signer: sk.public_key(),
        recovery: (seq == 1).then(|| recovery_commitment(&key(subject + 100).public_key())),
        body: if variant < 2 {
            Body::Grant(body)
        } else {
            Body::Withdraw(body)
        },
    }
    .sign(&sk)
    .expect("sign")
}

#[derive(Clone, Debug)]
enum Op {
    Append { subject: u8, variant: u8 },
    Fork { subject: u8 },
    Flush,
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0u8..4).prop_map(|(subject, variant)| Op::Append { subject, variant }),
        1 => (0u8..4).prop_map(|subject| Op::Fork { subject }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    chains: BTreeMap<PublicKey, Vec<Entry>>,
    log: Vec<Hash>,
    forks: BTreeMap<PublicKey, ForkProof>,
}

/// Appends the next entry of `subject`'s `chain` (seq = its length + 1), with its record.
fn append_next(store: &SledStore, chain: &mut Vec<Entry>, subject: u8, variant: u8) {
    let prev = chain.last().map_or(Hash::ZERO, Entry::hash);
    let e = entry(subject, chain.len() as u64 + 1, prev, variant);
    chain.push(e.clone());
    store
        .append(&Append {
            hash: e.hash(),
            entry: e,
            record: record_of(chain, false),
        })
        .expect("append");
}

fn record_of(chain: &[Entry], forked: bool) -> SubjectRecord {
    SubjectRecord {
        head: proto::verify_chain(chain).expect("model chain valid"),
        consent: ConsentState::fold(chain.iter()),
        forked,
    }
}

fn check_against(store: &SledStore, m: &Model) {
    assert_eq!(store.log_size(), m.log.len() as u64);
    let log: Vec<Hash> = store
        .log_range(0, usize::MAX)
        .expect("log")
        .into_iter()
        .enumerate()
        .map(|(i, (idx, h))| {
            assert_eq!(idx, i as u64);
            h
        })
        .collect();
    assert_eq!(log, m.log);
    for (i, h) in m.log.iter().enumerate() {
        let loc = store
            .locate(h)
            .expect("locate")
            .expect("logged entry located");
        assert_eq!(loc.log_index, i as u64);
    }
    for (subject, chain) in &m.chains {
        assert_eq!(&store.chain(subject, 1, usize::MAX).expect("chain"), chain);
        for e in chain {
            assert_eq!(
                store.entry(subject, e.seq()).expect("entry").as_ref(),
                Some(e)
            );
        }
        assert_eq!(
            store.entry(subject, chain.len() as u64 + 1).expect("entry"),
            None
        );
        let rec = store.subject(subject).expect("record").expect("present");
        assert_eq!(rec, record_of(chain, m.forks.contains_key(subject)));
        assert_eq!(
            store.fork(subject).expect("fork").as_ref(),
            m.forks.get(subject)
        );
    }
    // The stored Merkle tree agrees with one recomputed from the model's log, at every size.
    let leaves: Vec<Hash> = m
        .log
        .iter()
        .map(|h| proto::merkle::leaf_hash(h.as_bytes()))
        .collect();
    for size in 0..=m.log.len() as u64 {
        let root = proto::merkle::root(&leaves[..], size);
        assert_eq!(store.tree_root(size).expect("root"), root, "size {size}");
        if size > 0 {
            let idx = size / 2;
            let p = store.inclusion_proof(idx, size).expect("inclusion");
            proto::merkle::verify_inclusion(&leaves[idx as usize], idx, size, &p, &root)
                .expect("inclusion verifies");
            let first = 1 + size / 3;
            let c = store.consistency_proof(first, size).expect("consistency");
            let old = proto::merkle::root(&leaves[..], first);
            proto::merkle::verify_consistency(first, size, &old, &root, &c)
                .expect("consistency verifies");
        }
    }
    assert!(store.tree_root(m.log.len() as u64 + 1).is_err());
    assert_eq!(store.subject_count(), m.chains.len() as u64);
    assert_eq!(store.fork_count(), m.forks.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_a_btreemap_model_across_reopens(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = open(dir.path());
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Append { subject, variant } => {
                    let pk = key(subject).public_key();
                    let chain = m.chains.entry(pk).or_default();
                    let prev = chain.last().map_or(Hash::ZERO, Entry::hash);
                    let e = entry(subject, chain.len() as u64 + 1, prev, variant);
                    chain.push(e.clone());
                    let record = record_of(chain, m.forks.contains_key(&pk));
                    let idx = store.append(&Append { hash: e.hash(), entry: e.clone(), record }).expect("append");
                    prop_assert_eq!(idx, m.log.len() as u64);
                    m.log.push(e.hash());
                }
                Op::Fork { subject } => {
                    let pk = key(subject).public_key();
                    let Some(chain) = m.chains.get(&pk) else { continue };
                    let last = chain.last().expect("non-empty");
                    let prev = if chain.len() > 1 { chain[chain.len() - 2].hash() } else { Hash::ZERO };
                    let other = entry(subject, last.seq(), prev, 3 - (last.seq() as u8 % 2));
                    if other == *last { continue; }
                    let proof = ForkProof::new(last.clone(), other, proto::chain::key_history(chain, last.seq())).expect("fork");
                    let record = record_of(chain, true);
                    store.put_fork(&proof, &record).expect("put fork");
                    m.forks.insert(pk, proof);
                }
                Op::Flush => store.flush().expect("flush"),
                Op::Reopen => {
                    store.flush().expect("flush");
                    drop(store);
                    store = open(dir.path());
                }
            }
            check_against(&store, &m);
        }
        prop_assert_eq!(store.verify_all().expect("scrub"), m.log.len() as u64);
    }
}

#[test]
fn derived_records_are_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut chains: BTreeMap<u8, Vec<Entry>> = BTreeMap::new();
    for i in 0..30u64 {
        let s = (i % 3) as u8;
        append_next(&store, chains.entry(s).or_default(), s, (i % 4) as u8);
    }
    store.flush().expect("flush");
    let logged: Vec<(Hash, u64)> = (0..30)
        .map(|i| {
            let hash = store.log_range(i, 1).expect("log")[0].1;
            (hash, i)
        })
        .collect();
    drop(store);

    // Damage only derived records, behind the store's back: every hash index entry goes, one
    // subject loses its record, and another gets a third subject's record.
    let subject_of = |s: u8| key(s).public_key();
    let s_key = |s: u8| [&[b'S'][..], subject_of(s).as_bytes()].concat();
    {
        let db = sled::open(dir.path()).expect("sled");
        let t = db.open_tree("ledger").expect("tree");
        for k in t.scan_prefix(b"H").keys() {
            t.remove(k.expect("key")).expect("remove");
        }
        t.remove(s_key(0)).expect("remove");
        let other = t.get(s_key(2)).expect("read").expect("present");
        t.insert(s_key(1), other).expect("insert");
        db.flush().expect("flush");
    }
    let store = open(dir.path());
    assert!(store.subject(&subject_of(0)).expect("read").is_none());
    assert!(store.locate(&logged[0].0).expect("read").is_none());

    assert_eq!(store.rebuild_derived().expect("rebuild"), 30);
    for (s, chain) in &chains {
        assert_eq!(
            store.subject(&subject_of(*s)).expect("read"),
            Some(record_of(chain, false)),
            "subject {s}"
        );
    }
    for (hash, index) in &logged {
        let loc = store.locate(hash).expect("read").expect("located again");
        assert_eq!(loc.log_index, *index);
        let e = store
            .entry(&loc.subject, loc.seq)
            .expect("read")
            .expect("stored");
        assert_eq!(e.hash(), *hash);
    }
    assert_eq!(store.verify_all().expect("scrub"), 30);
}

#[test]
fn a_store_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = sled::open(dir.path()).expect("sled");
        let t = db.open_tree("ledger").expect("tree");
        t.insert(b"Mformat", &99u64.to_be_bytes()).expect("insert");
        db.flush().expect("flush");
    }
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(node::store::StoreError::Format { found: 99 })
    ));
}

#[test]
fn a_data_directory_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = open(dir.path());
    match SledStore::open(dir.path()) {
        Err(e @ node::store::StoreError::Locked { .. }) => {
            assert!(e.to_string().contains("in use"), "{e}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second handle on a held directory opened"),
    }
    drop(held);
    // Once the holder is gone the directory opens again (after sled's threads let go).
    let _again = open(dir.path());
}

#[test]
fn a_chain_head_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = entry(1, 1, Hash::ZERO, 0);
    let head = ChainHead::genesis(&e).expect("genesis");
    {
        let store = open(dir.path());
        let record = record_of(std::slice::from_ref(&e), false);
        store
            .append(&Append {
                hash: e.hash(),
                entry: e.clone(),
                record,
            })
            .expect("append");
        store.flush().expect("flush");
    }
    let store = open(dir.path());
    assert_eq!(
        store
            .subject(&e.subject())
            .expect("read")
            .expect("present")
            .head,
        head
    );
    assert_eq!(store.log_size(), 1);
}

/// `ensure_durable` (called before entries go to a peer) flushes what the last flush did not
/// cover, and only then: the durable size reaches the log size.
#[test]
fn ensure_durable_covers_everything_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut chain = Vec::new();
    for _ in 0..3 {
        append_next(&store, &mut chain, 1, 0);
    }
    assert_eq!(store.log_size(), 3);
    assert_eq!(store.durable_size(), 0, "nothing flushed yet");
    store.ensure_durable().expect("flush");
    assert_eq!(store.durable_size(), 3);
    // Nothing new: no flush needed, and the answer stays.
    store.ensure_durable().expect("no-op");
    assert_eq!(store.durable_size(), 3);
}

/// A single-threaded tokio runtime with timers, for the store's async waits.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// `wait_durable` (called by every HTTP read before it answers) returns only once a flush has
/// covered every group committed before the call, answers `NotDurable` when none came in time,
/// and does not hold reads back on a store that has failed; `wait_subjects_durable` (checks)
/// waits only for groups that wrote one of its subjects.
#[test]
fn wait_durable_waits_for_the_flush_that_covers_what_was_read() {
    let (rt, dir) = (runtime(), tempfile::tempdir().expect("tempdir"));
    let store = std::sync::Arc::new(open(dir.path()));
    let short = std::time::Duration::from_millis(50);
    rt.block_on(async {
        store
            .wait_durable(short)
            .await
            .expect("nothing committed: no wait");
        let mut chain = Vec::new();
        append_next(&store, &mut chain, 1, 0);
        assert!(
            matches!(
                store.wait_durable(short).await,
                Err(node::store::StoreError::NotDurable)
            ),
            "a committed group that no flush covered must hold the read back"
        );
        // A check of subject 1 waits too; one of another subject does not.
        let one = key(1).public_key();
        let two = key(2).public_key();
        assert!(matches!(
            store.wait_subjects_durable([&one, &two], short).await,
            Err(node::store::StoreError::NotDurable)
        ));
        store
            .wait_subjects_durable([&two], short)
            .await
            .expect("subject 2 has no write in flight");
        assert_eq!(store.flushed_size(), 0);
        // A flush on another thread while the read waits: the wait ends with it.
        let flusher = {
            let store = store.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                store.flush().expect("flush");
            })
        };
        let started = std::time::Instant::now();
        store
            .wait_durable(std::time::Duration::from_secs(10))
            .await
            .expect("the flush covers it");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(90),
            "the wait ended before the flush"
        );
        flusher.join().expect("flusher");
        store.wait_durable(short).await.expect("flushed: no wait");
        store
            .wait_subjects_durable([&one], short)
            .await
            .expect("subject 1 flushed: no wait");
        assert_eq!(store.flushed_size(), 1);
        // A failed store answers from what it holds, without waiting.
        append_next(&store, &mut chain, 1, 0);
        store.set_read_only();
        store
            .wait_durable(short)
            .await
            .expect("a failed store does not hold reads back");
    });
}

/// Under concurrent commits and flushes, a reader that waits with `wait_durable` always finds the
/// flushed size at least the log size it saw before the wait: a flush never claims a group it
/// did not cover (it reads the commit count and the log size together, under the commit's lock).
#[test]
fn wait_durable_holds_under_concurrent_commits_and_flushes() {
    let (rt, dir) = (runtime(), tempfile::tempdir().expect("tempdir"));
    let store = std::sync::Arc::new(open(dir.path()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut chains: Vec<Vec<Entry>> = vec![Vec::new(); 8];
            for i in 0..1200 {
                append_next(&store, &mut chains[i % 8], (i % 8) as u8 + 1, 0);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let flusher = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                store.flush().expect("flush");
            }
            store.flush().expect("last flush");
        })
    };
    let mut reads = 0u32;
    rt.block_on(async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let seen = store.log_size();
            store
                .wait_durable(std::time::Duration::from_secs(10))
                .await
                .expect("the flusher runs");
            let flushed = store.flushed_size();
            assert!(
                flushed >= seen,
                "read {reads}: saw {seen} entries, then the wait returned with {flushed} flushed"
            );
            reads += 1;
        }
    });
    writer.join().expect("writer");
    flusher.join().expect("flusher");
    assert!(reads > 10, "only {reads} reads ran alongside the writes");
    assert_eq!(store.flushed_size(), 1200);
}

/// The log journal (`store/journal`) names every log position; what it names past the log after
/// a reopen is reported as lost, in order; a journal that lags is completed from the log; a
/// journal that names another entry at a logged position makes the open fail.
#[test]
fn the_journal_names_lost_entries_and_catches_up_when_it_lags() {
    use node::journal::{JournalRecord, RECORD_LEN};
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain: Vec<Entry> = Vec::new();
    {
        let store = open(dir.path());
        for _ in 0..5 {
            append_next(&store, &mut chain, 1, 0);
        }
        store.flush().expect("flush");
        assert!(store.lost_entries().is_empty());
    }
    let journal = dir.path().join("journal");
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        5 * RECORD_LEN as u64,
        "one record per durable log position"
    );
    // As if sled had dropped the tail: the journal names two positions the log does not have.
    let lost: Vec<Entry> = (0..2)
        .map(|i| {
            let prev = chain.last().map_or(Hash::ZERO, Entry::hash);
            let e = entry(1, 6 + i, prev, 0);
            chain.push(e.clone());
            e
        })
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("open journal");
    for e in &lost {
        let r = JournalRecord {
            hash: e.hash(),
            subject: e.subject(),
            seq: e.seq(),
        };
        f.write_all(&r.to_bytes()).expect("write journal");
    }
    drop(f);
    {
        let store = open(dir.path());
        let named: Vec<(Hash, u64)> = store
            .lost_entries()
            .iter()
            .map(|r| (r.hash, r.seq))
            .collect();
        assert_eq!(
            named,
            lost.iter().map(|e| (e.hash(), e.seq())).collect::<Vec<_>>()
        );
        // Putting the first back at its old position shortens the list.
        append_next(&store, &mut chain[..5].to_vec(), 1, 0);
        store
            .flush()
            .expect("the lost entry goes back at its position");
        assert_eq!(store.lost_entries().len(), 1);
        assert_eq!(store.lost_entries()[0].seq, 7);
    }
    // A journal that lags the log (cut short) is completed from the log at open.
    let len = std::fs::metadata(&journal).expect("journal").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open journal")
        .set_len(2 * RECORD_LEN as u64)
        .expect("cut journal");
    {
        let store = open(dir.path());
        assert!(
            store.lost_entries().is_empty(),
            "the log is the truth for what it holds"
        );
        assert_eq!(store.log_size(), 6);
    }
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        6 * RECORD_LEN as u64,
        "completed from the log (was {len} bytes before the cut)"
    );
    // A journal that names another entry at a logged position: the open fails, naming it.
    let mut bytes = std::fs::read(&journal).expect("read journal");
    let other = entry(9, 1, Hash::ZERO, 0);
    let r = JournalRecord {
        hash: other.hash(),
        subject: other.subject(),
        seq: 1,
    };
    bytes[..RECORD_LEN].copy_from_slice(&r.to_bytes());
    std::fs::write(&journal, &bytes).expect("write journal");
    let err = SledStore::open(dir.path())
        .err()
        .expect("a conflicting journal is refused");
    assert!(err.to_string().contains("journal"), "{err}");
}

/// A store whose writes failed takes no more writes, and reopening sled (what a read does when
/// sled fails it with the kept write error) keeps every flushed entry readable. An iterator that
/// holds the old handles keeps sled's lock: that reopen fails, reads then answer `Reopening`, and
/// a read a second later, once the iterator is gone, reopens.
#[test]
fn a_failed_store_refuses_writes_and_reads_through_a_reopen() {
    use node::store::StoreError;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut chain = Vec::new();
    for _ in 0..20 {
        append_next(&store, &mut chain, 1, 0);
    }
    store.flush().expect("flush");
    let subject = chain[0].subject();
    store.set_read_only();
    let next = entry(1, 21, chain[19].hash(), 2);
    let refused = store.append(&Append {
        hash: next.hash(),
        entry: next.clone(),
        record: record_of(&chain, false),
    });
    assert!(matches!(refused, Err(StoreError::ReadOnly)), "{refused:?}");
    assert!(matches!(store.flush(), Err(StoreError::ReadOnly)));
    assert!(matches!(
        store.put_checkpoint(20, "note"),
        Err(StoreError::ReadOnly)
    ));

    store.reopen().expect("reopen");
    assert_eq!(store.log_size(), 20);
    assert_eq!(store.chain(&subject, 1, 100).expect("chain"), chain);
    assert_eq!(store.verify_all().expect("scrub"), 20);
    assert!(matches!(store.flush(), Err(StoreError::ReadOnly)));

    // An iterator over the old handles keeps sled's file lock through the reopen.
    let held = store.subject_records();
    let started = std::time::Instant::now();
    assert!(store.reopen().is_err(), "reopen with the lock held");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert!(matches!(
        store.subject(&subject),
        Err(StoreError::Reopening)
    ));
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rec = store
        .subject(&subject)
        .expect("read reopens")
        .expect("record");
    assert_eq!(rec.head.seq, 20);
    assert_eq!(
        store.entry(&subject, 20).expect("entry"),
        Some(chain[19].clone())
    );
}

/// A partial salvage (docs/RELIABILITY.md, item 3): sled opens the store, but one entry in the
/// middle of the log no longer reads back whole. The salvage keeps every entry before it, in log
/// order and at the same positions, with the checkpoints; the journal names every position from
/// the damaged one on as lost, in order; the derived records are rebuilt from what was kept; the
/// damaged store is kept beside the new one; and putting the lost entries back in order ends the
/// repair. (A page that sled itself fails to read takes the same path: the read gives no entry.)
#[test]
fn a_partial_salvage_keeps_the_entries_before_the_first_damaged_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut log: Vec<Entry> = Vec::new();
    {
        let store = open(&dir);
        for i in 0..8 {
            let (chain, subject) = if i % 2 == 0 { (&mut a, 1) } else { (&mut b, 2) };
            append_next(&store, chain, subject, 0);
            log.push(chain.last().expect("appended").clone());
        }
        store.flush().expect("flush");
        store
            .put_checkpoint(4, "a checkpoint note\n")
            .expect("checkpoint");
        store.flush().expect("flush");
    }
    // Damage the entry at log position 5 (subject 2's third entry): its record no longer holds
    // the entry the log and the journal name there.
    let damaged = &log[5];
    {
        let db = sled::open(&dir).expect("sled opens the store");
        let tree = db.open_tree("ledger").expect("the ledger tree");
        let mut k = vec![b'E'];
        k.extend_from_slice(damaged.subject().as_bytes());
        k.extend_from_slice(&damaged.seq().to_be_bytes());
        let mut v = tree
            .get(&k)
            .expect("read")
            .expect("the entry is stored")
            .to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x01;
        tree.insert(k, v).expect("damage");
        db.flush().expect("flush");
    }
    let salvaged = node::store::salvage(&dir).expect("salvage");
    assert_eq!((salvaged.kept, salvaged.lost), (5, 3), "{salvaged:?}");
    assert!(
        salvaged.damaged_dir.join("db").exists(),
        "the damaged store is kept"
    );
    let store = open(&dir);
    assert_eq!(store.log_size(), 5);
    let kept: Vec<Hash> = store
        .log_range(0, usize::MAX)
        .expect("log")
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(kept, log[..5].iter().map(Entry::hash).collect::<Vec<_>>());
    let named: Vec<Hash> = store.lost_entries().iter().map(|r| r.hash).collect();
    assert_eq!(named, log[5..].iter().map(Entry::hash).collect::<Vec<_>>());
    assert_eq!(
        store.checkpoint(4).expect("read").as_deref(),
        Some("a checkpoint note\n")
    );
    // Derived records rebuilt from the kept entries: subject 1 up to seq 3, subject 2 up to 2.
    let head = |c: &[Entry]| {
        store
            .subject(&c[0].subject())
            .expect("read")
            .expect("record")
    };
    assert_eq!(head(&a).head.seq, 3);
    assert_eq!(head(&b).head.seq, 2);
    assert_eq!(head(&b).head.hash, b[1].hash());
    // The repair puts the lost entries back in order, at their old positions.
    let (mut a_kept, mut b_kept) = (a[..3].to_vec(), b[..2].to_vec());
    for e in &log[5..] {
        let chain = if e.subject() == a[0].subject() {
            &mut a_kept
        } else {
            &mut b_kept
        };
        chain.push(e.clone());
        store
            .append(&Append {
                hash: e.hash(),
                entry: e.clone(),
                record: record_of(chain, false),
            })
            .expect("append");
    }
    store.flush().expect("flush");
    assert!(store.lost_entries().is_empty());
    assert_eq!(
        store
            .log_range(0, usize::MAX)
            .expect("log")
            .into_iter()
            .map(|(_, h)| h)
            .collect::<Vec<_>>(),
        log.iter().map(Entry::hash).collect::<Vec<_>>()
    );
}
