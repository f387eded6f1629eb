//! The log journal: a plain append-only file beside sled (`store/journal`) that records, for
//! every ingest-log position, the entry's hash, subject and seq, so the node can tell when sled
//! has lost part of its log, and which entries to fetch back from peers.
//!
//! sled 0.34 checks a CRC on every message of its log, and on start it treats a damaged message
//! as the torn end of the log: it silently drops that message and everything written after it.
//! So a flipped bit in sled's file does not give an error; it gives an older store. The journal
//! is how the node notices: a journal longer than the store's log names exactly the lost
//! positions, in their original order, so the repair can put every entry back at the same log
//! index and the node's earlier checkpoints stay consistent.
//!
//! Format: records of [`RECORD_LEN`] bytes, one per log position in order: the entry hash (32),
//! the subject key (32), the seq (8, big-endian), and the first 4 bytes of SHA-256 over those 72
//! bytes. A partial record at the end (a torn append) is cut off on open. The journal is
//! appended after each durable flush of the store and fdatasync'ed at most once a second (and on
//! close), so it may lag the store by up to a second of entries; it never runs ahead of what was
//! durable in the store.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use proto::keys::{Hash, PublicKey};
use sha2::{Digest, Sha256};

/// Bytes per journal record.
pub const RECORD_LEN: usize = 76;

/// How often the journal is made durable (at most).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// One log position: which entry sits there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// The entry hash (the Merkle leaf's input).
    pub hash: Hash,
    /// The entry's subject.
    pub subject: PublicKey,
    /// The entry's seq.
    pub seq: u64,
}

impl JournalRecord {
    /// The record's bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[..32].copy_from_slice(self.hash.as_bytes());
        b[32..64].copy_from_slice(self.subject.as_bytes());
        b[64..72].copy_from_slice(&self.seq.to_be_bytes());
        let sum = Sha256::digest(&b[..72]);
        b[72..].copy_from_slice(&sum[..4]);
        b
    }

    /// Reads a record; `None` if its checksum does not match (a damaged record).
    pub fn from_bytes(b: &[u8; RECORD_LEN]) -> Option<Self> {
        let sum = Sha256::digest(&b[..72]);
        if sum[..4] != b[72..] {
            return None;
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[..32]);
        let mut subject = [0u8; 32];
        subject.copy_from_slice(&b[32..64]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[64..72]);
        Some(JournalRecord {
            hash: Hash::from_bytes(hash),
            subject: PublicKey::from_bytes(subject),
            seq: u64::from_be_bytes(seq),
        })
    }
}

/// The open journal file.
pub struct Journal {
    file: File,
    /// Records in the file.
    len: u64,
    last_sync: Instant,
    unsynced: bool,
    /// Records made durable by the last sync.
    synced: u64,
}

/// What [`Journal::open`] read: each record in order, `None` where the checksum failed.
pub type Records = Vec<Option<JournalRecord>>;

impl Journal {
    /// Opens (or creates) the journal and reads every record. A partial record at the end is cut
    /// off.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Records)> {
        // Not in append mode: on Linux, `pwrite` on an O_APPEND file ignores its offset, and
        // records are rewritten in place. Every write names its offset.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() / RECORD_LEN * RECORD_LEN;
        if whole != bytes.len() {
            tracing::warn!(
                cut = bytes.len() - whole,
                "journal ends in a partial record (a torn append); cutting it off"
            );
            file.set_len(whole as u64)?;
            file.sync_data()?;
        }
        let records: Records = bytes[..whole]
            .chunks_exact(RECORD_LEN)
            .map(|c| {
                let mut b = [0u8; RECORD_LEN];
                b.copy_from_slice(c);
                JournalRecord::from_bytes(&b)
            })
            .collect();
        Ok((
            Journal {
                file,
                len: records.len() as u64,
                last_sync: Instant::now(),
                unsynced: false,
                synced: records.len() as u64,
            },
            records,
        ))
    }

    /// Records in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal has no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends records (the next log positions, in order); syncs if the last sync is older than a
    /// second.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&mut self, records: &[JournalRecord]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * RECORD_LEN);
        for r in records {
            buf.extend_from_slice(&r.to_bytes());
        }
        self.file.write_all_at(&buf, self.len * RECORD_LEN as u64)?;
        self.len += records.len() as u64;
        self.unsynced = true;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Rewrites record `index` in place (a record whose checksum failed, from the store's copy).
    ///
    /// # Errors
    /// I/O errors.
    pub fn rewrite(&mut self, index: u64, record: &JournalRecord) -> std::io::Result<()> {
        self.file
            .write_all_at(&record.to_bytes(), index * RECORD_LEN as u64)?;
        self.unsynced = true;
        Ok(())
    }

    /// Cuts the journal to `len` records.
    ///
    /// # Errors
    /// I/O errors.
    pub fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len * RECORD_LEN as u64)?;
        self.len = len;
        self.unsynced = true;
        self.sync()
    }

    /// Makes every appended record durable.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        self.synced = self.len;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Records known durable (as of the last sync).
    pub fn synced_len(&self) -> u64 {
        self.synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rec(i: u8) -> JournalRecord {
        JournalRecord {
            hash: Hash::from_bytes([i; 32]),
            subject: PublicKey::from_bytes([i.wrapping_add(1); 32]),
            seq: u64::from(i) + 1,
        }
    }

    #[test]
    fn records_round_trip_and_a_flipped_bit_is_caught() {
        let r = rec(7);
        let mut b = r.to_bytes();
        assert_eq!(JournalRecord::from_bytes(&b), Some(r));
        for i in 0..RECORD_LEN {
            b[i] ^= 0x01;
            assert_eq!(JournalRecord::from_bytes(&b), None, "flip at byte {i}");
            b[i] ^= 0x01;
        }
    }

    #[test]
    fn a_rewritten_record_stays_in_its_place() {
        let dir = tempfile::tempdir().expect("journal test");
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).expect("journal test");
        j.append(&[rec(0), rec(1), rec(2)]).expect("journal test");
        j.rewrite(1, &rec(7)).expect("journal test");
        j.append(&[rec(3)]).expect("journal test");
        j.sync().expect("journal test");
        drop(j);
        let (_, recs) = Journal::open(&path).expect("journal test");
        assert_eq!(
            recs,
            vec![Some(rec(0)), Some(rec(7)), Some(rec(2)), Some(rec(3))]
        );
    }

    #[test]
    fn append_reopen_cuts_a_torn_tail_and_truncates() {
        let dir = tempfile::tempdir().expect("journal test");
        let path = dir.path().join("journal");
        {
            let (mut j, recs) = Journal::open(&path).expect("journal test");
            assert!(recs.is_empty() && j.is_empty());
            j.append(&[rec(0), rec(1), rec(2)]).expect("journal test");
            j.sync().expect("journal test");
        }
        // A torn append: half a record at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("journal test");
        f.write_all(&rec(3).to_bytes()[..30]).expect("journal test");
        drop(f);
        let (mut j, recs) = Journal::open(&path).expect("journal test");
        assert_eq!(recs, vec![Some(rec(0)), Some(rec(1)), Some(rec(2))]);
        assert_eq!(
            std::fs::metadata(&path).expect("journal test").len(),
            3 * RECORD_LEN as u64
        );
        j.truncate(1).expect("journal test");
        j.append(&[rec(9)]).expect("journal test");
        j.sync().expect("journal test");
        drop(j);
        let (_, recs) = Journal::open(&path).expect("journal test");
        assert_eq!(recs, vec![Some(rec(0)), Some(rec(9))]);
    }
}
