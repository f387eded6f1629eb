//! The durable store: a small trait and its sled implementation.
//!
//! Everything lives in one sled tree with one-byte key prefixes, so that all writes for one entry
//! go into one `Batch` and are applied atomically:
//!
//! | key | value | kind |
//! |---|---|---|
//! | `E` subject(32) seq(8, BE) | entry bytes (canonical) | truth |
//! | `L` log_index(8, BE) | entry hash(32) | truth (ingest order) |
//! | `F` subject(32) | fork proof bytes | truth (evidence) |
//! | `H` hash(32) | log_index(8) subject(32) seq(8) | derived |
//! | `S` subject(32) | `SubjectRecord` (postcard) | derived |
//! | `T` level(1) index(8, BE) | Merkle hash of the perfect subtree of 2^level leaves, level >= [`MIN_STORED_LEVEL`] (lower levels are recomputed from `L`) | derived |
//! | `M` name | metadata (format version) | meta |
//!
//! The signed entries (`E`, in the order of `L`) are the truth; `H` and `S` can be rebuilt from them
//! ([`SledStore::rebuild_derived`]). Durability: nothing is durable until [`Store::flush`] returns;
//! the ledger acknowledges only after that (group commit).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use proto::chain::{ChainHead, ForkProof};
use proto::entry::Entry;
use proto::keys::{Hash, PublicKey};
use proto::state::ConsentState;
use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalRecord};

/// On-disk format version of this store layout.
pub const FORMAT_VERSION: u64 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption).
    #[error("storage engine: {0}")]
    Engine(#[from] sled::Error),
    /// Stored bytes that do not decode or whose hash does not match their key.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The key, hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process (or a store not yet fully closed in this one) holds the data directory.
    #[error("data directory {path} is in use by another process (sled lock held)")]
    Locked {
        /// The directory.
        path: String,
    },
    /// A flush failed earlier: the store takes no more writes until the node restarts.
    #[error(
        "the store takes no writes after a failed flush (restart the node once the disk is fixed)"
    )]
    ReadOnly,
    /// A read found writes that no flush made durable within the reader's wait.
    #[error("what this read found is not durable yet (no flush in time); try again")]
    NotDurable,
    /// sled is being (or could not be) opened again after a failed flush.
    #[error("the storage engine is being reopened after a failed flush")]
    Reopening,
    /// sled failed while opening (recovering) the store: damaged beyond what it reports as an
    /// error.
    #[error("sled cannot open the store in {path}: it failed while reading it ({reason}); the files are damaged")]
    Unopenable {
        /// The directory.
        path: String,
        /// What sled said.
        reason: String,
    },
    /// The data directory holds a store of another format version.
    #[error("store format version {found} is not supported (expected {FORMAT_VERSION})")]
    Format {
        /// The version found.
        found: u64,
    },
}

/// How long `open` waits for sled's file lock. sled's background I/O threads can hold the
/// previous handle's files for a moment after a `Db` in this process is dropped, so a reopen
/// straight after a close may briefly find the lock taken; another process holding it is
/// reported as [`StoreError::Locked`] once this has passed.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        // sled 0.34 can panic on some damaged files while it recovers them (seen: "tried to
        // serialize Uninitialized" after a flipped bit): a clear error instead.
        let result = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(dir)
                // The ledger flushes explicitly before every acknowledgement.
                .flush_every_ms(Some(1000))
                .open()
        })
        .map_err(|panic| StoreError::Unopenable {
            path: dir.display().to_string(),
            reason: panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic inside sled".to_owned()),
        })?;
        match result {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Locked {
                        path: dir.display().to_string(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the node keeps per subject, derived from its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// Key state and head after the last stored entry.
    pub head: ChainHead,
    /// Folded consent state (the index a check reads).
    pub consent: ConsentState,
    /// Whether a fork proof is stored.
    pub forked: bool,
}

/// One entry to append, with its derived record.
#[derive(Clone, Debug)]
pub struct Append {
    /// The verified entry.
    pub entry: Entry,
    /// Its hash.
    pub hash: Hash,
    /// The subject's record after this entry.
    pub record: SubjectRecord,
}

/// Why a Merkle request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request does not fit the log (index or sizes out of range).
    #[error("{0}")]
    Range(#[from] proto::merkle::MerkleError),
    /// A size beyond the current log.
    #[error("size {size} is beyond the log size {log_size}")]
    BeyondLog {
        /// The size asked.
        size: u64,
        /// The log size.
        log_size: u64,
    },
    /// Storage error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An ingest-log position: its index, the entry's hash, and the entry.
pub type LogEntry = (u64, Hash, Entry);

/// Where an entry sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Ingest-log index.
    pub log_index: u64,
    /// Subject.
    pub subject: PublicKey,
    /// Seq.
    pub seq: u64,
}

/// The operations the ledger needs from storage. One writer (the ledger) at a time.
pub trait Store: Send + Sync + 'static {
    /// Appends one entry and its derived records atomically; returns its log index.
    ///
    /// # Errors
    /// [`StoreError`]; on error nothing of the entry is visible.
    fn append(&self, a: &Append) -> Result<u64, StoreError>;
    /// Stores a fork proof and marks the subject forked, atomically.
    ///
    /// # Errors
    /// [`StoreError`].
    fn put_fork(&self, proof: &ForkProof, record: &SubjectRecord) -> Result<(), StoreError>;
    /// Makes every earlier write durable.
    ///
    /// # Errors
    /// [`StoreError`]; after an error nothing may be acknowledged.
    fn flush(&self) -> Result<(), StoreError>;
    /// The entry at (subject, seq).
    ///
    /// # Errors
    /// [`StoreError`], including [`StoreError::Corrupt`].
    fn entry(&self, subject: &PublicKey, seq: u64) -> Result<Option<Entry>, StoreError>;
    /// Where the entry with `hash` is.
    ///
    /// # Errors
    /// [`StoreError`].
    fn locate(&self, hash: &Hash) -> Result<Option<Location>, StoreError>;
    /// The subject's record.
    ///
    /// # Errors
    /// [`StoreError`].
    fn subject(&self, subject: &PublicKey) -> Result<Option<SubjectRecord>, StoreError>;
    /// The subject's fork proof.
    ///
    /// # Errors
    /// [`StoreError`].
    fn fork(&self, subject: &PublicKey) -> Result<Option<ForkProof>, StoreError>;
    /// Up to `limit` entries of the subject from `from_seq`, in seq order.
    ///
    /// # Errors
    /// [`StoreError`].
    fn chain(
        &self,
        subject: &PublicKey,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
    /// Number of entries in the ingest log.
    fn log_size(&self) -> u64;
    /// Up to `limit` (log index, hash) pairs from `start`.
    ///
    /// # Errors
    /// [`StoreError`].
    fn log_range(&self, start: u64, limit: usize) -> Result<Vec<(u64, Hash)>, StoreError>;

    /// Up to `limit` entries of the ingest log from `start`, in log order, with their indices and
    /// hashes.
    ///
    /// # Errors
    /// [`StoreError`]; [`StoreError::Corrupt`] for a logged entry that is not stored.
    fn log_entries(&self, start: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError>;
    /// Number of subjects stored.
    fn subject_count(&self) -> u64;
    /// Number of forked subjects.
    fn fork_count(&self) -> u64;
    /// Bytes on disk (approximate).
    fn size_on_disk(&self) -> u64;
    /// The Merkle root of the first `size` log entries.
    ///
    /// # Errors
    /// [`ProofError`].
    fn tree_root(&self, size: u64) -> Result<Hash, ProofError>;
    /// The inclusion proof of log entry `index` in the tree of `size`.
    ///
    /// # Errors
    /// [`ProofError`].
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError>;
    /// The consistency proof between the trees of `first` and `second` entries.
    ///
    /// # Errors
    /// [`ProofError`].
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError>;
}

/// A group of writes applied as one atomic sled batch (see [`SledStore::group`]). sled 0.34
/// spends most of a small batch's cost on fixed overhead, so one batch per group of entries is
/// several times faster than one per entry; each entry's writes stay atomic, being inside it.
pub struct WriteGroup<'a> {
    store: &'a SledStore,
    batch: sled::Batch,
    /// Log index of the next append.
    next_index: u64,
    /// Locations of entries appended in this group.
    locs: HashMap<Hash, Location>,
    /// Subject records written in this group (the latest one per subject).
    records: HashMap<PublicKey, SubjectRecord>,
    /// Entries appended in this group.
    entries: BTreeMap<(PublicKey, u64), Entry>,
    /// Merkle nodes written in this group (a parent may need a left sibling written here).
    nodes: HashMap<(u8, u64), Hash>,
    /// How many appends and fork proofs the group holds.
    writes: usize,
    /// The journal records of the entries appended here, by log index.
    journal: Vec<(u64, JournalRecord)>,
}

impl WriteGroup<'_> {
    /// Whether the group holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// Where the entry with `hash` is, including this group's appends.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn locate(&self, hash: &Hash) -> Result<Option<Location>, StoreError> {
        match self.locs.get(hash) {
            Some(l) => Ok(Some(*l)),
            None => self.store.locate(hash),
        }
    }

    /// The subject's record, including this group's writes.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn subject(&self, subject: &PublicKey) -> Result<Option<SubjectRecord>, StoreError> {
        match self.records.get(subject) {
            Some(r) => Ok(Some(r.clone())),
            None => self.store.subject(subject),
        }
    }

    /// The entry at (subject, seq), including this group's appends.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn entry(&self, subject: &PublicKey, seq: u64) -> Result<Option<Entry>, StoreError> {
        match self.entries.get(&(*subject, seq)) {
            Some(e) => Ok(Some(e.clone())),
            None => self.store.entry(subject, seq),
        }
    }

    /// Up to `limit` entries of the subject from `from_seq`, including this group's appends.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn chain(
        &self,
        subject: &PublicKey,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = self.store.chain(subject, from_seq, limit)?;
        let from = out.last().map_or(from_seq, |e| e.seq() + 1).max(from_seq);
        for ((_, _), e) in self.entries.range((*subject, from)..=(*subject, u64::MAX)) {
            if out.len() >= limit {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// Adds an entry with its derived records; returns its log index.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn append(&mut self, a: Append) -> Result<u64, StoreError> {
        let index = self.next_index;
        let subject = a.entry.subject();
        let seq = a.entry.seq();
        let mut loc = Vec::with_capacity(48);
        loc.extend_from_slice(&index.to_be_bytes());
        loc.extend_from_slice(subject.as_bytes());
        loc.extend_from_slice(&seq.to_be_bytes());
        let record = encode_record(&a.record)?;
        self.batch
            .insert(&key_e(&subject, seq)[..], a.entry.to_bytes());
        self.batch.insert(&key_l(index)[..], &a.hash.as_bytes()[..]);
        self.store
            .add_tree_nodes(index, &a.hash, &mut self.batch, &mut self.nodes)?;
        self.batch.insert(&key_h(&a.hash)[..], loc);
        self.batch.insert(&key_s(b'S', &subject)[..], record);
        self.locs.insert(
            a.hash,
            Location {
                log_index: index,
                subject,
                seq,
            },
        );
        self.records.insert(subject, a.record);
        self.entries.insert((subject, seq), a.entry);
        self.journal.push((
            index,
            JournalRecord {
                hash: a.hash,
                subject,
                seq,
            },
        ));
        self.next_index = index + 1;
        self.writes += 1;
        Ok(index)
    }

    /// Adds a fork proof and the subject's record marked forked.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_fork(
        &mut self,
        proof: &ForkProof,
        record: &SubjectRecord,
    ) -> Result<(), StoreError> {
        let subject = proof.subject();
        let json = encode_record(record)?;
        self.batch
            .insert(&key_s(b'F', &subject)[..], proof.to_bytes());
        self.batch.insert(&key_s(b'S', &subject)[..], json);
        self.records.insert(subject, record.clone());
        self.writes += 1;
        Ok(())
    }

    /// Applies the group atomically and makes it visible (not yet durable: flush for that).
    ///
    /// # Errors
    /// [`StoreError`]; then nothing of the group is visible.
    pub fn commit(self) -> Result<(), StoreError> {
        if self.writes == 0 {
            return Ok(());
        }
        // The journal queue is filled under its lock before the log size moves, so a flush that
        // sees the new size also finds these records.
        let mut queue = lock(&self.store.journal_queue);
        let batch = self.batch;
        let number = self.store.commits.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut unflushed = lock(&self.store.unflushed);
            for subject in self.records.keys() {
                unflushed.insert(*subject, number);
            }
        }
        self.store.write(|en| en.tree.apply_batch(batch))?;
        queue.extend(self.journal);
        self.store.log_size.store(self.next_index, Ordering::SeqCst);
        Ok(())
    }
}

/// The sled implementation of [`Store`].
pub struct SledStore {
    /// The data directory.
    dir: PathBuf,
    /// sled's handles; `None` only while they are being reopened (or could not be).
    engine: RwLock<Option<Arc<Engine>>>,
    /// Set when a flush or a write failed: sled keeps such an error and fails every later write
    /// with it, and also a read that has to restructure a page (split, merge, consolidation).
    failed: AtomicBool,
    /// Serialises reopens; holds when the last one was tried (at most one a second).
    reopen_gate: Mutex<Option<Instant>>,
    /// Counts reopens, so that a reader that failed on the old handles retries on new ones.
    generation: AtomicU64,
    /// Cached ingest-log size; the single writer advances it after each append.
    log_size: AtomicU64,
    /// The log size as of the last successful flush: checkpoints never cover more, so a node
    /// never signs a root over entries that a crash could still take back.
    durable_size: AtomicU64,
    /// The log journal (see [`crate::journal`]), appended after each durable flush.
    journal: Mutex<Journal>,
    /// Journal records of committed entries not yet in the journal, in log order.
    journal_queue: Mutex<Vec<(u64, JournalRecord)>>,
    /// What the journal names beyond the log found at open: positions sled lost, from
    /// `lost_from` on, in order. Repair puts them back; they stay here to check that it does.
    lost: Vec<JournalRecord>,
    /// The log size at open (the first lost position).
    lost_from: u64,
    /// Log positions the journal has made durable: checkpoints never cover more, so every
    /// position a signed checkpoint covers is named durably, and a loss there is repaired at the
    /// same index instead of coming back elsewhere.
    journal_synced: AtomicU64,
    /// Write groups committed (made visible), counted just before each is applied, so that a
    /// reader that saw a group's writes reads a count that includes it.
    commits: AtomicU64,
    /// How many of `commits` the last successful flush covered; readers wait on it (see
    /// [`SledStore::wait_durable`]).
    durable_commits: tokio::sync::watch::Sender<u64>,
    /// Subjects written by committed groups that no flush has covered yet, each with the number
    /// (in `commits`) of its latest such group: a check waits only for its own subject's writes.
    unflushed: Mutex<HashMap<PublicKey, u64>>,
}

/// What [`salvage`] kept and left to repair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Salvaged {
    /// Entries read back whole, in log order from position 0.
    pub kept: u64,
    /// Log positions the journal names past them: lost, to be repaired from peers.
    pub lost: u64,
    /// Where the damaged store was moved.
    pub damaged_dir: PathBuf,
}

/// Whether an error is sled failing on damaged files: a page or message that fails its CRC
/// check, or a store it cannot open at all.
pub fn is_sled_corruption(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Engine(sled::Error::Corruption { .. }) | StoreError::Unopenable { .. }
    )
}

/// Rebuilds a store that sled cannot read whole: one it cannot open at all (it fails, or
/// panics, while recovering a damaged file), or one with a page it cannot read (sled reads pages
/// lazily: it opens, and fails later, on the reads that touch that page).
///
/// The entries are read back one by one in journal order (then, past the journal, in log
/// order) until the first that cannot be read whole (none, when sled cannot open the store);
/// they go into a fresh sled store, with every fork proof, checkpoint, witness note and
/// split-view proof that can still be read, and the derived records are rebuilt from them. The journal is kept as it was, so the positions
/// after the last entry kept are the store's lost entries: the node starts repairing them from
/// its peers (see [`SledStore::lost_entries`]). The damaged directory is moved aside to
/// `<dir>.damaged-<unix seconds>`, not deleted.
///
/// # Errors
/// [`StoreError`] when sled cannot open the damaged store at all, or the new one cannot be
/// written.
pub fn salvage(dir: &Path) -> Result<Salvaged, StoreError> {
    let (_journal, records) = Journal::open(&dir.join("journal")).map_err(io_error)?;
    let old = match Engine::open(dir) {
        Ok(old) => Some(old),
        Err(e) if is_sled_corruption(&e) => {
            tracing::warn!(error = %e, "nothing can be read through sled: every entry the journal names is repaired from peers");
            None
        }
        Err(e) => return Err(e),
    };
    let Some(old) = old else {
        return replace_store(
            dir,
            &[],
            Vec::new(),
            [Vec::new(), Vec::new(), Vec::new()],
            records.len(),
        );
    };
    // sled can panic on a damaged page as it reads it: then nothing more is read through it.
    let harvested =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harvest(&old, &records)));
    drop(old);
    let (kept, forks, others) = harvested.unwrap_or_else(|_| {
        tracing::warn!("sled panicked while the store was read back; nothing of it is kept");
        (Vec::new(), Vec::new(), [Vec::new(), Vec::new(), Vec::new()])
    });
    replace_store(dir, &kept, forks, others, records.len())
}

/// What [`salvage`] reads back through sled: the entries that are whole, in log order from
/// position 0, then every readable fork-proof record and the records of the checkpoints, witness
/// and split-view trees.
fn harvest(old: &Engine, records: &[Option<JournalRecord>]) -> Harvest {
    let read_entry = |subject: &PublicKey, seq: u64, hash: &Hash| -> Option<Vec<u8>> {
        let v = old.tree.get(key_e(subject, seq)).ok()??;
        let e = Entry::from_bytes(&v).ok()?;
        (e.hash() == *hash && e.subject() == *subject && e.seq() == seq).then(|| v.to_vec())
    };
    let mut kept: Vec<(JournalRecord, Vec<u8>)> = Vec::new();
    let mut whole = true;
    for r in records {
        let Some(r) = r else {
            whole = false;
            break;
        };
        match read_entry(&r.subject, r.seq, &r.hash) {
            Some(b) => kept.push((*r, b)),
            None => {
                whole = false;
                break;
            }
        }
    }
    if whole {
        // Past the journal (it lags the log by up to a second): the log's own order.
        loop {
            let index = kept.len() as u64;
            let Ok(Some(h)) = old.tree.get(key_l(index)) else {
                break;
            };
            let Ok(hash) = arr::<32>(&key_l(index), &h).map(Hash::from_bytes) else {
                break;
            };
            let k = key_h(&hash);
            let Some(loc) = old
                .tree
                .get(k)
                .ok()
                .flatten()
                .and_then(|v| decode_location(&k, &v).ok())
            else {
                break;
            };
            match read_entry(&loc.subject, loc.seq, &hash) {
                Some(b) => kept.push((
                    JournalRecord {
                        hash,
                        subject: loc.subject,
                        seq: loc.seq,
                    },
                    b,
                )),
                None => break,
            }
        }
    }
    // What else can still be read, record by record.
    let readable = |t: &sled::Tree, prefix: &[u8]| -> Vec<(sled::IVec, sled::IVec)> {
        t.scan_prefix(prefix).map_while(Result::ok).collect()
    };
    let forks = readable(&old.tree, b"F");
    let others = [
        readable(&old.checkpoints, b""),
        readable(&old.witness, b""),
        readable(&old.split_views, b""),
    ];
    (kept, forks, others)
}

type Pairs = Vec<(sled::IVec, sled::IVec)>;

/// What [`harvest`] read back: whole entries (hash, bytes) in log order, fork-proof records, and
/// the checkpoints, witness and split-view trees' records.
type Harvest = (Vec<(JournalRecord, Vec<u8>)>, Pairs, [Pairs; 3]);

/// Builds a fresh store beside `dir` from `kept` (entries in log order), fork-proof records and
/// the checkpoints, witness and split-view trees' records, with `dir`'s journal; then moves
/// `dir` aside and the fresh store into its place.
fn replace_store(
    dir: &Path,
    kept: &[(JournalRecord, Vec<u8>)],
    forks: Pairs,
    [checkpoints, witness, split_views]: [Pairs; 3],
    journaled: usize,
) -> Result<Salvaged, StoreError> {
    let fresh_dir = dir.with_extension("salvage");
    if fresh_dir.exists() {
        std::fs::remove_dir_all(&fresh_dir).map_err(io_error)?;
    }
    {
        let fresh = SledStore::open(&fresh_dir)?;
        let en = fresh.engine()?;
        let mut batch = sled::Batch::default();
        for (index, (r, bytes)) in kept.iter().enumerate() {
            batch.insert(&key_e(&r.subject, r.seq)[..], &bytes[..]);
            batch.insert(&key_l(index as u64)[..], &r.hash.as_bytes()[..]);
        }
        for (k, v) in forks {
            batch.insert(k, v);
        }
        en.tree.apply_batch(batch)?;
        for (tree, pairs) in [
            (&en.checkpoints, checkpoints),
            (&en.witness, witness),
            (&en.split_views, split_views),
        ] {
            let mut b = sled::Batch::default();
            for (k, v) in pairs {
                b.insert(k, v);
            }
            tree.apply_batch(b)?;
        }
        drop(en);
        fresh.rebuild_derived()?;
        // Durable before the swap: sled's flush, then an fdatasync of its log.
        Store::flush(&fresh)?;
    }
    // The old journal, which names the lost positions past the entries kept.
    std::fs::copy(dir.join("journal"), fresh_dir.join("journal")).map_err(io_error)?;
    std::fs::File::open(fresh_dir.join("journal"))
        .and_then(|f| f.sync_all())
        .map_err(io_error)?;
    if let Ok(d) = std::fs::File::open(&fresh_dir) {
        let _ = d.sync_all();
    }
    // From here on `<dir>.salvage` is complete: a start that finds no `<dir>` but this one
    // finishes the swap (see `finish_salvage`).
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let damaged_dir = dir.with_extension(format!("damaged-{stamp}"));
    std::fs::rename(dir, &damaged_dir).map_err(io_error)?;
    std::fs::rename(&fresh_dir, dir).map_err(io_error)?;
    if let Some(parent) = dir.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    let kept = kept.len() as u64;
    Ok(Salvaged {
        kept,
        lost: (journaled as u64).saturating_sub(kept),
        damaged_dir,
    })
}

/// Finishes a salvage that a crash interrupted between its two renames: with no store in `dir`
/// but a complete `<dir>.salvage` beside it, moves that one into place. True if it did.
///
/// # Errors
/// When the rename fails.
pub fn finish_salvage(dir: &Path) -> Result<bool, StoreError> {
    let fresh = dir.with_extension("salvage");
    if dir.exists() || !fresh.join("journal").exists() {
        return Ok(false);
    }
    std::fs::rename(&fresh, dir).map_err(io_error)?;
    Ok(true)
}

/// Reads every record of every tree once, so that a page sled reads lazily and cannot read
/// (see [`salvage`]) is found now rather than by a later request. Returns the records read.
///
/// # Errors
/// The first read that fails; a panic inside sled while reading is reported as
/// [`StoreError::Unopenable`].
pub fn scan_readable(store: &SledStore) -> Result<u64, StoreError> {
    let en = store.engine()?;
    let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut n = 0u64;
        for t in [&en.tree, &en.checkpoints, &en.witness, &en.split_views] {
            for r in t.iter() {
                r?;
                n += 1;
            }
        }
        Ok::<u64, StoreError>(n)
    }));
    scanned.unwrap_or_else(|_| {
        Err(StoreError::Unopenable {
            path: store.dir.display().to_string(),
            reason: "sled panicked while reading the store through".into(),
        })
    })
}

/// sled's handles for one open of the store.
struct Engine {
    db: sled::Db,
    /// The ledger: entries, log, derived records (the key prefixes of the module doc).
    tree: sled::Tree,
    /// Every checkpoint this node signed, by size (kept for exports and audits).
    checkpoints: sled::Tree,
    /// The witness's latest cosigned checkpoint per log origin (origin -> note).
    witness: sled::Tree,
    /// Split-view proofs this node holds (id -> JSON).
    split_views: sled::Tree,
    /// sled's log file, opened again to `fdatasync` it after each flush: on Linux sled 0.34 syncs
    /// with `sync_file_range`, which does not persist the file's size or the device cache.
    log_file: Option<std::fs::File>,
}

impl Engine {
    fn view(&self) -> TreeView<'_> {
        TreeView {
            tree: &self.tree,
            error: std::cell::RefCell::new(None),
        }
    }

    fn open(dir: &Path) -> Result<Engine, StoreError> {
        let db = open_db(dir)?;
        Ok(Engine {
            tree: db.open_tree("ledger")?,
            checkpoints: db.open_tree("checkpoints")?,
            witness: db.open_tree("witness")?,
            split_views: db.open_tree("split_views")?,
            log_file: std::fs::File::open(dir.join("db")).ok(),
            db,
        })
    }

    /// The ingest log's size: one past its last index.
    fn log_size(&self) -> Result<u64, StoreError> {
        match self.tree.scan_prefix(b"L").next_back() {
            None => Ok(0),
            Some(r) => {
                let (k, _) = r?;
                Ok(u64::from_be_bytes(arr::<8>(&k, &k[1..])?) + 1)
            }
        }
    }
}

/// What [`SledStore::scan`] yields: sled's pairs, or the one error that kept it from starting.
type Scan = std::iter::Chain<
    std::option::IntoIter<Result<(sled::IVec, sled::IVec), StoreError>>,
    std::iter::Map<
        std::iter::Flatten<std::option::IntoIter<sled::Iter>>,
        fn(sled::Result<(sled::IVec, sled::IVec)>) -> Result<(sled::IVec, sled::IVec), StoreError>,
    >,
>;

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Err(e) = lock(&self.journal).sync() {
            tracing::error!(error = %e, "syncing the log journal on close failed");
        }
    }
}

/// Locks a mutex, taking the data of a poisoned one (a panicked holder left nothing half done
/// that matters here: the guarded values are queues and a file handle).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Engine(sled::Error::Io(e))
}

fn key_e(subject: &PublicKey, seq: u64) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = b'E';
    k[1..33].copy_from_slice(subject.as_bytes());
    k[33..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn key_s(prefix: u8, subject: &PublicKey) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(subject.as_bytes());
    k
}

fn key_h(hash: &Hash) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'H';
    k[1..].copy_from_slice(hash.as_bytes());
    k
}

fn key_l(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'L';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn key_t(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'T';
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The lowest Merkle level kept in `T`. Below it a node is recomputed from the log (at most
/// 2^(MIN_STORED_LEVEL - 1) leaves, read in one range scan), so an append writes about 1/8 of a
/// tree node instead of one: sled's cost is mostly per key written.
pub const MIN_STORED_LEVEL: u8 = 4;

/// A Merkle node of the log's tree. Leaves (level 0) are the leaf hashes of the entry hashes
/// that the log holds; levels below [`MIN_STORED_LEVEL`] are recomputed from them; higher levels
/// are read from `T`.
fn stored_node(tree: &sled::Tree, level: u8, index: u64) -> Result<Hash, StoreError> {
    if level < MIN_STORED_LEVEL {
        let width = 1u64 << level;
        let first = index << level;
        let mut leaves = Vec::with_capacity(width as usize);
        for r in tree.range(key_l(first)..key_l(first + width)) {
            let (k, v) = r?;
            leaves.push(proto::merkle::leaf_hash(&arr::<32>(&k, &v)?));
        }
        if leaves.len() as u64 != width {
            return Err(corrupt(
                &key_l(first + leaves.len() as u64),
                "missing log entry for a Merkle leaf",
            ));
        }
        while leaves.len() > 1 {
            leaves = leaves
                .chunks_exact(2)
                .map(|p| proto::merkle::node_hash(&p[0], &p[1]))
                .collect();
        }
        return Ok(leaves[0]);
    }
    let k = key_t(level, index);
    match tree.get(k)? {
        Some(v) => arr::<32>(&k, &v).map(Hash::from_bytes),
        None => Err(corrupt(&k, "missing Merkle node")),
    }
}

/// Read access to the stored Merkle nodes, for proof generation. Storage errors are kept and
/// reported after the computation (the `Subtrees` trait has no error channel).
struct TreeView<'a> {
    tree: &'a sled::Tree,
    error: std::cell::RefCell<Option<StoreError>>,
}

impl TreeView<'_> {
    fn node(&self, level: u8, index: u64) -> Hash {
        let got = stored_node(self.tree, level, index);
        got.unwrap_or_else(|e| {
            self.error.borrow_mut().get_or_insert(e);
            Hash::ZERO
        })
    }

    fn finish<T>(self, value: T) -> Result<T, StoreError> {
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

impl proto::merkle::Subtrees for TreeView<'_> {
    fn leaf(&self, index: u64) -> Hash {
        self.node(0, index)
    }

    fn range(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            self.node(n.trailing_zeros() as u8, start / n)
        } else {
            proto::merkle::range_root(self, start, end)
        }
    }
}

/// The compact binary form of a subject record (postcard; keys and hashes as raw bytes).
/// Reads an `H` record: log index, subject and seq of the entry with that hash.
fn decode_location(key: &[u8], v: &[u8]) -> Result<Location, StoreError> {
    let v = arr::<48>(key, v)?;
    Ok(Location {
        log_index: u64::from_be_bytes(arr::<8>(key, &v[..8])?),
        subject: PublicKey::from_bytes(arr::<32>(key, &v[8..40])?),
        seq: u64::from_be_bytes(arr::<8>(key, &v[40..])?),
    })
}

/// Reads a `checkpoints` record: the size and the signed note.
fn decode_checkpoint(
    r: Result<(sled::IVec, sled::IVec), StoreError>,
) -> Result<(u64, String), StoreError> {
    let (k, v) = r?;
    let size = u64::from_be_bytes(arr::<8>(&k, &k)?);
    let note = String::from_utf8(v.to_vec()).map_err(|e| corrupt(&k, e))?;
    Ok((size, note))
}

fn encode_record(r: &SubjectRecord) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(r).map_err(|e| corrupt(b"S", e))
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: hex::encode(key),
        reason: reason.to_string(),
    }
}

fn arr<const N: usize>(key: &[u8], b: &[u8]) -> Result<[u8; N], StoreError> {
    b.try_into()
        .map_err(|_| corrupt(key, format!("expected {N} bytes, found {}", b.len())))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`StoreError`] if sled cannot open it or the format version differs.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let engine = Engine::open(dir)?;
        let tree = &engine.tree;
        match tree.get(b"Mformat")? {
            None => {
                tree.insert(b"Mformat", &FORMAT_VERSION.to_be_bytes())?;
                engine.db.flush()?;
            }
            Some(v) => {
                let found = u64::from_be_bytes(arr::<8>(b"Mformat", &v)?);
                if found != FORMAT_VERSION {
                    return Err(StoreError::Format { found });
                }
            }
        }
        let log_size = engine.log_size()?;
        // Persist the directory entries sled created, once.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        let (journal, lost) = Self::open_journal(dir, tree, log_size)?;
        if !lost.is_empty() {
            tracing::error!(
                lost = lost.len(),
                from = log_size,
                "the store lost entries that its journal names (sled dropped a damaged part of its log)"
            );
        }
        Ok(SledStore {
            journal_synced: AtomicU64::new(journal.synced_len()),
            journal: Mutex::new(journal),
            journal_queue: Mutex::new(Vec::new()),
            lost,
            lost_from: log_size,
            dir: dir.to_path_buf(),
            engine: RwLock::new(Some(Arc::new(engine))),
            failed: AtomicBool::new(false),
            reopen_gate: Mutex::new(None),
            generation: AtomicU64::new(0),
            log_size: AtomicU64::new(log_size),
            durable_size: AtomicU64::new(log_size),
            commits: AtomicU64::new(0),
            durable_commits: tokio::sync::watch::Sender::new(0),
            unflushed: Mutex::new(HashMap::new()),
        })
    }

    /// sled's current handles.
    fn engine(&self) -> Result<Arc<Engine>, StoreError> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Reopening)
    }

    /// Refuses writes once a flush or write has failed.
    fn writable(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StoreError::ReadOnly);
        }
        Ok(())
    }

    /// Runs a write on sled's current handles, refused once a write has failed; a failing write
    /// makes the store read-only (sled keeps its error).
    fn write<T>(&self, f: impl FnOnce(&Engine) -> sled::Result<T>) -> Result<T, StoreError> {
        self.writable()?;
        let en = self.engine()?;
        f(&en).map_err(|e| {
            self.fail(&e);
            e.into()
        })
    }

    /// Records a failed write: the store is read-only from now on.
    fn fail(&self, e: &sled::Error) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %e, "a store write failed: the store is read-only until restart");
        }
        // Readers waiting for a flush that will not come stop waiting.
        self.durable_commits.send_modify(|_| {});
    }

    /// Makes the store read-only, as a failed flush does.
    pub fn set_read_only(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.durable_commits.send_modify(|_| {});
    }

    /// Whether a flush or write has failed (the store then takes no writes).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Runs a read; if it fails on a store whose writes failed before (sled then fails reads that
    /// must restructure a page with the kept error), reopens sled and runs it once more.
    fn read<T>(&self, f: impl Fn(&Engine) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let first = self.engine().and_then(|en| f(&en));
        match first {
            Err(StoreError::Engine(_) | StoreError::Reopening)
                if self.has_failed() && self.reopen_after(generation) =>
            {
                self.engine().and_then(|en| f(&en))
            }
            other => other,
        }
    }

    /// A sled iteration over the current handles; one error item if there are none.
    fn scan(&self, f: impl FnOnce(&Engine) -> sled::Iter) -> Scan {
        let (error, iter) = match self.engine() {
            Ok(en) => (None, Some(f(&en))),
            Err(e) => (Some(Err(e)), None),
        };
        let lift: fn(sled::Result<(sled::IVec, sled::IVec)>) -> _ = |r| r.map_err(StoreError::from);
        error
            .into_iter()
            .chain(iter.into_iter().flatten().map(lift))
    }

    /// Closes sled and opens it again, so that reads work on a store whose writes failed: sled
    /// 0.34 keeps the error of a failed background write and fails every later reservation with
    /// it, including a read's page split or consolidation. The store stays read-only (sled's log
    /// is recovered as after a crash: what was durable is there; the failed group may or may not
    /// be). Waits for in-flight reads to let go of the old handles; iterators that hold them keep
    /// sled's file lock, and the open then fails after [`LOCK_WAIT`] (tried again later).
    ///
    /// # Errors
    /// [`StoreError`] if sled cannot be opened again; reads then fail with
    /// [`StoreError::Reopening`] until a later reopen succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = slot.take() {
            // Readers clone the Arc under the lock and drop it when their read is done.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(engine) => {
                        drop(engine);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still) => {
                        *slot = Some(still);
                        return Err(StoreError::Reopening);
                    }
                }
            }
        }
        let engine = Engine::open(&self.dir)?;
        let size = engine.log_size()?;
        let committed = self.log_size();
        if size < committed {
            tracing::warn!(
                committed,
                durable = size,
                "entries committed but never flushed are gone after the reopen"
            );
            self.log_size.store(size, Ordering::SeqCst);
        }
        if size < self.durable_size.load(Ordering::SeqCst) {
            tracing::error!(size, "the reopened store holds less than was flushed");
            self.durable_size.store(size, Ordering::SeqCst);
        }
        *slot = Some(Arc::new(engine));
        // What the new handles show was read back from the files: nothing waits for a flush.
        let commits = self.commits.load(Ordering::SeqCst);
        lock(&self.unflushed).clear();
        self.durable_commits.send_modify(|c| *c = (*c).max(commits));
        self.generation.fetch_add(1, Ordering::SeqCst);
        tracing::warn!("storage engine reopened after a failed write; the store stays read-only");
        Ok(())
    }

    /// Reopens after a failed read, unless another thread already did since `generation` (at most
    /// one attempt a second). True if the read is worth trying again.
    fn reopen_after(&self, generation: u64) -> bool {
        let mut last = lock(&self.reopen_gate);
        if self.generation.load(Ordering::SeqCst) != generation {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(Instant::now());
        match self.reopen() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "reopening the storage engine failed");
                false
            }
        }
    }

    /// Opens the journal and compares it with the ingest log: a damaged journal record is
    /// rewritten from the log, a journal shorter than the log is completed from it, and records
    /// beyond the log are returned (the positions sled lost).
    fn open_journal(
        dir: &Path,
        tree: &sled::Tree,
        log_size: u64,
    ) -> Result<(Journal, Vec<JournalRecord>), StoreError> {
        let (mut journal, records) = Journal::open(&dir.join("journal")).map_err(io_error)?;
        let from_log = |index: u64, hash: Hash| -> Result<JournalRecord, StoreError> {
            let k = key_h(&hash);
            let v = tree
                .get(k)?
                .ok_or_else(|| corrupt(&key_l(index), "log entry without location"))?;
            let loc = decode_location(&k, &v)?;
            Ok(JournalRecord {
                hash,
                subject: loc.subject,
                seq: loc.seq,
            })
        };
        let mut log = tree.scan_prefix(b"L");
        let mut lost = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            let index = i as u64;
            if index < log_size {
                let (k, v) = log
                    .next()
                    .ok_or_else(|| corrupt(&key_l(index), "ingest log ends early"))??;
                if k[..] != key_l(index)[..] {
                    return Err(corrupt(&key_l(index), "the ingest log has a hole here"));
                }
                let hash = Hash::from_bytes(arr::<32>(&k, &v)?);
                match rec {
                    Some(r) if r.hash == hash => {}
                    Some(_) => {
                        return Err(corrupt(
                            &k,
                            "the journal names another entry at this log position",
                        ))
                    }
                    None => {
                        tracing::warn!(index, "damaged journal record rewritten from the log");
                        journal
                            .rewrite(index, &from_log(index, hash)?)
                            .map_err(io_error)?;
                    }
                }
            } else if let Some(r) = rec {
                lost.push(*r);
            } else {
                // A damaged record past the log: what it named is unknown, and so is the order
                // of the rest. Keep what is known; normal sync brings the others back.
                tracing::warn!(
                    index,
                    "damaged journal record past the log; journal cut there"
                );
                journal.truncate(index).map_err(io_error)?;
                break;
            }
        }
        if journal.len() < log_size {
            // The journal lags the store (it is synced at most once a second): catch it up.
            let mut fresh = Vec::new();
            for r in tree.range(key_l(journal.len())..) {
                let (k, v) = r?;
                if k.first() != Some(&b'L') {
                    break;
                }
                let index = u64::from_be_bytes(arr::<8>(&k, &k[1..])?);
                fresh.push(from_log(index, Hash::from_bytes(arr::<32>(&k, &v)?))?);
            }
            journal.append(&fresh).map_err(io_error)?;
        }
        journal.sync().map_err(io_error)?;
        Ok((journal, lost))
    }

    /// The entries sled lost (named by the journal but past the log), in log order, that are not
    /// back yet: the first is due at log index [`Store::log_size`].
    pub fn lost_entries(&self) -> &[JournalRecord] {
        let back = self.log_size().saturating_sub(self.lost_from);
        let back = usize::try_from(back).unwrap_or(usize::MAX);
        self.lost.get(back..).unwrap_or(&[])
    }

    /// Appends the journal records of everything durable below `size`. A position the journal
    /// already has (one put back by a repair) must name the same entry.
    fn journal_catch_up(&self, size: u64) -> Result<(), StoreError> {
        let mut journal = lock(&self.journal);
        // Copied, and taken off the queue only once they are written: after a failed write the
        // next flush tries them again instead of finding a gap. (Only this function takes from
        // the queue, under the journal lock; commits only add at its end.)
        let due: Vec<(u64, JournalRecord)> = {
            let q = lock(&self.journal_queue);
            let n = q.partition_point(|(i, _)| *i < size);
            q[..n].to_vec()
        };
        let taken = due.len();
        let mut fresh = Vec::with_capacity(taken);
        for (index, r) in due {
            if index < journal.len() {
                let expected = index
                    .checked_sub(self.lost_from)
                    .and_then(|k| self.lost.get(usize::try_from(k).ok()?));
                if expected != Some(&r) {
                    return Err(corrupt(
                        &key_l(index),
                        "repair put another entry at this log position than the journal names",
                    ));
                }
            } else if index == journal.len() + fresh.len() as u64 {
                fresh.push(r);
            } else {
                return Err(corrupt(&key_l(index), "journal record out of order"));
            }
        }
        journal.append(&fresh).map_err(io_error)?;
        lock(&self.journal_queue).drain(..taken);
        self.journal_synced
            .fetch_max(journal.synced_len(), Ordering::SeqCst);
        Ok(())
    }

    /// Adds the Merkle nodes that leaf `index` completes: its leaf hash, and each parent whose
    /// right child it closes. `pending` holds nodes written earlier in the same group.
    fn add_tree_nodes(
        &self,
        index: u64,
        entry_hash: &Hash,
        batch: &mut sled::Batch,
        pending: &mut HashMap<(u8, u64), Hash>,
    ) -> Result<(), StoreError> {
        // The leaf itself is not stored (see `stored_node`).
        let mut node = proto::merkle::leaf_hash(entry_hash.as_bytes());
        pending.insert((0, index), node);
        let mut level = 0u8;
        let mut idx = index;
        while idx & 1 == 1 {
            let left = match pending.get(&(level, idx - 1)) {
                Some(h) => *h,
                None => stored_node(&self.engine()?.tree, level, idx - 1)?,
            };
            node = proto::merkle::node_hash(&left, &node);
            level += 1;
            idx >>= 1;
            if level >= MIN_STORED_LEVEL {
                batch.insert(&key_t(level, idx)[..], &node.as_bytes()[..]);
            }
            pending.insert((level, idx), node);
        }
        Ok(())
    }

    /// Starts a write group: appends and fork proofs that become visible together, in one atomic
    /// sled batch, at [`WriteGroup::commit`]. Reads through the group see its own writes. One
    /// group at a time (the ledger's single writer).
    pub fn group(&self) -> WriteGroup<'_> {
        WriteGroup {
            next_index: self.log_size(),
            store: self,
            batch: sled::Batch::default(),
            locs: HashMap::new(),
            records: HashMap::new(),
            entries: BTreeMap::new(),
            nodes: HashMap::new(),
            writes: 0,
            journal: Vec::new(),
        }
    }

    fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<Entry, StoreError> {
        Entry::from_bytes(bytes).map_err(|e| corrupt(key, e))
    }

    /// Rebuilds the derived records (`H`, `S`) from the entries, in log order, verifying every
    /// chain as it goes. Returns the number of entries replayed.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an entry that does not verify or link.
    pub fn rebuild_derived(&self) -> Result<u64, StoreError> {
        self.writable()?;
        let en = self.engine()?;
        let mut records: HashMap<PublicKey, SubjectRecord> = HashMap::new();
        let mut batch = sled::Batch::default();
        for r in en.tree.scan_prefix(b"H") {
            batch.remove(r?.0);
        }
        // Merkle nodes are rebuilt in a second pass below, after the old ones are gone.
        for r in en.tree.scan_prefix(b"T") {
            batch.remove(r?.0);
        }
        let mut n = 0;
        for r in en.tree.scan_prefix(b"L") {
            let (k, v) = r?;
            let index = u64::from_be_bytes(arr::<8>(&k, &k[1..])?);
            let hash = Hash::from_bytes(arr::<32>(&k, &v)?);
            // Find the entry by scanning is too slow; the H index is what we rebuild, so locate it
            // through the entries of the subject at the next seq instead.
            let entry = self.find_by_hash(&hash)?;
            let subject = entry.subject();
            let seq = entry.seq();
            let rec = match records.remove(&subject) {
                None => {
                    let head = ChainHead::genesis(&entry).map_err(|e| corrupt(&k, e))?;
                    let mut consent = ConsentState::new();
                    consent.apply(&entry, hash);
                    SubjectRecord {
                        head,
                        consent,
                        forked: false,
                    }
                }
                Some(mut rec) => {
                    rec.head.check_next(&entry).map_err(|e| corrupt(&k, e))?;
                    rec.head.advance(&entry, hash);
                    rec.consent.apply(&entry, hash);
                    rec
                }
            };
            records.insert(subject, rec);
            let mut loc = Vec::with_capacity(48);
            loc.extend_from_slice(&index.to_be_bytes());
            loc.extend_from_slice(subject.as_bytes());
            loc.extend_from_slice(&seq.to_be_bytes());
            batch.insert(&key_h(&hash)[..], loc);
            n += 1;
        }
        for (subject, mut rec) in records {
            rec.forked = en.tree.contains_key(key_s(b'F', &subject))?;
            let json = encode_record(&rec)?;
            batch.insert(&key_s(b'S', &subject)[..], json);
        }
        en.tree.apply_batch(batch)?;
        // Merkle nodes, leaf by leaf in log order (each parent reads the left sibling just
        // written).
        for r in en.tree.scan_prefix(b"L") {
            let (k, v) = r?;
            let index = u64::from_be_bytes(arr::<8>(&k, &k[1..])?);
            let hash = Hash::from_bytes(arr::<32>(&k, &v)?);
            let mut b = sled::Batch::default();
            self.add_tree_nodes(index, &hash, &mut b, &mut HashMap::new())?;
            en.tree.apply_batch(b)?;
        }
        en.db.flush()?;
        Ok(n)
    }

    fn find_by_hash(&self, hash: &Hash) -> Result<Entry, StoreError> {
        if let Some(loc) = self.locate(hash)? {
            if let Some(e) = self.entry(&loc.subject, loc.seq)? {
                if e.hash() == *hash {
                    return Ok(e);
                }
            }
        }
        for r in self.scan(|en| en.tree.scan_prefix(b"E")) {
            let (k, v) = r?;
            let e = Self::decode_entry(&k, &v)?;
            if e.hash() == *hash {
                return Ok(e);
            }
        }
        Err(corrupt(
            hash.as_bytes(),
            "log names an entry that is not stored",
        ))
    }

    /// Every subject record, in key order.
    pub fn subject_records(
        &self,
    ) -> impl Iterator<Item = Result<(PublicKey, SubjectRecord), StoreError>> + '_ {
        self.scan(|en| en.tree.scan_prefix(b"S")).map(|r| {
            let (k, v) = r?;
            let subject = PublicKey::from_bytes(arr::<32>(&k, &k[1..])?);
            let rec = postcard::from_bytes(&v).map_err(|e| corrupt(&k, e))?;
            Ok((subject, rec))
        })
    }

    /// Subject records whose key starts with `prefix`, strictly after `after`, in key order.
    pub fn subject_records_from<'a>(
        &'a self,
        prefix: &[u8],
        after: Option<&PublicKey>,
    ) -> impl Iterator<Item = Result<(PublicKey, SubjectRecord), StoreError>> + 'a {
        let mut lo = vec![b'S'];
        lo.extend_from_slice(prefix);
        let mut hi = lo.clone();
        // The first key past the prefix: increment the last byte that is not 0xff.
        let upper = loop {
            match hi.last_mut() {
                Some(b) if *b < 0xff => {
                    *b += 1;
                    break Some(hi);
                }
                Some(_) => {
                    hi.pop();
                }
                None => break None,
            }
        };
        let start = match after {
            Some(a) if a.as_bytes().starts_with(prefix) => {
                let mut k = key_s(b'S', a).to_vec();
                k.push(0); // strictly after
                k
            }
            _ => lo,
        };
        let range = self.scan(move |en| match upper {
            Some(u) => en.tree.range(start..u),
            None => en.tree.range(start..),
        });
        range.map(|r| {
            let (k, v) = r?;
            let subject = PublicKey::from_bytes(arr::<32>(&k, &k[1..])?);
            let rec = postcard::from_bytes(&v).map_err(|e| corrupt(&k, e))?;
            Ok((subject, rec))
        })
    }

    /// Checks every stored record: entries decode and verify, chains link, the log names exactly
    /// the stored entries, and the derived records match a fresh fold. Returns the entry count.
    ///
    /// # Errors
    /// The first problem found.
    pub fn verify_all(&self) -> Result<u64, StoreError> {
        let mut by_subject: BTreeMap<PublicKey, Vec<Entry>> = Default::default();
        let mut n = 0u64;
        for r in self.scan(|en| en.tree.scan_prefix(b"E")) {
            let (k, v) = r?;
            let e = Self::decode_entry(&k, &v)?;
            if k[..] != key_e(&e.subject(), e.seq())[..] {
                return Err(corrupt(&k, "entry stored under another key"));
            }
            by_subject.entry(e.subject()).or_default().push(e);
            n += 1;
        }
        let mut logged = 0u64;
        for r in self.scan(|en| en.tree.scan_prefix(b"L")) {
            let (k, v) = r?;
            let hash = Hash::from_bytes(arr::<32>(&k, &v)?);
            let loc = self
                .locate(&hash)?
                .ok_or_else(|| corrupt(&k, "log entry without location"))?;
            if key_l(loc.log_index)[..] != k[..] {
                return Err(corrupt(&k, "location names another log index"));
            }
            logged += 1;
        }
        if logged != n {
            return Err(corrupt(
                b"L",
                format!("{logged} log entries for {n} stored entries"),
            ));
        }
        for (subject, chain) in by_subject {
            let head = proto::verify_chain(&chain).map_err(|e| corrupt(subject.as_bytes(), e))?;
            let rec = self
                .subject(&subject)?
                .ok_or_else(|| corrupt(subject.as_bytes(), "no subject record"))?;
            if rec.head != head || rec.consent != ConsentState::fold(chain.iter()) {
                return Err(corrupt(
                    subject.as_bytes(),
                    "derived record differs from the chain",
                ));
            }
        }
        Ok(n)
    }
}

impl Store for SledStore {
    fn append(&self, a: &Append) -> Result<u64, StoreError> {
        let mut g = self.group();
        let index = g.append(a.clone())?;
        g.commit()?;
        Ok(index)
    }

    fn put_fork(&self, proof: &ForkProof, record: &SubjectRecord) -> Result<(), StoreError> {
        let mut g = self.group();
        g.put_fork(proof, record)?;
        g.commit()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // What is visible now becomes durable when this returns Ok.
        self.writable()?;
        let en = self.engine()?;
        // Read under the lock a commit holds from its count to its log size: a group counted here
        // is applied already, so the flush below covers it.
        let (size, commits) = {
            let _applying = lock(&self.journal_queue);
            (self.log_size(), self.commits.load(Ordering::SeqCst))
        };
        let synced = en.db.flush().map(drop).and_then(|()| match &en.log_file {
            Some(f) => f.sync_data().map_err(sled::Error::Io),
            None => Ok(()),
        });
        if let Err(e) = synced {
            self.fail(&e);
            return Err(e.into());
        }
        self.durable_size.fetch_max(size, Ordering::SeqCst);
        lock(&self.unflushed).retain(|_, number| *number > commits);
        self.durable_commits.send_if_modified(|c| {
            let newer = commits > *c;
            *c = (*c).max(commits);
            newer
        });
        self.journal_catch_up(size)
    }

    fn entry(&self, subject: &PublicKey, seq: u64) -> Result<Option<Entry>, StoreError> {
        let k = key_e(subject, seq);
        match self.read(|en| Ok(en.tree.get(k)?))? {
            None => Ok(None),
            Some(v) => {
                let e = Self::decode_entry(&k, &v)?;
                if e.subject() != *subject || e.seq() != seq {
                    return Err(corrupt(&k, "entry stored under another key"));
                }
                Ok(Some(e))
            }
        }
    }

    fn locate(&self, hash: &Hash) -> Result<Option<Location>, StoreError> {
        let k = key_h(hash);
        self.read(|en| Ok(en.tree.get(k)?))?
            .map(|v| decode_location(&k, &v))
            .transpose()
    }

    fn subject(&self, subject: &PublicKey) -> Result<Option<SubjectRecord>, StoreError> {
        let k = key_s(b'S', subject);
        match self.read(|en| Ok(en.tree.get(k)?))? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v)
                .map(Some)
                .map_err(|e| corrupt(&k, e)),
        }
    }

    fn fork(&self, subject: &PublicKey) -> Result<Option<ForkProof>, StoreError> {
        let k = key_s(b'F', subject);
        match self.read(|en| Ok(en.tree.get(k)?))? {
            None => Ok(None),
            Some(v) => ForkProof::from_bytes(&v)
                .map(Some)
                .map_err(|e| corrupt(&k, e)),
        }
    }

    fn chain(
        &self,
        subject: &PublicKey,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let start = key_e(subject, from_seq.max(1));
        let end = key_e(subject, u64::MAX);
        self.read(|en| {
            let mut out = Vec::new();
            for r in en.tree.range(start..=end).take(limit) {
                let (k, v) = r?;
                out.push(Self::decode_entry(&k, &v)?);
            }
            Ok(out)
        })
    }

    fn log_size(&self) -> u64 {
        self.log_size.load(Ordering::SeqCst)
    }

    fn log_range(&self, start: u64, limit: usize) -> Result<Vec<(u64, Hash)>, StoreError> {
        self.read(|en| {
            let mut out = Vec::new();
            for r in en.tree.range(key_l(start)..=key_l(u64::MAX)).take(limit) {
                let (k, v) = r?;
                let index = u64::from_be_bytes(arr::<8>(&k, &k[1..])?);
                out.push((index, Hash::from_bytes(arr::<32>(&k, &v)?)));
            }
            Ok(out)
        })
    }

    fn log_entries(&self, start: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.read(|en| {
            let mut out = Vec::new();
            for r in en.tree.range(key_l(start)..=key_l(u64::MAX)).take(limit) {
                let (k, v) = r?;
                let index = u64::from_be_bytes(arr::<8>(&k, &k[1..])?);
                let hash = Hash::from_bytes(arr::<32>(&k, &v)?);
                let h = key_h(&hash);
                let loc = en
                    .tree
                    .get(h)?
                    .ok_or_else(|| corrupt(&k, "logged entry has no location"))?;
                let loc = decode_location(&h, &loc)?;
                let e = key_e(&loc.subject, loc.seq);
                let bytes = en
                    .tree
                    .get(e)?
                    .ok_or_else(|| corrupt(&k, "logged entry is not stored"))?;
                out.push((index, hash, Self::decode_entry(&e, &bytes)?));
            }
            Ok(out)
        })
    }

    fn subject_count(&self) -> u64 {
        self.scan(|en| en.tree.scan_prefix(b"S")).count() as u64
    }

    fn fork_count(&self) -> u64 {
        self.scan(|en| en.tree.scan_prefix(b"F")).count() as u64
    }

    fn size_on_disk(&self) -> u64 {
        self.engine()
            .ok()
            .and_then(|en| en.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    fn tree_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.within_log(size)?;
        Ok(self.read(|en| {
            let view = en.view();
            let root = proto::merkle::root(&view, size);
            view.finish(root)
        })?)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.within_log(size)?;
        let proof = self.read(|en| {
            let view = en.view();
            let proof = proto::merkle::inclusion_proof(&view, index, size);
            view.finish(proof)
        })?;
        Ok(proof?)
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.within_log(second)?;
        let proof = self.read(|en| {
            let view = en.view();
            let proof = proto::merkle::consistency_proof(&view, first, second);
            view.finish(proof)
        })?;
        Ok(proof?)
    }
}

impl SledStore {
    /// Makes everything committed so far durable, unless the last flush already covered it.
    /// A node calls this before it hands stored entries to a peer: a peer must never hold an
    /// entry that a crash here could still take back (the author, never acknowledged, may sign
    /// another entry at that seq, and the two would be a fork).
    ///
    /// # Errors
    /// [`StoreError`]: the flush failed (the store is then failed, as after any failed flush).
    pub fn ensure_durable(&self) -> Result<(), StoreError> {
        // By groups, not log size: a group that stored only a fork proof does not move the log.
        if *self.durable_commits.borrow() >= self.commits.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.flush()
    }

    /// Waits until everything committed before this call is durable: a reader calls it after it
    /// has read and before it answers, so that it never answers with an entry, a head or a
    /// consent state that a crash could still take back (the flusher makes each committed group
    /// durable within a few milliseconds; nothing is forced here). Returns at once when nothing
    /// is waiting for a flush, and when the store has failed: a read-only store answers from
    /// what it holds, which may then include writes that no flush covered (documented in
    /// docs/API.md; `/healthz` says `writable: false`).
    ///
    /// # Errors
    /// [`StoreError::NotDurable`] when no flush covered it within `timeout`.
    pub async fn wait_durable(&self, timeout: Duration) -> Result<(), StoreError> {
        self.wait_commit(self.commits.load(Ordering::SeqCst), timeout)
            .await
    }

    /// As [`SledStore::wait_durable`], but waits only for the committed groups that wrote one
    /// of `subjects` (a check reads its subject's record and nothing else of the ledger).
    ///
    /// # Errors
    /// [`StoreError::NotDurable`] when no flush covered them within `timeout`.
    pub async fn wait_subjects_durable<'a>(
        &self,
        subjects: impl IntoIterator<Item = &'a PublicKey>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let target = {
            let unflushed = lock(&self.unflushed);
            subjects
                .into_iter()
                .filter_map(|s| unflushed.get(s).copied())
                .max()
                .unwrap_or(0)
        };
        self.wait_commit(target, timeout).await
    }

    /// The log size as of the last successful flush (no journal sync, unlike
    /// [`SledStore::durable_size`]).
    pub fn flushed_size(&self) -> u64 {
        self.durable_size.load(Ordering::SeqCst)
    }

    /// Waits until a flush has covered committed group number `target`, or the store failed.
    async fn wait_commit(&self, target: u64, timeout: Duration) -> Result<(), StoreError> {
        if *self.durable_commits.borrow() >= target {
            return Ok(());
        }
        let mut rx = self.durable_commits.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            while *rx.borrow_and_update() < target && !self.failed.load(Ordering::SeqCst) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        waited.map_err(|_| StoreError::NotDurable)
    }

    /// The log size as of the last successful flush, and named durably in the journal (see
    /// `journal_synced`).
    pub fn durable_size(&self) -> u64 {
        let durable = self.durable_size.load(Ordering::SeqCst);
        let mut named = self.journal_synced.load(Ordering::SeqCst);
        if named < durable {
            // The flusher syncs the journal at most once a second; a checkpoint over newer
            // entries syncs it now (an fdatasync of a small file, only when something is new).
            let mut j = lock(&self.journal);
            match j.sync() {
                Ok(()) => {
                    named = j.synced_len();
                    self.journal_synced.fetch_max(named, Ordering::SeqCst);
                }
                Err(e) => tracing::error!(error = %e, "syncing the log journal failed"),
            }
        }
        durable.min(named)
    }

    /// Keeps a signed checkpoint (the first one signed at each size).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        // Err(CompareAndSwapError): one of this size was kept already, and stays.
        let _kept_first = self.write(|en| {
            en.checkpoints.compare_and_swap(
                size.to_be_bytes(),
                None as Option<&[u8]>,
                Some(note.as_bytes()),
            )
        })?;
        Ok(())
    }

    /// Replaces the kept checkpoint of `size` (the same log signature, with cosignatures added).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn replace_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.write(|en| en.checkpoints.insert(size.to_be_bytes(), note.as_bytes()))?;
        Ok(())
    }

    /// The kept checkpoint of `size`, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StoreError> {
        match self.read(|en| Ok(en.checkpoints.get(size.to_be_bytes())?))? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|e| corrupt(&size.to_be_bytes(), e)),
        }
    }

    /// The witness's latest cosigned checkpoint note for `origin`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn witness_held(&self, origin: &str) -> Result<Option<String>, StoreError> {
        match self.read(|en| Ok(en.witness.get(origin.as_bytes())?))? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|e| corrupt(origin.as_bytes(), e)),
        }
    }

    /// Every origin the witness holds a checkpoint for, with that note.
    pub fn witness_all(&self) -> impl Iterator<Item = Result<(String, String), StoreError>> + '_ {
        self.scan(|en| en.witness.iter()).map(|r| {
            let (k, v) = r?;
            let origin = String::from_utf8(k.to_vec()).map_err(|e| corrupt(&k, e))?;
            let note = String::from_utf8(v.to_vec()).map_err(|e| corrupt(&k, e))?;
            Ok((origin, note))
        })
    }

    /// Replaces the witness's note for `origin` if it is still `old`, then flushes; false when
    /// another update came first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn witness_swap(
        &self,
        origin: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<bool, StoreError> {
        let swapped = self
            .write(|en| {
                en.witness.compare_and_swap(
                    origin.as_bytes(),
                    old.map(str::as_bytes),
                    Some(new.as_bytes()),
                )
            })?
            .is_ok();
        if swapped {
            // The store's own flush: sled's, then an fdatasync of its log (see `log_file`).
            Store::flush(self)?;
        }
        Ok(swapped)
    }

    /// Keeps a split-view proof (JSON) under its id; false if it was kept already. Flushed.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_split_view(&self, id: &[u8; 32], json: &[u8]) -> Result<bool, StoreError> {
        let new = self
            .write(|en| {
                en.split_views
                    .compare_and_swap(id, None as Option<&[u8]>, Some(json))
            })?
            .is_ok();
        if new {
            Store::flush(self)?;
        }
        Ok(new)
    }

    /// Every kept split-view proof (JSON), by id.
    pub fn split_views(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        self.scan(|en| en.split_views.iter())
            .map(|r| Ok(r?.1.to_vec()))
    }

    /// How many split-view proofs are kept.
    pub fn split_view_count(&self) -> usize {
        self.engine().map_or(0, |en| en.split_views.len())
    }

    /// Every stored fork proof.
    pub fn fork_proofs(&self) -> impl Iterator<Item = Result<ForkProof, StoreError>> + '_ {
        self.scan(|en| en.tree.scan_prefix(b"F")).map(|r| {
            let (k, v) = r?;
            ForkProof::from_bytes(&v).map_err(|e| corrupt(&k, e))
        })
    }

    /// Every kept checkpoint, by decreasing size.
    pub fn checkpoints_rev(&self) -> impl Iterator<Item = Result<(u64, String), StoreError>> + '_ {
        self.scan(|en| en.checkpoints.iter())
            .rev()
            .map(decode_checkpoint)
    }

    /// Every kept checkpoint, by increasing size.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<(u64, String), StoreError>> + '_ {
        self.scan(|en| en.checkpoints.iter()).map(decode_checkpoint)
    }

    fn within_log(&self, size: u64) -> Result<(), ProofError> {
        let log_size = self.log_size();
        if size > log_size {
            return Err(ProofError::BeyondLog { size, log_size });
        }
        Ok(())
    }
}
