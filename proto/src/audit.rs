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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
    /// The size both checkpoints claim.
    pub size: u64,
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
/// saves a copy of every entry; pass the decoded entries to [`audit_decoded`].
///
/// # Errors
/// Why the line is not an export line.
pub fn parse_and_decode_line(line: &str) -> Result<(ExportLine, Option<DecodedEntry>), String> {
    if let Some((log_index, hex)) = fast_entry_parts(line) {
        // Valid hex has no quotes, escapes or control characters, so JSON would read the same
        // string; anything else takes the JSON path below.
        let mut bytes = vec![0u8; hex.len() / 2];
        if hex.len() % 2 == 0 && hex::decode_to_slice(hex, &mut bytes).is_ok() {
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
/// used when no `at` is given.
pub fn audit(
    lines: &[ExportLine],
    options: &AuditOptions,
    now: u64,
    verify_signatures: &SignatureCheck,
) -> AuditReport {
    audit_decoded(lines, None, options, now, verify_signatures)
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
/// on all cores and pass the results to [`audit_decoded`]).
pub fn decode_entry_hex(hex: &str) -> DecodedEntry {
    match hex::decode(hex) {
        Err(_) => DecodedEntry::Bad {
            reason: "not hex".into(),
            leaf_input: crate::entry::hash_entry_bytes(&[]),
        },
        Ok(b) => decode_entry_bytes(&b),
    }
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

/// [`audit`] with the entry lines already decoded: `decoded` holds one [`DecodedEntry`] per
/// `ExportLine::Entry` of `lines`, in order (None: decode here, on this thread).
pub fn audit_decoded(
    lines: &[ExportLine],
    decoded: Option<Vec<DecodedEntry>>,
    options: &AuditOptions,
    now: u64,
    verify_signatures: &SignatureCheck,
) -> AuditReport {
    let mut decoded = decoded.map(Vec::into_iter);
    let mut r = AuditReport::default();
    let mut anomalies = Vec::new();
    let mut header_vkey = None;
    let mut declared_size = None;
    let mut end_count = None;
    let mut entries: Vec<Entry> = Vec::new();
    // Entry hashes, computed once, parallel to `entries`.
    let mut hashes: Vec<Hash> = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut notes = Vec::new();
    let mut split_views = Vec::new();
    let mut forks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match line {
            ExportLine::Header {
                format,
                log_vkey,
                size,
                ..
            } => {
                if i != 0 {
                    anomalies.push(format!("line {}: header not on the first line", i + 1));
                }
                if format != EXPORT_FORMAT {
                    anomalies.push(format!("unknown export format {format:?}"));
                }
                header_vkey = Some(log_vkey.clone());
                declared_size = Some(*size);
            }
            ExportLine::Entry { log_index, hex } => {
                let expected = leaves.len() as u64;
                if *log_index != expected {
                    anomalies.push(format!(
                        "log index {log_index} where {expected} was expected (entries dropped, repeated or reordered)"
                    ));
                }
                let d = decoded
                    .as_mut()
                    .and_then(Iterator::next)
                    .unwrap_or_else(|| decode_entry_hex(hex));
                match d {
                    DecodedEntry::Ok(e, h) => {
                        leaves.push(merkle::leaf_hash(h.as_bytes()));
                        hashes.push(h);
                        entries.push(e);
                    }
                    DecodedEntry::Bad { reason, leaf_input } => {
                        anomalies.push(format!(
                            "log index {log_index}: entry does not decode: {reason}"
                        ));
                        // Keep the position so later indices and the tree stay aligned: the leaf
                        // of undecodable bytes is the hash over their domain-tagged bytes.
                        leaves.push(merkle::leaf_hash(leaf_input.as_bytes()));
                    }
                }
            }
            ExportLine::Checkpoint { note } => notes.push(note.clone()),
            ExportLine::Fork { hex } => forks.push(hex.clone()),
            ExportLine::SplitView { a, b } => split_views.push(crate::witness::SplitView {
                a: a.clone(),
                b: b.clone(),
            }),
            ExportLine::End { entries: n } => end_count = Some(*n),
        }
    }
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

    // Signatures, all at once.
    let bad_sigs = verify_signatures(&entries);
    let bad_set: HashSet<usize> = bad_sigs.iter().map(|(i, _)| *i).collect();
    for (i, e) in &bad_sigs {
        anomalies.push(format!(
            "entry {} (subject {}, seq {}): {e}",
            entries[*i].hash(),
            entries[*i].subject(),
            entries[*i].seq()
        ));
    }
    r.signatures_ok = entries.len() as u64 - bad_sigs.len() as u64;

    // Chains, in log order.
    let mut heads: HashMap<PublicKey, ChainHead> = HashMap::new();
    let mut broken: HashSet<PublicKey> = HashSet::new();
    // Each subject's valid chain, as indices into `entries` (no copies).
    let mut chains: BTreeMap<PublicKey, Vec<usize>> = BTreeMap::new();
    let mut seen: HashSet<Hash> = HashSet::new();
    let mut controllers: BTreeSet<PublicKey> = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let hash = hashes[i];
        *r.kinds.entry(e.kind().as_str().to_owned()).or_default() += 1;
        if let Some(k) = e.content.body.consent() {
            controllers.insert(k.controller);
        }
        let subject = e.subject();
        if !seen.insert(hash) {
            anomalies.push(format!("entry {hash} appears twice"));
            continue;
        }
        if bad_set.contains(&i) || broken.contains(&subject) {
            broken.insert(subject);
            continue;
        }
        let res = match heads.get_mut(&subject) {
            None => ChainHead::genesis_unverified(e).map(|h| {
                heads.insert(subject, h);
            }),
            Some(h) => h.check_next_unsigned(e).map(|()| h.advance(e, hash)),
        };
        match res {
            Ok(()) => chains.entry(subject).or_default().push(i),
            Err(err) => {
                anomalies.push(format!("subject {subject}: {err}"));
                broken.insert(subject);
            }
        }
    }
    r.subjects = heads.len().max(chains.len()) as u64;
    r.controllers = controllers.len() as u64;

    // Merkle tree and checkpoints.
    r.tree_root = Some(merkle::root(&leaves[..], n));
    // Roots at every checkpointed size, in one pass over the leaves (a node may have signed a
    // checkpoint at many sizes; recomputing each from scratch would be quadratic).
    let mut sizes: Vec<u64> = Vec::new();
    for note in &notes {
        if let Some(size) = crate::note::Note::parse(note)
            .ok()
            .and_then(|nt| Checkpoint::from_text(&nt.text).ok())
            .map(|c| c.size)
        {
            sizes.push(size);
        }
    }
    let roots_at = prefix_roots(&leaves, &sizes);
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
        // Cosignatures by consent-ledger witnesses (their key is in their name); other signature
        // lines are ignored.
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
    }

    // Fork proofs: valid alone, and against the exported chain's keys where it is present.
    let mut forked: BTreeSet<PublicKey> = BTreeSet::new();
    for h in &forks {
        let proof = hex::decode(h)
            .map_err(|_| "not hex".to_owned())
            .and_then(|b| ForkProof::from_bytes(&b).map_err(|e| e.to_string()));
        match proof {
            Ok(p) => {
                let chain = chains.get(&p.subject());
                let against_chain = chain.is_none_or(|c| {
                    let prefix: Vec<Entry> = c
                        .iter()
                        .map(|&i| &entries[i])
                        .filter(|e| e.seq() < p.seq())
                        .cloned()
                        .collect();
                    let hist = crate::chain::key_history(&prefix, p.seq());
                    hist.len() == p.key_history.len()
                        && hist
                            .iter()
                            .zip(&p.key_history)
                            .all(|(x, y)| x.hash() == y.hash())
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
            Ok((cp, _)) => {
                if own_origin.as_deref() == Some(cp.origin.as_str()) {
                    anomalies.push(format!(
                        "split view: this log signed two different roots for size {}",
                        cp.size
                    ));
                }
                r.split_views.push(SplitViewLine {
                    id: p.id(),
                    origin: cp.origin,
                    size: cp.size,
                });
            }
            Err(e) => anomalies.push(format!("split-view proof does not verify: {e}")),
        }
    }

    // States.
    let judged_at = options.at.unwrap_or(now);
    r.judged_at = judged_at;
    for (subject, chain) in &chains {
        // The chain's entries up to `at` (a prefix: issued_at never decreases along a chain),
        // with the hashes computed once at decoding.
        let mut state = ConsentState::new();
        for &i in chain {
            let e = &entries[i];
            if options.at.is_some_and(|t| e.content.issued_at > t) {
                break;
            }
            state.apply(e, hashes[i]);
        }
        for (controller, purpose, d) in state.all(judged_at) {
            if options.controller.is_some_and(|c| c != controller) {
                continue;
            }
            let forked_now = forked.contains(subject);
            r.states.push(StateLine {
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
    r.ok = anomalies.is_empty();
    r.anomalies = anomalies;
    r
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
    match crate::chain::verify_entries(entries) {
        Ok(()) => vec![],
        Err(_) => entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| crate::verify_entry(e).err().map(|err| (i, err)))
            .collect(),
    }
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
}
