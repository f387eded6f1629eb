//! The replication wire format: gossip payloads and the sync protocol's messages
//! (`/consent-ledger/sync/1`), with their strict, bounded encoding.
//!
//! Nodes reconcile their ledgers by comparing a digest of per-subject heads. Each subject's head
//! is summarised as an item hash ([`head_item`]); items fall in 65,536 buckets by the first two
//! bytes of the subject key, and a bucket's fingerprint is the XOR of its item hashes with the
//! item count. A node asks for the 256 child summaries of a prefix ([`Request::Digest`]), descends
//! only into buckets whose summaries differ, lists the heads of small differing buckets
//! ([`Request::Heads`]), and fetches the entries it lacks in bounded batches
//! ([`Request::Entries`]). docs/PROTOCOL.md specifies every byte.
//!
//! Every message is bounded: [`MAX_MESSAGE`] bytes on the wire, and each list by its own limit.
//! The decoder rejects unknown tags, out-of-range counts, truncation and trailing bytes.

use sha2::{Digest as _, Sha256};

use crate::keys::{Hash, PublicKey};

/// The sync protocol's name.
pub const PROTOCOL: &str = "/consent-ledger/sync/1";
/// The gossip topic of all new entries (payload: a batch of canonical entries, see
/// [`encode_batch`]).
pub const TOPIC_ENTRIES: &str = "consent-ledger/entries/1";
/// The gossip topic of the new entries of chains that name one controller: this prefix followed by
/// the controller's key in lower-case hex (payload as [`TOPIC_ENTRIES`]). Brand nodes subscribe to
/// their controllers' topics only.
pub const TOPIC_CONTROLLER_PREFIX: &str = "consent-ledger/entries/1/";

/// The gossip topic of one controller's chains.
pub fn controller_topic(controller: &PublicKey) -> String {
    format!("{TOPIC_CONTROLLER_PREFIX}{controller}")
}

/// The gossip topic of fork proofs (payload: a fork proof's canonical binary form).
pub const TOPIC_FORKS: &str = "consent-ledger/forks/1";
/// The gossip topic of checkpoints (payload: a node's signed checkpoint note, with the
/// cosignatures it has collected, as UTF-8 text).
pub const TOPIC_CHECKPOINTS: &str = "consent-ledger/checkpoints/1";
/// The gossip topic of split-view proofs (payload: a [`crate::witness::SplitView`] as JSON).
pub const TOPIC_SPLIT_VIEWS: &str = "consent-ledger/split-views/1";
/// Most bytes of one sync message (request or response), without its length prefix.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Most bytes of one gossip message's payload.
pub const MAX_GOSSIP: usize = 64 << 10;
/// Most entries in one gossip batch.
pub const MAX_BATCH: usize = 256;
/// Most heads in one `Heads` response.
pub const MAX_HEADS: u16 = 1024;
/// Most subjects named in one `Entries` request.
pub const MAX_WANTS: u16 = 256;
/// Most entries in one `Entries` response.
pub const MAX_ENTRIES: u16 = 1024;
/// Children of one digest node.
pub const FANOUT: usize = 256;
/// Domain tag of a head item hash.
pub const HEAD_ITEM_TAG: &[u8] = b"consent-ledger/v1/head\0";

/// A subject's head as the digest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The subject.
    pub subject: PublicKey,
    /// Seq of the last entry of its contiguous chain.
    pub seq: u64,
    /// Hash of that entry.
    pub hash: Hash,
    /// Whether the node holds a fork proof for the subject.
    pub forked: bool,
}

/// `SHA-256(HEAD_ITEM_TAG || subject || seq as u64 BE || hash || forked as one byte)`.
pub fn head_item(h: &Head) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(HEAD_ITEM_TAG);
    d.update(h.subject.as_bytes());
    d.update(h.seq.to_be_bytes());
    d.update(h.hash.as_bytes());
    d.update([u8::from(h.forked)]);
    d.finalize().into()
}

/// One bucket's summary: the XOR of its item hashes and how many items it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// XOR of the item hashes.
    pub fingerprint: [u8; 32],
    /// Number of items.
    pub count: u32,
}

impl Bucket {
    /// Adds (or, applied twice, removes) an item.
    pub fn toggle(&mut self, item: &[u8; 32], add: bool) {
        for (f, i) in self.fingerprint.iter_mut().zip(item) {
            *f ^= i;
        }
        if add {
            self.count = self.count.saturating_add(1);
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }

    /// Combines two summaries.
    pub fn merge(&mut self, other: &Bucket) {
        for (f, o) in self.fingerprint.iter_mut().zip(&other.fingerprint) {
            *f ^= o;
        }
        self.count = self.count.saturating_add(other.count);
    }
}

/// What one subject's entries are wanted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The subject.
    pub subject: PublicKey,
    /// The first seq wanted.
    pub from_seq: u64,
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The 256 child summaries of a subject-key prefix of 0 or 1 bytes.
    Digest {
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// The heads of subjects whose key starts with `prefix` (0 to 2 bytes), after `after`, in key
    /// order, at most `limit`.
    Heads {
        /// The prefix.
        prefix: Vec<u8>,
        /// Start strictly after this subject.
        after: Option<PublicKey>,
        /// At most this many (1..=MAX_HEADS).
        limit: u16,
    },
    /// Entries of several subjects, each from a seq on, in chain order; at most `limit` in all.
    Entries {
        /// What is wanted (1..=MAX_WANTS).
        wants: Vec<Want>,
        /// At most this many entries (1..=MAX_ENTRIES).
        limit: u16,
    },
    /// The fork proof held for a subject.
    Fork {
        /// The subject.
        subject: PublicKey,
    },
    /// As `Digest`, over only the subjects whose chain names `controller`.
    DigestFor {
        /// The controller.
        controller: PublicKey,
        /// The prefix (0 or 1 bytes).
        prefix: Vec<u8>,
    },
    /// As `Heads`, over only the subjects whose chain names `controller`.
    HeadsFor {
        /// The controller.
        controller: PublicKey,
        /// The prefix (0 to 2 bytes).
        prefix: Vec<u8>,
        /// Start strictly after this subject.
        after: Option<PublicKey>,
        /// At most this many (1..=MAX_HEADS).
        limit: u16,
    },
    /// A C2SP tlog-witness `add-checkpoint` request body (see [`crate::witness`]): the sender
    /// asks this node, as a witness, to cosign its checkpoint.
    AddCheckpoint {
        /// The request body (1..=[`crate::witness::MAX_ADD_BODY`] bytes).
        body: Vec<u8>,
    },
    /// The node's latest signed checkpoint of its own ingest log (for a log audit).
    LogCheckpoint,
    /// Entries of the node's ingest log from position `start` on, in log order; at most `limit`.
    LogEntries {
        /// The first log position.
        start: u64,
        /// At most this many entries (1..=MAX_ENTRIES).
        limit: u16,
    },
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// 256 child summaries, in byte order.
    Digest(Vec<Bucket>),
    /// Heads in key order, and whether more follow the last.
    Heads {
        /// The heads.
        heads: Vec<Head>,
        /// More heads follow under the prefix.
        more: bool,
    },
    /// Canonical entries.
    Entries(Vec<Vec<u8>>),
    /// A fork proof's canonical binary form, if the node holds one.
    Fork(Option<Vec<u8>>),
    /// A witness's answer to `AddCheckpoint`: the C2SP tlog-witness HTTP status and body
    /// (200: cosignature lines; 409: the held size and a newline, or a reason; else a reason).
    Witness {
        /// The HTTP status code (100..=599).
        status: u16,
        /// The body (at most [`crate::witness::MAX_ADD_BODY`] bytes).
        body: Vec<u8>,
    },
    /// The answer to `LogCheckpoint`: a signed checkpoint note (C2SP signed-note text, 1..=
    /// [`crate::witness::MAX_ADD_BODY`] bytes).
    Checkpoint(Vec<u8>),
    /// The request was refused.
    Error {
        /// 1: malformed request; 2: busy; 3: internal error.
        code: u8,
        /// A human-readable reason (at most 256 bytes).
        message: String,
    },
}

/// Why a sync message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Input ended inside a field.
    #[error("sync message ends inside {0}")]
    Truncated(&'static str),
    /// Bytes after the message.
    #[error("{0} trailing bytes after the sync message")]
    Trailing(usize),
    /// An unknown message tag.
    #[error("unknown sync message tag {0:#04x}")]
    UnknownTag(u8),
    /// A value outside its range.
    #[error("sync message field {0} is out of range")]
    OutOfRange(&'static str),
    /// More than [`MAX_MESSAGE`] bytes.
    #[error("sync message of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, f)?[0])
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, f)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, f)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, f: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, f)?);
        Ok(u64::from_be_bytes(a))
    }
    fn arr32(&mut self, f: &'static str) -> Result<[u8; 32], WireError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, f)?);
        Ok(a)
    }
    fn flag(&mut self, f: &'static str) -> Result<bool, WireError> {
        match self.u8(f)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::OutOfRange(f)),
        }
    }
    fn prefix(&mut self, max: usize) -> Result<Vec<u8>, WireError> {
        let n = usize::from(self.u8("prefix length")?);
        if n > max {
            return Err(WireError::OutOfRange("prefix length"));
        }
        Ok(self.take(n, "prefix")?.to_vec())
    }
    /// A heads page: prefix (0 to 2 bytes), optional `after` subject, limit (1..=MAX_HEADS).
    fn page(&mut self) -> Result<(Vec<u8>, Option<PublicKey>, u16), WireError> {
        let prefix = self.prefix(2)?;
        let after = if self.flag("after tag")? {
            Some(PublicKey::from_bytes(self.arr32("after")?))
        } else {
            None
        };
        let limit = self.u16("limit")?;
        count(limit, MAX_HEADS, "limit")?;
        Ok((prefix, after, limit))
    }

    /// A u32-length-prefixed witness body of `min..=MAX_ADD_BODY` bytes.
    fn witness_body(&mut self, f: &'static str, min: usize) -> Result<Vec<u8>, WireError> {
        let len = self.u32(f)? as usize;
        if len < min || len > crate::witness::MAX_ADD_BODY {
            return Err(WireError::OutOfRange(f));
        }
        Ok(self.take(len, f)?.to_vec())
    }

    fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.buf.len()))
        }
    }
}

fn count(n: u16, max: u16, field: &'static str) -> Result<usize, WireError> {
    if n == 0 || n > max {
        return Err(WireError::OutOfRange(field));
    }
    Ok(usize::from(n))
}

fn put_prefix(prefix: &[u8], out: &mut Vec<u8>) {
    out.push(prefix.len() as u8);
    out.extend_from_slice(prefix);
}

fn put_page(prefix: &[u8], after: Option<&PublicKey>, limit: u16, out: &mut Vec<u8>) {
    put_prefix(prefix, out);
    match after {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.extend_from_slice(&limit.to_be_bytes());
}

impl Request {
    /// The canonical bytes (without the length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Digest { prefix } => {
                out.push(0x01);
                put_prefix(prefix, &mut out);
            }
            Request::Heads {
                prefix,
                after,
                limit,
            } => {
                out.push(0x02);
                put_page(prefix, after.as_ref(), *limit, &mut out);
            }
            Request::Entries { wants, limit } => {
                out.push(0x03);
                out.extend_from_slice(&(wants.len() as u16).to_be_bytes());
                for w in wants {
                    out.extend_from_slice(w.subject.as_bytes());
                    out.extend_from_slice(&w.from_seq.to_be_bytes());
                }
                out.extend_from_slice(&limit.to_be_bytes());
            }
            Request::Fork { subject } => {
                out.push(0x04);
                out.extend_from_slice(subject.as_bytes());
            }
            Request::DigestFor { controller, prefix } => {
                out.push(0x05);
                out.extend_from_slice(controller.as_bytes());
                put_prefix(prefix, &mut out);
            }
            Request::HeadsFor {
                controller,
                prefix,
                after,
                limit,
            } => {
                out.push(0x06);
                out.extend_from_slice(controller.as_bytes());
                put_page(prefix, after.as_ref(), *limit, &mut out);
            }
            Request::AddCheckpoint { body } => {
                out.push(0x07);
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(body);
            }
            Request::LogCheckpoint => out.push(0x08),
            Request::LogEntries { start, limit } => {
                out.push(0x09);
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&limit.to_be_bytes());
            }
        }
        out
    }

    /// Decodes a request strictly.
    ///
    /// # Errors
    /// [`WireError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Request, WireError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let mut r = Reader { buf: bytes };
        let req = match r.u8("tag")? {
            0x01 => Request::Digest {
                prefix: r.prefix(1)?,
            },
            0x02 => {
                let (prefix, after, limit) = r.page()?;
                Request::Heads {
                    prefix,
                    after,
                    limit,
                }
            }
            0x03 => {
                let n = count(r.u16("want count")?, MAX_WANTS, "want count")?;
                let mut wants = Vec::with_capacity(n);
                for _ in 0..n {
                    let subject = PublicKey::from_bytes(r.arr32("subject")?);
                    let from_seq = r.u64("from_seq")?;
                    if from_seq == 0 {
                        return Err(WireError::OutOfRange("from_seq"));
                    }
                    wants.push(Want { subject, from_seq });
                }
                let limit = r.u16("limit")?;
                count(limit, MAX_ENTRIES, "limit")?;
                Request::Entries { wants, limit }
            }
            0x04 => Request::Fork {
                subject: PublicKey::from_bytes(r.arr32("subject")?),
            },
            0x05 => {
                let controller = PublicKey::from_bytes(r.arr32("controller")?);
                Request::DigestFor {
                    controller,
                    prefix: r.prefix(1)?,
                }
            }
            0x06 => {
                let controller = PublicKey::from_bytes(r.arr32("controller")?);
                let (prefix, after, limit) = r.page()?;
                Request::HeadsFor {
                    controller,
                    prefix,
                    after,
                    limit,
                }
            }
            0x07 => Request::AddCheckpoint {
                body: r.witness_body("add-checkpoint body", 1)?,
            },
            0x08 => Request::LogCheckpoint,
            0x09 => {
                let start = r.u64("start")?;
                let limit = r.u16("limit")?;
                count(limit, MAX_ENTRIES, "limit")?;
                Request::LogEntries { start, limit }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end()?;
        Ok(req)
    }
}

impl Response {
    /// The canonical bytes (without the length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Digest(buckets) => {
                out.push(0x81);
                out.extend_from_slice(&(buckets.len() as u16).to_be_bytes());
                for b in buckets {
                    out.extend_from_slice(&b.fingerprint);
                    out.extend_from_slice(&b.count.to_be_bytes());
                }
            }
            Response::Heads { heads, more } => {
                out.push(0x82);
                out.extend_from_slice(&(heads.len() as u16).to_be_bytes());
                for h in heads {
                    out.extend_from_slice(h.subject.as_bytes());
                    out.extend_from_slice(&h.seq.to_be_bytes());
                    out.extend_from_slice(h.hash.as_bytes());
                    out.push(u8::from(h.forked));
                }
                out.push(u8::from(*more));
            }
            Response::Entries(entries) => {
                out.push(0x83);
                out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
                for e in entries {
                    out.extend_from_slice(&(e.len() as u16).to_be_bytes());
                    out.extend_from_slice(e);
                }
            }
            Response::Fork(proof) => {
                out.push(0x84);
                match proof {
                    None => out.push(0),
                    Some(p) => {
                        out.push(1);
                        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
                        out.extend_from_slice(p);
                    }
                }
            }
            Response::Witness { status, body } => {
                out.push(0x87);
                out.extend_from_slice(&status.to_be_bytes());
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(body);
            }
            Response::Checkpoint(note) => {
                out.push(0x88);
                out.extend_from_slice(&(note.len() as u32).to_be_bytes());
                out.extend_from_slice(note);
            }
            Response::Error { code, message } => {
                out.push(0xff);
                out.push(*code);
                let m = truncate_utf8(message, 256);
                out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                out.extend_from_slice(m.as_bytes());
            }
        }
        out
    }

    /// Decodes a response strictly.
    ///
    /// # Errors
    /// [`WireError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Response, WireError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let mut r = Reader { buf: bytes };
        let resp = match r.u8("tag")? {
            0x81 => {
                let n = usize::from(r.u16("bucket count")?);
                if n != FANOUT {
                    return Err(WireError::OutOfRange("bucket count"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let fingerprint = r.arr32("fingerprint")?;
                    let count = r.u32("count")?;
                    v.push(Bucket { fingerprint, count });
                }
                Response::Digest(v)
            }
            0x82 => {
                let n = usize::from(r.u16("head count")?);
                if n > usize::from(MAX_HEADS) {
                    return Err(WireError::OutOfRange("head count"));
                }
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    let subject = PublicKey::from_bytes(r.arr32("subject")?);
                    let seq = r.u64("seq")?;
                    let hash = Hash::from_bytes(r.arr32("hash")?);
                    let forked = r.flag("forked")?;
                    if seq == 0 {
                        return Err(WireError::OutOfRange("seq"));
                    }
                    heads.push(Head {
                        subject,
                        seq,
                        hash,
                        forked,
                    });
                }
                let more = r.flag("more")?;
                Response::Heads { heads, more }
            }
            0x83 => {
                let n = usize::from(r.u16("entry count")?);
                if n > usize::from(MAX_ENTRIES) {
                    return Err(WireError::OutOfRange("entry count"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = usize::from(r.u16("entry length")?);
                    if len == 0 || len > crate::entry::MAX_ENTRY_BYTES {
                        return Err(WireError::OutOfRange("entry length"));
                    }
                    v.push(r.take(len, "entry")?.to_vec());
                }
                Response::Entries(v)
            }
            0x84 => {
                if r.flag("fork tag")? {
                    let len = r.u32("fork proof length")? as usize;
                    if len == 0 || len > MAX_MESSAGE {
                        return Err(WireError::OutOfRange("fork proof length"));
                    }
                    Response::Fork(Some(r.take(len, "fork proof")?.to_vec()))
                } else {
                    Response::Fork(None)
                }
            }
            0x87 => {
                let status = r.u16("status")?;
                if !(100..=599).contains(&status) {
                    return Err(WireError::OutOfRange("status"));
                }
                Response::Witness {
                    status,
                    body: r.witness_body("witness body", 0)?,
                }
            }
            0x88 => Response::Checkpoint(r.witness_body("checkpoint", 1)?),
            0xff => {
                let code = r.u8("error code")?;
                let len = usize::from(r.u16("message length")?);
                if len > 256 {
                    return Err(WireError::OutOfRange("message length"));
                }
                // Read leniently (lossy UTF-8), then cut to the encoder's 256-byte limit, so that
                // the decoded value encodes back to a message that decodes to it (found by
                // fuzzing: 90 invalid bytes became 270 bytes of replacement characters).
                let lossy = String::from_utf8_lossy(r.take(len, "message")?);
                let message = truncate_utf8(&lossy, 256).to_owned();
                Response::Error { code, message }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end()?;
        Ok(resp)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A gossip batch: each entry as a 2-byte big-endian length and its canonical bytes, one after
/// the other (1 to [`MAX_BATCH`] entries, at most [`MAX_GOSSIP`] bytes in all).
pub fn encode_batch<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Splits a gossip batch into its entries' bytes (not yet decoded as entries).
///
/// # Errors
/// [`WireError`] for an empty, truncated or oversized batch, or an entry length out of range.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    if bytes.len() > MAX_GOSSIP {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let mut r = Reader { buf: bytes };
    let mut out = Vec::new();
    while !r.buf.is_empty() {
        if out.len() == MAX_BATCH {
            return Err(WireError::OutOfRange("batch count"));
        }
        let len = usize::from(r.u16("entry length")?);
        if len == 0 || len > crate::entry::MAX_ENTRY_BYTES {
            return Err(WireError::OutOfRange("entry length"));
        }
        out.push(r.take(len, "entry")?);
    }
    if out.is_empty() {
        return Err(WireError::OutOfRange("batch count"));
    }
    Ok(out)
}

/// The digest bucket (0..65536) of a subject: its key's first two bytes, big-endian.
pub fn bucket_of(subject: &PublicKey) -> usize {
    let b = subject.as_bytes();
    usize::from(b[0]) << 8 | usize::from(b[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(b: u8) -> PublicKey {
        PublicKey::from_bytes([b; 32])
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Digest { prefix: vec![] },
            Request::Digest { prefix: vec![7] },
            Request::Heads {
                prefix: vec![1, 2],
                after: Some(pk(3)),
                limit: 10,
            },
            Request::Entries {
                wants: vec![Want {
                    subject: pk(4),
                    from_seq: 9,
                }],
                limit: 5,
            },
            Request::Fork { subject: pk(5) },
            Request::DigestFor {
                controller: pk(6),
                prefix: vec![1],
            },
            Request::HeadsFor {
                controller: pk(7),
                prefix: vec![1, 2],
                after: None,
                limit: 1,
            },
            Request::LogCheckpoint,
            Request::LogEntries {
                start: 1 << 40,
                limit: MAX_ENTRIES,
            },
        ];
        for r in reqs {
            assert_eq!(Request::from_bytes(&r.to_bytes()), Ok(r));
        }
    }

    #[test]
    fn responses_round_trip() {
        let resps = [
            Response::Digest(vec![Bucket::default(); FANOUT]),
            Response::Heads {
                heads: vec![Head {
                    subject: pk(1),
                    seq: 3,
                    hash: Hash::from_bytes([9; 32]),
                    forked: true,
                }],
                more: false,
            },
            Response::Entries(vec![vec![1, 2, 3]]),
            Response::Fork(Some(b"{}".to_vec())),
            Response::Fork(None),
            Response::Checkpoint(b"origin\n".to_vec()),
            Response::Error {
                code: 2,
                message: "busy".into(),
            },
        ];
        for r in resps {
            assert_eq!(Response::from_bytes(&r.to_bytes()), Ok(r));
        }
    }

    #[test]
    fn rejects_bad_messages() {
        let mut b = Request::Digest { prefix: vec![1] }.to_bytes();
        b.push(0);
        assert_eq!(Request::from_bytes(&b), Err(WireError::Trailing(1)));
        assert_eq!(Request::from_bytes(&[0x0a]), Err(WireError::UnknownTag(10)));
        assert_eq!(
            Request::from_bytes(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Truncated("limit"))
        );
        for limit in [0, MAX_ENTRIES + 1] {
            let r = Request::LogEntries { start: 0, limit };
            assert_eq!(
                Request::from_bytes(&r.to_bytes()),
                Err(WireError::OutOfRange("limit"))
            );
        }
        assert_eq!(Request::from_bytes(&[0x08, 0]), Err(WireError::Trailing(1)));
        assert_eq!(
            Response::from_bytes(&Response::Checkpoint(vec![]).to_bytes()),
            Err(WireError::OutOfRange("checkpoint"))
        );
        assert_eq!(
            Request::from_bytes(&[0x01, 2, 0, 0]),
            Err(WireError::OutOfRange("prefix length"))
        );
        assert!(Request::from_bytes(&[]).is_err());
        let heads = Request::Heads {
            prefix: vec![],
            after: None,
            limit: MAX_HEADS + 1,
        };
        assert!(Request::from_bytes(&heads.to_bytes()).is_err());
        let entries = Request::Entries {
            wants: vec![],
            limit: 1,
        };
        assert!(Request::from_bytes(&entries.to_bytes()).is_err());
        assert!(Response::from_bytes(&Response::Digest(vec![]).to_bytes()).is_err());
        assert!(Response::from_bytes(&Response::Entries(vec![vec![]]).to_bytes()).is_err());
    }

    #[test]
    fn batches_round_trip_and_reject_damage() {
        let a = vec![1u8, 2, 3];
        let b = vec![9u8; 100];
        let batch = encode_batch([a.as_slice(), b.as_slice()]);
        assert_eq!(decode_batch(&batch), Ok(vec![a.as_slice(), b.as_slice()]));
        assert!(decode_batch(&[]).is_err());
        assert!(decode_batch(&batch[..batch.len() - 1]).is_err());
        assert!(decode_batch(&[0, 0]).is_err());
        let too_many: Vec<&[u8]> = vec![&a[..]; MAX_BATCH + 1];
        assert!(decode_batch(&encode_batch(too_many)).is_err());
    }

    #[test]
    fn an_error_message_of_invalid_utf8_decodes_to_a_value_that_round_trips() {
        // fuzz/artifacts/sync_messages/crash-ddb851f1...: an Error response whose 90-byte
        // message is all 0xff; read lossily it became 270 bytes, which the encoder cut to 256.
        let mut bytes = vec![0xff, 0x00, 0x00, 90];
        bytes.extend([0xffu8; 90]);
        let r = Response::from_bytes(&bytes).expect("decodes");
        let again = Response::from_bytes(&r.to_bytes()).expect("re-encoded decodes");
        assert_eq!(again, r);
    }

    #[test]
    fn buckets_cancel() {
        let h = Head {
            subject: pk(1),
            seq: 1,
            hash: Hash::from_bytes([2; 32]),
            forked: false,
        };
        let mut b = Bucket::default();
        b.toggle(&head_item(&h), true);
        assert_eq!(b.count, 1);
        b.toggle(&head_item(&h), false);
        assert_eq!(b, Bucket::default());
    }
}
