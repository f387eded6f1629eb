//! Auditing an export: replay every entry of a node's log and check everything that can be
//! checked without trusting the node.
//!
//! An export is NDJSON, one [`ExportLine`] per line: a header, every entry in log order, the
//! node's signed checkpoints, the fork proofs it holds, and an end line with the count. The
//! auditor checks, and names in its report when they fail: the format; that log indices run
//! 0, 1, 2, ... without gaps, repeats or reordering; that every entry decodes and its signature
//! verifies; that every subject's entries appear in seq order and form a valid chain (links,
//! signers, rotations); that every checkpoint is signed by the node's key and its root equals
//! the Merkle root recomputed from the exported log at its size (so a rewritten or
//! inconsistent checkpoint, a changed, dropped or reordered entry is caught); that checkpoints
//! never shrink; and that every fork proof verifies. It then recomputes every subject's state.

use std::collections::{hash_map, BTreeMap, BTreeSet, HashMap};

use foldhash::{HashMapExt, HashSet, HashSetExt};

use serde::{Deserialize, Serialize};

use crate::chain::{ChainHead, ForkProof};
use crate::entry::Entry;
use crate::error::EntryError;
use crate::keys::{Hash, PublicKey};
use crate::merkle;
use crate::note::{Checkpoint, Verifier};
use crate::state::ConsentState;

/// The export format name.
pub const EXPORT_FORMAT: &str = "consent-ledger-export/v1";

/// One line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    /// First line.
    Header {
        /// [`EXPORT_FORMAT`].
        format: String,
        /// The node's log origin.
        origin: String,
        /// The node's checkpoint verifier key.
        log_vkey: String,
        /// Number of entries exported.
        size: u64,
        /// Export time (ms since the Unix epoch).
        exported_at: u64,
    },
    /// One entry, in log order.
    Entry {
        /// Its log index.
        log_index: u64,
        /// Canonical encoding, hex.
        hex: String,
    },
    /// A signed checkpoint (C2SP note text).
    Checkpoint {
        /// The note.
        note: String,
    },
    /// A fork proof (canonical encoding, hex).
    Fork {
        /// The proof.
        hex: String,
    },
    /// A split-view proof the node holds (see [`crate::witness::SplitView`]): two checkpoints
    /// one log signed for one size with different roots.
    SplitView {
        /// One signed checkpoint note.
        a: String,
        /// The other.
        b: String,
        /// For notes of two sizes: the larger tree's root at the smaller size, with its proof.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<crate::witness::Prefix>,
    },
    /// Last line.
    End {
        /// Number of entry lines.
        entries: u64,
    },
}

/// What to report besides the checks.
#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    /// Reconstruct states as of this time (ms) instead of the end of the log.
    pub at: Option<u64>,
    /// Limit the states to this controller.
    pub controller: Option<PublicKey>,
    /// The node's checkpoint key, if the auditor knows it independently; otherwise the key in the
    /// export's header is used (which proves consistency, not identity).
    pub trusted: Option<Verifier>,
}

/// One checkpoint's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// Signed by the node's key.
    pub signature_ok: bool,
    /// Its root equals the root recomputed from the exported log at its size.
    pub matches_log: bool,
    /// The witnesses (`consent-witness/<key>` names) whose cosignatures on it verify.
    #[serde(default)]
    pub cosigners: Vec<String>,
}

/// A verified split-view proof in the export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitViewLine {
    /// The proof's id.
    pub id: Hash,
    /// The log that showed two histories.
    pub origin: String,
    /// The size both checkpoints claim (the smaller of the two sizes when they differ).
    pub size: u64,
    /// The larger size, when the two checkpoints are of different sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_size: Option<u64>,
}

/// One subject's state for one controller and purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateLine {
    /// Subject.
    pub subject: PublicKey,
    /// Controller.
    pub controller: PublicKey,
    /// Purpose ("*" for a withdraw or refuse of every purpose).
    pub purpose: String,
    /// DPV status or "forked".
    pub status: String,
    /// Deciding seq.
    pub seq: Option<u64>,
}

/// The audit's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// True when no anomaly was found.
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// Entries whose signature verified.
    pub signatures_ok: u64,
    /// Distinct subjects.
    pub subjects: u64,
    /// Distinct controllers.
    pub controllers: u64,
    /// Grants, withdrawals, refusals and rotations.
    pub kinds: BTreeMap<String, u64>,
    /// Merkle root of the whole exported log.
    pub tree_root: Option<Hash>,
    /// Every checkpoint.
    pub checkpoints: Vec<CheckpointReport>,
    /// Subjects with a verified fork proof.
    pub forked_subjects: Vec<PublicKey>,
    /// Verified split-view proofs (of any log) the export carries.
    #[serde(default)]
    pub split_views: Vec<SplitViewLine>,
    /// Everything that is wrong, one line each.
    pub anomalies: Vec<String>,
    /// States at the end of the log or at `at`.
    pub states: Vec<StateLine>,
    /// The time states were judged at (ms).
    pub judged_at: u64,
}

/// Parses one export line. Entry lines in the form the node writes them
/// (`{"type":"entry","log_index":N,"hex":"..."}`) take a direct path; every other line, and any
/// entry line written differently, goes through the JSON parser. Both give the same result.
///
/// # Errors
/// Why the line is not an export line.
pub fn parse_export_line(line: &str) -> Result<ExportLine, String> {
    if let Some(l) = fast_entry_line(line) {
        return Ok(l);
    }
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// [`parse_export_line`] and, for an entry line, [`decode_entry_hex`]. An entry line that takes
/// the direct path comes back with an empty `hex` (its bytes are in the decoded entry), which
/// saves a copy of every entry; pass the decoded entry to [`Replay::entry`].
///
/// # Errors
/// Why the line is not an export line.
pub fn parse_and_decode_line(line: &str) -> Result<(ExportLine, Option<DecodedEntry>), String> {
    if let Some((log_index, hex)) = fast_entry_parts(line) {
        // Valid hex has no quotes, escapes or control characters, so JSON would read the same
        // string; anything else takes the JSON path below.
        if let Some(bytes) = hex_bytes(hex) {
            return Ok((
                ExportLine::Entry {
                    log_index,
                    hex: String::new(),
                },
                Some(decode_entry_bytes(&bytes)),
            ));
        }
    }
    let l: ExportLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let d = match &l {
        ExportLine::Entry { hex, .. } => Some(decode_entry_hex(hex)),
        _ => None,
    };
    Ok((l, d))
}

fn fast_entry_line(line: &str) -> Option<ExportLine> {
    let (log_index, hex) = fast_entry_parts(line)?;
    // Hex digits only: no escapes, quotes or anything else JSON would treat specially.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(ExportLine::Entry {
        log_index,
        hex: hex.to_owned(),
    })
}

/// Appends the entry line of the entry with canonical encoding `bytes` at `log_index`, with its
/// line end, to `out`: exactly what serialising [`ExportLine::Entry`] with `serde_json` writes
/// (the form [`parse_export_line`] reads on its direct path), without the per-character work of
/// a JSON string.
pub fn write_entry_line(out: &mut Vec<u8>, log_index: u64, bytes: &[u8]) {
    use std::io::Write;
    out.extend_from_slice(br#"{"type":"entry","log_index":"#);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{log_index}");
    out.extend_from_slice(br#","hex":""#);
    let at = out.len();
    out.resize(at + 2 * bytes.len(), 0);
    // Cannot fail: the space is exactly twice the bytes.
    let _ = faster_hex::hex_encode(bytes, &mut out[at..]);
    out.extend_from_slice(b"\"}\n");
}

/// The log index and hex of an entry line in the node's exact form, if it is one.
fn fast_entry_parts(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix(r#"{"type":"entry","log_index":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (index, rest) = rest.split_at(digits);
    // JSON numbers have no leading zeros.
    if index.is_empty() || (index.len() > 1 && index.starts_with('0')) {
        return None;
    }
    let log_index: u64 = index.parse().ok()?;
    let hex = rest.strip_prefix(r#","hex":""#)?.strip_suffix(r#""}"#)?;
    Some((log_index, hex))
}

/// Parses an export's lines.
///
/// # Errors
/// The first line that is not a valid export line, with its number (from 1).
pub fn parse_export(text: &str) -> Result<Vec<ExportLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_export_line(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Checks every entry's signature and returns each failure (index and reason).
pub type SignatureCheck = dyn Fn(&[Entry]) -> Vec<(usize, EntryError)>;

/// Audits an export. `verify_signatures` checks every entry's signature and returns each failure
/// (a caller can run it on all cores); [`verify_signatures_sequential`] is the simple one. `now` is
/// used when no `at` is given. This is [`Replay`] over the whole export at once.
pub fn audit(
    lines: &[ExportLine],
    options: &AuditOptions,
    now: u64,
    verify_signatures: &SignatureCheck,
) -> AuditReport {
    let decoded: Vec<Option<DecodedEntry>> = lines
        .iter()
        .map(|l| match l {
            ExportLine::Entry { hex, .. } => Some(decode_entry_hex(hex)),
            _ => None,
        })
        .collect();
    let entries: Vec<Entry> = decoded
        .iter()
        .flatten()
        .filter_map(|d| match d {
            DecodedEntry::Ok(e, _) => Some(e.clone()),
            DecodedEntry::Bad { .. } => None,
        })
        .collect();
    let mut bad: HashMap<usize, EntryError> = verify_signatures(&entries).into_iter().collect();
    let mut replay = Replay::new(options.clone());
    // The position of the next decoded entry in `entries`.
    let mut k = 0;
    for (line, d) in lines.iter().zip(decoded) {
        match (line, d) {
            (ExportLine::Entry { log_index, .. }, Some(d)) => {
                let signature = match &d {
                    DecodedEntry::Ok(..) => {
                        let verdict = bad.remove(&k).map_or(Ok(()), Err);
                        k += 1;
                        verdict
                    }
                    DecodedEntry::Bad { .. } => Ok(()),
                };
                replay.entry(*log_index, d, signature);
            }
            (other, _) => replay.line(other.clone()),
        }
    }
    replay.finish(now)
}

/// An entry line's bytes, decoded: the entry and its hash, or why they do not decode.
#[derive(Clone, Debug)]
// Nearly every line is `Ok`; boxing the entry would add an allocation per entry for nothing.
#[allow(clippy::large_enum_variant)]
pub enum DecodedEntry {
    /// The entry and its hash.
    Ok(Entry, Hash),
    /// Not hex or not an entry; `leaf_input` is the hash over the domain-tagged raw bytes, which
    /// keeps the Merkle tree aligned.
    Bad {
        /// Why.
        reason: String,
        /// What stands in for the entry hash.
        leaf_input: Hash,
    },
}

/// Decodes one entry line's hex (what [`audit`] does for every entry line; a caller may run it
/// on all cores and pass the results to [`Replay::entry`]).
pub fn decode_entry_hex(hex: &str) -> DecodedEntry {
    match hex_bytes(hex) {
        Some(b) => decode_entry_bytes(&b),
        None => DecodedEntry::Bad {
            reason: "not hex".into(),
            leaf_input: crate::entry::hash_entry_bytes(&[]),
        },
    }
}

/// Hex (either case) to bytes, with the SIMD decoder of `faster-hex`: hex decoding was the
/// largest cost of an audit after the signatures. None when it is not hex.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; hex.len() / 2];
    faster_hex::hex_decode(hex.as_bytes(), &mut out).ok()?;
    Some(out)
}

fn decode_entry_bytes(b: &[u8]) -> DecodedEntry {
    match Entry::from_bytes(b) {
        Ok(e) => {
            let h = e.hash();
            DecodedEntry::Ok(e, h)
        }
        Err(err) => DecodedEntry::Bad {
            reason: err.to_string(),
            leaf_input: crate::entry::hash_entry_bytes(b),
        },
    }
}

/// Verifies the signatures of the decoded entries among `decoded` in one batch (then alone where
/// the batch fails), with signer keys kept in `cache` across calls, and returns one verdict per
/// item of `decoded` (`Ok` for an entry that did not decode: there is no signature to check).
pub fn verify_decoded(
    decoded: &[DecodedEntry],
    cache: &mut crate::sig::KeyCache,
) -> Vec<Result<(), EntryError>> {
    let entries: Vec<&Entry> = decoded
        .iter()
        .filter_map(|d| match d {
            DecodedEntry::Ok(e, _) => Some(e),
            DecodedEntry::Bad { .. } => None,
        })
        .collect();
    let mut verdicts = verify_batch_then_alone(&entries, cache).into_iter();
    decoded
        .iter()
        .map(|d| match d {
            DecodedEntry::Ok(..) => verdicts.next().unwrap_or(Ok(())),
            DecodedEntry::Bad { .. } => Ok(()),
        })
        .collect()
}

/// Every entry's signature verdict: one batch, and each entry alone only when the batch fails.
fn verify_batch_then_alone(
    entries: &[&Entry],
    cache: &mut crate::sig::KeyCache,
) -> Vec<Result<(), EntryError>> {
    if crate::chain::verify_entries_cached(entries, cache).is_ok() {
        return vec![Ok(()); entries.len()];
    }
    entries.iter().map(|e| crate::verify_entry(e)).collect()
}

/// One subject's valid chain, as the replay goes.
struct Chain {
    head: ChainHead,
    /// The state from the chain's entries up to `at` (all of them without `at`).
    state: ConsentState,
    /// An entry was issued after `at`: later ones are not applied (issued_at never decreases
    /// along a chain, so the applied entries are a prefix).
    past_at: bool,
    /// Seq and hash of the chain's first entry and of every rotation: what a fork proof's key
    /// history is checked against.
    keys: Vec<(u64, Hash)>,
}

/// An audit fed one export line at a time, in export order: what [`audit`] does over a whole
/// export. `consent audit` feeds it parts of a large export as its workers finish parsing them
/// and checking their signatures, so that the replay overlaps with that work.
///
/// Entries are checked as they come (log index, decoding, signature, duplicates, chain links and
/// signers) and folded into their subject's state; only each chain's head, state and key
/// history are kept, besides one Merkle leaf per entry. [`Replay::finish`] then checks the tree
/// against every checkpoint, the checkpoints' signatures and cosignatures, the fork and
/// split-view proofs and the counts, and reports the states.
pub struct Replay {
    options: AuditOptions,
    lines: u64,
    anomalies: Vec<String>,
    header_vkey: Option<String>,
    declared_size: Option<u64>,
    end_count: Option<u64>,
    leaves: Vec<Hash>,
    /// The tree over `leaves`, kept as they come: its root is the whole log's.
    frontier: merkle::Frontier,
    notes: Vec<String>,
    forks: Vec<String>,
    split_views: Vec<crate::witness::SplitView>,
    kinds: BTreeMap<String, u64>,
    signatures_ok: u64,
    seen: HashSet<Hash>,
    chains: foldhash::HashMap<PublicKey, Chain>,
    broken: HashSet<PublicKey>,
    controllers: BTreeSet<PublicKey>,
}

impl Replay {
    /// A replay that will report under `options`.
    pub fn new(options: AuditOptions) -> Self {
        Replay {
            options,
            lines: 0,
            anomalies: Vec::new(),
            header_vkey: None,
            declared_size: None,
            end_count: None,
            leaves: Vec::new(),
            frontier: merkle::Frontier::new(),
            notes: Vec::new(),
            forks: Vec::new(),
            split_views: Vec::new(),
            kinds: BTreeMap::new(),
            signatures_ok: 0,
            seen: HashSet::new(),
            chains: foldhash::HashMap::new(),
            broken: HashSet::new(),
            controllers: BTreeSet::new(),
        }
    }

    /// Entry lines replayed so far.
    pub fn entries(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The next line of the export. An entry line is decoded and its signature checked here,
    /// alone; [`Replay::entry`] takes one already decoded and checked.
    pub fn line(&mut self, line: ExportLine) {
        match line {
            ExportLine::Header {
                format,
                log_vkey,
                size,
                ..
            } => {
                if self.lines != 0 {
                    self.anomalies.push(format!(
                        "line {}: header not on the first line",
                        self.lines + 1
                    ));
                }
                if format != EXPORT_FORMAT {
                    self.anomalies
                        .push(format!("unknown export format {format:?}"));
                }
                self.header_vkey = Some(log_vkey);
                self.declared_size = Some(size);
            }
            ExportLine::Entry { log_index, hex } => {
                let d = decode_entry_hex(&hex);
                let signature = match &d {
                    DecodedEntry::Ok(e, _) => crate::verify_entry(e),
                    DecodedEntry::Bad { .. } => Ok(()),
                };
                return self.entry(log_index, d, signature);
            }
            ExportLine::Checkpoint { note } => self.notes.push(note),
            ExportLine::Fork { hex } => self.forks.push(hex),
            ExportLine::SplitView { a, b, prefix } => {
                self.split_views
                    .push(crate::witness::SplitView { a, b, prefix });
            }
            ExportLine::End { entries } => self.end_count = Some(entries),
        }
        self.lines += 1;
    }

    /// The next line of the export, an entry line at `log_index`, decoded, with its signature's
    /// verdict (see [`verify_decoded`]).
    pub fn entry(
        &mut self,
        log_index: u64,
        decoded: DecodedEntry,
        signature: Result<(), EntryError>,
    ) {
        self.lines += 1;
        let expected = self.leaves.len() as u64;
        if log_index != expected {
            self.anomalies.push(format!(
                "log index {log_index} where {expected} was expected (entries dropped, repeated or reordered)"
            ));
        }
        let (e, hash) = match decoded {
            DecodedEntry::Ok(e, h) => (e, h),
            DecodedEntry::Bad { reason, leaf_input } => {
                self.anomalies.push(format!(
                    "log index {log_index}: entry does not decode: {reason}"
                ));
                // Keep the position so later indices and the tree stay aligned: the leaf of
                // undecodable bytes is the hash over their domain-tagged bytes.
                self.push_leaf(merkle::leaf_hash(leaf_input.as_bytes()));
                return;
            }
        };
        self.push_leaf(merkle::leaf_hash(hash.as_bytes()));
        let kind = e.kind().as_str();
        match self.kinds.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.kinds.insert(kind.to_owned(), 1);
            }
        }
        if let Some(k) = e.content.body.consent() {
            self.controllers.insert(k.controller);
        }
        let subject = e.subject();
        let signed = match signature {
            Ok(()) => {
                self.signatures_ok += 1;
                true
            }
            Err(err) => {
                self.anomalies.push(format!(
                    "entry {hash} (subject {subject}, seq {}): {err}",
                    e.seq()
                ));
                false
            }
        };
        if !self.seen.insert(hash) {
            self.anomalies.push(format!("entry {hash} appears twice"));
            return;
        }
        if !signed || self.broken.contains(&subject) {
            self.broken.insert(subject);
            return;
        }
        let chain = match self.chains.entry(subject) {
            hash_map::Entry::Occupied(c) => {
                let c = c.into_mut();
                match c.head.check_next_unsigned(&e) {
                    Ok(()) => {
                        c.head.advance(&e, hash);
                        c
                    }
                    Err(err) => {
                        self.anomalies.push(format!("subject {subject}: {err}"));
                        self.broken.insert(subject);
                        return;
                    }
                }
            }
            hash_map::Entry::Vacant(v) => match ChainHead::genesis_unverified(&e) {
                Ok(head) => v.insert(Chain {
                    head,
                    state: ConsentState::new(),
                    past_at: false,
                    keys: Vec::new(),
                }),
                Err(err) => {
                    self.anomalies.push(format!("subject {subject}: {err}"));
                    self.broken.insert(subject);
                    return;
                }
            },
        };
        if !chain.past_at {
            if self.options.at.is_some_and(|t| e.content.issued_at > t) {
                chain.past_at = true;
            } else {
                chain.state.apply(&e, hash);
            }
        }
        if e.seq() == 1 || e.kind() == crate::entry::Kind::Rotate {
            chain.keys.push((e.seq(), hash));
        }
    }

    fn push_leaf(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
        self.frontier.push(leaf);
    }

    /// Checks what needs the whole export (counts, the Merkle tree against every checkpoint,
    /// signatures and cosignatures of the checkpoints, fork and split-view proofs) and reports,
    /// with every state. `now` is the time states are judged at when no `at` was given.
    pub fn finish(self, now: u64) -> AuditReport {
        let (mut report, states) = self.finish_checks(now);
        report.states = states.lines(0..states.len());
        report
    }

    /// [`Replay::finish`] without the states: the report (its `states` empty) and what the
    /// states are computed from, so that a caller can compute them in parts, on all cores
    /// ([`States::lines`]).
    pub fn finish_checks(self, now: u64) -> (AuditReport, States) {
        let Replay {
            options,
            mut anomalies,
            header_vkey,
            declared_size,
            end_count,
            leaves,
            frontier,
            notes,
            forks,
            split_views,
            kinds,
            signatures_ok,
            chains,
            controllers,
            ..
        } = self;
        let mut r = AuditReport {
            kinds,
            signatures_ok,
            ..AuditReport::default()
        };
        let n = leaves.len() as u64;
        r.entries = n;
        if header_vkey.is_none() {
            anomalies.push("no header line".into());
        }
        if declared_size.is_some_and(|s| s != n) {
            anomalies.push(format!(
                "header declares {} entries, the export has {n}",
                declared_size.unwrap_or(0)
            ));
        }
        match end_count {
            None => anomalies.push("no end line: the export is truncated".into()),
            Some(c) if c != n => {
                anomalies.push(format!("end line counts {c} entries, the export has {n}"))
            }
            Some(_) => {}
        }
        r.subjects = chains.len() as u64;
        r.controllers = controllers.len() as u64;

        // Merkle tree and checkpoints: the whole log's root was kept as the leaves came; the
        // roots at every smaller checkpointed size come from one pass over the leaves (a node
        // may have signed a checkpoint at many sizes; recomputing each from scratch would be
        // quadratic).
        let mut sizes: Vec<u64> = Vec::new();
        for note in &notes {
            if let Some(size) = crate::note::Note::parse(note)
                .ok()
                .and_then(|nt| Checkpoint::from_text(&nt.text).ok())
                .map(|c| c.size)
                .filter(|s| *s < n)
            {
                sizes.push(size);
            }
        }
        let mut roots_at = prefix_roots(&leaves, &sizes);
        roots_at.insert(n, frontier.root());
        r.tree_root = Some(frontier.root());
        let embedded = header_vkey
            .as_deref()
            .and_then(|v| Verifier::from_vkey(v).ok());
        let verifier = options.trusted.clone().or(embedded);
        let mut last_size = 0;
        for note in &notes {
            let parsed = crate::note::Note::parse(note)
                .map_err(|e| e.to_string())
                .and_then(|nt| {
                    Checkpoint::from_text(&nt.text)
                        .map(|c| (nt, c))
                        .map_err(|e| e.to_string())
                });
            let (nt, cp) = match parsed {
                Ok(x) => x,
                Err(e) => {
                    anomalies.push(format!("checkpoint does not parse: {e}"));
                    continue;
                }
            };
            let signature_ok = verifier.as_ref().is_some_and(|v| nt.verify(v).is_ok());
            if !signature_ok {
                anomalies.push(format!(
                    "checkpoint at size {}: signature does not verify",
                    cp.size
                ));
            }
            // A log signs its checkpoints under its origin (PROTOCOL.md 17.1).
            if let Some(Err(e)) = verifier.as_ref().map(|v| cp.check_origin(v)) {
                anomalies.push(format!("checkpoint at size {}: {e}", cp.size));
            }
            let matches_log = roots_at.get(&cp.size) == Some(&cp.root);
            if !matches_log {
                anomalies.push(format!(
                    "checkpoint at size {}: root {} is not the root of the exported log at that size (history rewritten, or the checkpoint is inconsistent)",
                    cp.size, cp.root
                ));
            }
            if cp.size < last_size {
                anomalies.push(format!(
                    "checkpoint at size {} follows one at size {last_size}",
                    cp.size
                ));
            }
            last_size = last_size.max(cp.size);
            // Cosignatures by consent-ledger witnesses (their key is in their name); other
            // signature lines are ignored.
            let mut cosigners = Vec::new();
            for s in &nt.signatures {
                let Some(key) = s
                    .name
                    .strip_prefix(crate::witness::WITNESS_NAME_PREFIX)
                    .and_then(|h| h.parse::<PublicKey>().ok())
                else {
                    continue;
                };
                let c = crate::witness::Cosigner::of_key(key);
                if s.id != c.id() || cosigners.contains(&c.name) {
                    continue;
                }
                match c.verify(&nt) {
                    Ok(_) => cosigners.push(c.name),
                    Err(e) => anomalies.push(format!(
                        "checkpoint at size {}: cosignature by {}: {e}",
                        cp.size, c.name
                    )),
                }
            }
            r.checkpoints.push(CheckpointReport {
                size: cp.size,
                root: cp.root,
                signature_ok,
                matches_log,
                cosigners,
            });
        }
        if notes.is_empty() {
            anomalies.push("no checkpoint in the export".into());
        } else if !r.checkpoints.iter().any(|c| c.size == n) {
            anomalies.push(format!(
                "no checkpoint at the exported size {n}: the last entries are covered by no signed checkpoint"
            ));
        }

        // Fork proofs: valid alone, and against the exported chain's keys where it is present.
        let mut forked: BTreeSet<PublicKey> = BTreeSet::new();
        for h in &forks {
            let proof = hex::decode(h)
                .map_err(|_| "not hex".to_owned())
                .and_then(|b| ForkProof::from_bytes(&b).map_err(|e| e.to_string()));
            match proof {
                Ok(p) => {
                    // The chain's first entry and rotations before the fork's seq, as the
                    // proof's key history must list them.
                    let against_chain = chains.get(&p.subject()).is_none_or(|c| {
                        let hist: Vec<Hash> = c
                            .keys
                            .iter()
                            .filter(|(seq, _)| *seq < p.seq() && p.seq() > 1)
                            .map(|(_, h)| *h)
                            .collect();
                        hist.len() == p.key_history.len()
                            && hist.iter().zip(&p.key_history).all(|(x, y)| *x == y.hash())
                    });
                    if against_chain {
                        forked.insert(p.subject());
                    } else {
                        anomalies.push(format!(
                            "fork proof for subject {} at seq {}: its key history differs from the chain's",
                            p.subject(),
                            p.seq()
                        ));
                    }
                }
                Err(e) => anomalies.push(format!("fork proof does not verify: {e}")),
            }
        }
        r.forked_subjects = forked.iter().copied().collect();

        // Split-view proofs: each must verify; one about this very log is an anomaly of the log.
        let own_origin = verifier.as_ref().map(|v| v.name.clone());
        for p in &split_views {
            match p.verify() {
                Ok((cp, other)) => {
                    let size = cp.size.min(other.size);
                    if own_origin.as_deref() == Some(cp.origin.as_str()) {
                        anomalies.push(if cp.size == other.size {
                            format!("split view: this log signed two different roots for size {size}")
                        } else {
                            format!(
                                "split view: this log signed a checkpoint at size {} whose tree does not extend the one it signed at size {size}",
                                cp.size.max(other.size)
                            )
                        });
                    }
                    r.split_views.push(SplitViewLine {
                        id: p.id(),
                        origin: cp.origin,
                        size,
                        other_size: (other.size != cp.size).then_some(cp.size.max(other.size)),
                    });
                }
                Err(e) => anomalies.push(format!("split-view proof does not verify: {e}")),
            }
        }

        // States, by subject.
        let judged_at = options.at.unwrap_or(now);
        r.judged_at = judged_at;
        let mut chains: Vec<(PublicKey, ConsentState)> =
            chains.into_iter().map(|(s, c)| (s, c.state)).collect();
        chains.sort_unstable_by_key(|(s, _)| *s);
        r.ok = anomalies.is_empty();
        r.anomalies = anomalies;
        let states = States {
            chains,
            forked,
            judged_at,
            controller: options.controller,
        };
        (r, states)
    }
}

/// Every subject's consent state at the end of a replay, from which [`States::lines`] reports.
pub struct States {
    /// By subject.
    chains: Vec<(PublicKey, ConsentState)>,
    forked: BTreeSet<PublicKey>,
    judged_at: u64,
    controller: Option<PublicKey>,
}

impl States {
    /// Subjects with a state.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether no subject has a state.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The state lines of the subjects at `range` (positions in subject order; see
    /// [`States::len`]): one per (subject, controller, purpose) that some entry names, with its
    /// status at the judging time (`forked` for a subject with a fork proof).
    pub fn lines(&self, range: std::ops::Range<usize>) -> Vec<StateLine> {
        let mut out = Vec::new();
        let Some(chains) = self.chains.get(range) else {
            return out;
        };
        for (subject, state) in chains {
            let forked_now = self.forked.contains(subject);
            for (controller, purpose, d) in state.all(self.judged_at) {
                if self.controller.is_some_and(|c| c != controller) {
                    continue;
                }
                out.push(StateLine {
                    subject: *subject,
                    controller,
                    purpose,
                    status: if forked_now {
                        "forked".into()
                    } else {
                        d.status.dpv().into()
                    },
                    seq: if forked_now { None } else { d.seq },
                });
            }
        }
        out
    }
}

/// The Merkle roots of the prefixes of `leaves` at each of `sizes` (sizes beyond the leaves are
/// left out), in one pass: the frontier of perfect subtrees is kept as the leaves go by, and a
/// prefix's root folds that frontier from the right (RFC 6962's split rule gives exactly this).
pub fn prefix_roots(leaves: &[Hash], sizes: &[u64]) -> HashMap<u64, Hash> {
    let mut wanted: Vec<u64> = sizes
        .iter()
        .copied()
        .filter(|s| *s as usize <= leaves.len())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = HashMap::new();
    let mut frontier = merkle::Frontier::new();
    let mut next = wanted.iter().peekable();
    while next.peek() == Some(&&0) {
        out.insert(0, merkle::empty_root());
        next.next();
    }
    for leaf in leaves {
        frontier.push(*leaf);
        let size = frontier.size();
        while next.peek() == Some(&&size) {
            out.insert(size, frontier.root());
            next.next();
        }
    }
    out
}

/// Verifies every entry's signature in one batch, then alone where the batch fails, and returns
/// every failure.
pub fn verify_signatures_sequential(entries: &[Entry]) -> Vec<(usize, EntryError)> {
    let refs: Vec<&Entry> = entries.iter().collect();
    verify_batch_then_alone(&refs, &mut crate::sig::KeyCache::new(entries.len()))
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|err| (i, err)))
        .collect()
}

#[cfg(test)]
mod fast_line_tests {
    use super::*;

    #[test]
    fn the_direct_path_agrees_with_the_json_parser() {
        let lines = [
            r#"{"type":"entry","log_index":0,"hex":"00ff"}"#,
            r#"{"type":"entry","log_index":18446744073709551615,"hex":"ab"}"#,
            r#"{"type":"entry","log_index":7,"hex":""}"#,
            r#"{"type":"entry","log_index":07,"hex":"ab"}"#,
            r#"{"type":"entry","log_index":18446744073709551616,"hex":"ab"}"#,
            r#"{"type":"entry","log_index":1,"hex":"a\u0062"}"#,
            r#"{"type":"entry","log_index":1,"hex":"ab","x":1}"#,
            r#"{"type":"entry","log_index":1,"hex":"ab"} "#,
            r#"{"type":"entry","log_index":-1,"hex":"ab"}"#,
            r#"{"log_index":1,"type":"entry","hex":"ab"}"#,
            r#"{"type":"entry","log_index":1,"hex":"zz"}"#,
        ];
        for l in lines {
            let direct = parse_export_line(l);
            let json: Result<ExportLine, String> =
                serde_json::from_str(l).map_err(|e| e.to_string());
            assert_eq!(direct.is_ok(), json.is_ok(), "{l}");
            if let (Ok(a), Ok(b)) = (direct, json) {
                assert_eq!(a, b, "{l}");
            }
        }
        assert!(
            fast_entry_line(lines[0]).is_some(),
            "the node's form takes the direct path"
        );
    }

    #[test]
    fn entry_lines_are_written_as_serde_json_writes_them() {
        for (index, bytes) in [
            (0u64, vec![]),
            (7, vec![0u8, 0xff, 0x10]),
            (u64::MAX, vec![0xab; 400]),
        ] {
            let mut got = Vec::new();
            write_entry_line(&mut got, index, &bytes);
            let mut want = serde_json::to_vec(&ExportLine::Entry {
                log_index: index,
                hex: hex::encode(&bytes),
            })
            .expect("serialises");
            want.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
            let text = std::str::from_utf8(&got).expect("utf-8");
            assert!(fast_entry_parts(text.trim_end()).is_some(), "{text}");
        }
    }
}
