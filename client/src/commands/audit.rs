//! `consent audit`: replay a node's whole export (`GET /v1/log/export`, or a file written by
//! `consent-node export`) with `proto::audit::audit`, and report every anomaly.
//!
//! The export is read into memory; the signatures are verified on all cores (one scoped thread
//! per available core, each on a contiguous chunk of the log, in batches); the rest of the replay
//! (chains, Merkle tree, checkpoints, fork proofs, states) is `proto::audit::audit`. A progress
//! line is drawn on standard error, in place, when it is a terminal or the export has more than
//! [`PROGRESS_ABOVE`] entries.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::audit::{
    audit_decoded, parse_and_decode_line, verify_signatures_sequential, AuditOptions, AuditReport,
    CheckpointReport, DecodedEntry, ExportLine,
};
use proto::entry::Entry;
use proto::error::EntryError;
use proto::keys::PublicKey;
use serde_json::json;

use crate::clock;
use crate::commands::{controller_label, parse_vkey, short, trusted_key};
use crate::error::{Error, Result, EXIT_UNVERIFIED};
use crate::node::MAX_EXPORT;
use crate::{Ctx, Report};

/// Exports with more entries than this show progress even when stderr is not a terminal.
pub const PROGRESS_ABOVE: u64 = 10_000;
/// How often the progress line is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// Entries per signature batch inside a thread's chunk (progress is counted per batch).
const BATCH: usize = 4096;
/// Anomalies and checkpoints listed in the human report before summarising (--json has all).
const LIST_MAX: usize = 50;
/// With more than [`LIST_MAX`] checkpoints: the last ones listed (besides every failing one).
const LAST_SHOWN: usize = 5;

/// `consent audit`'s arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// `--file`: read the export from this file instead of the node.
    pub file: Option<&'a Path>,
    /// `--at`: reconstruct the states as of this time.
    pub at: Option<&'a str>,
    /// `--controller`: only this controller's states.
    pub controller: Option<&'a str>,
    /// `--vkey`: the node's checkpoint key, known independently.
    pub vkey: Option<&'a str>,
}

/// `consent audit (--node URL | --file EXPORT) [--at T] [--controller C] [--vkey K]`: exit 0 when
/// the export verifies, [`EXIT_UNVERIFIED`] (4) with the full report when anything is wrong.
///
/// # Errors
/// [`Error::Usage`] for bad arguments or an export over [`MAX_EXPORT`] bytes; [`Error::Io`] or
/// [`Error::BadFile`] for a file that cannot be read or is not an export; the node errors of
/// [`crate::node::NodeClient::export`], and [`Error::NodeUnreachable`] when the download breaks
/// off; [`Error::Unverified`] when the node's answer is not an export.
pub fn run(ctx: &Ctx, o: &Options<'_>) -> Result<Report> {
    let started = Instant::now();
    let trusted = o.vkey.map(trusted_key).transpose()?;
    let at = o.at.map(clock::parse_time).transpose()?;
    let controller = o.controller.map(|c| ctx.controller(c)).transpose()?;
    let progress = Rc::new(Progress::new(std::io::stderr().is_terminal(), started));

    let (source, bytes) = match o.file {
        Some(p) => {
            let name = p.display().to_string();
            let f = std::fs::File::open(p).map_err(|e| Error::io(format!("opening {name}"), e))?;
            let bytes = read_export(f, &progress, &|e| Error::io(format!("reading {name}"), e))?;
            (name, bytes)
        }
        None => {
            let node = ctx.node()?;
            let url = node.url().to_owned();
            let body = node.export()?;
            let bytes = read_export(body, &progress, &|e| Error::NodeUnreachable {
                url: url.clone(),
                message: format!("the export broke off: {e}"),
            })?;
            (format!("{url}/v1/log/export"), bytes)
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let parsed = parse(&String::from_utf8_lossy(&bytes), threads, &progress).map_err(|m| {
        if o.file.is_some() {
            Error::BadFile {
                path: source.clone(),
                message: m,
            }
        } else {
            Error::Unverified(format!("{source}: {m}"))
        }
    })?;
    drop(bytes);

    let entries = parsed.lines.len() as u64;
    if entries > PROGRESS_ABOVE {
        progress.enable();
    }
    // Without a pinned key the header's key is used; the report says which one was used.
    let header_key = parsed.header_vkey.as_deref().map(parse_vkey);
    let options = AuditOptions {
        at,
        controller,
        trusted: trusted
            .clone()
            .or_else(|| header_key.clone().and_then(Result::ok)),
    };
    // `SignatureCheck` is `dyn Fn + 'static`: the closure owns what it uses.
    let shown = Rc::clone(&progress);
    let check = move |all: &[Entry]| {
        let total = all.len();
        let bad = verify_signatures_parallel(all, threads, &|done| {
            shown.show(&format!(
                "verifying signatures: {done}/{total} ({threads} threads)"
            ));
        });
        shown.show_now("checking chains, the Merkle tree, checkpoints and fork proofs");
        bad
    };
    let mut parsed = parsed;
    let decoded = std::mem::take(&mut parsed.decoded);
    let mut report = audit_decoded(
        &parsed.lines,
        Some(decoded),
        &options,
        clock::now_ms(),
        &check,
    );
    progress.finish();

    // What the replay cannot see: unparsable lines, and a header key other than the pinned one.
    let mut first = parsed.bad_lines;
    match (&header_key, &parsed.header_vkey) {
        (Some(Err(e)), Some(h)) => {
            first.push(format!("the export's header key {h:?} does not parse: {e}"));
        }
        (Some(Ok(k)), Some(h)) => {
            if let Some(t) = trusted.as_ref().filter(|t| *t != k) {
                first.push(format!(
                    "the export's header names the checkpoint key {h}, but --vkey pins {}",
                    t.to_vkey()
                ));
            }
        }
        _ => {}
    }
    if !first.is_empty() {
        first.append(&mut report.anomalies);
        report.anomalies = first;
        report.ok = false;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (vkey, pinned) = match (&trusted, &parsed.header_vkey) {
        (Some(t), _) => (Some(t.to_vkey()), true),
        (None, h) => (h.clone(), false),
    };
    let aliases: HashMap<PublicKey, String> = ctx
        .config()
        .map(|c| c.aliases.into_iter().map(|(n, k)| (k, n)).collect())
        .unwrap_or_default();
    let text = human(&HumanView {
        report: &report,
        source: &source,
        origin: parsed.origin.as_deref(),
        exported_at: parsed.exported_at,
        vkey: vkey.as_deref(),
        pinned,
        show_states: at.is_some() || controller.is_some(),
        controller: controller.as_ref(),
        aliases: &aliases,
        seconds,
        threads,
    });
    let mut json = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
    if let Some(obj) = json.as_object_mut() {
        obj.insert("seconds".into(), json!(seconds));
        obj.insert("threads".into(), json!(threads));
        obj.insert("source".into(), json!(source));
        obj.insert("origin".into(), json!(parsed.origin));
        obj.insert("exported_at".into(), json!(parsed.exported_at));
        obj.insert("log_vkey".into(), json!(vkey));
        obj.insert("vkey_pinned".into(), json!(pinned));
    }
    let mut r = Report::ok(text, json);
    if !pinned && ctx.json {
        r.notes.push(
            "note: checkpoints were checked against the key in the export's header; pin the \
             node's key with --vkey"
                .to_owned(),
        );
    }
    if !report.ok {
        r.exit = EXIT_UNVERIFIED;
        r.notes.push(format!(
            "error: the export does not verify: {} anomal{}",
            report.anomalies.len(),
            if report.anomalies.len() == 1 {
                "y"
            } else {
                "ies"
            }
        ));
    }
    Ok(r)
}

/// Verifies every entry's signature on `threads` scoped threads, each on one contiguous chunk of
/// `entries` (in batches of 4,096, with [`verify_signatures_sequential`]), and returns every
/// failure with its index in `entries`, in order. `progress` is called on the calling thread
/// about every 0.25 s with the number of entries checked so far.
pub fn verify_signatures_parallel(
    entries: &[Entry],
    threads: usize,
    progress: &dyn Fn(usize),
) -> Vec<(usize, EntryError)> {
    if entries.is_empty() {
        return Vec::new();
    }
    let chunk = entries.len().div_ceil(threads.clamp(1, entries.len()));
    let done = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let waiter = std::thread::current();
    std::thread::scope(|s| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                let (done, finished, waiter) = (&done, &finished, &waiter);
                s.spawn(move || {
                    // Counted and woken even if this thread panics, so the wait below ends.
                    let _finish = Finished(finished, waiter);
                    let mut bad = Vec::new();
                    for (k, batch) in part.chunks(BATCH).enumerate() {
                        let base = n * chunk + k * BATCH;
                        bad.extend(
                            verify_signatures_sequential(batch)
                                .into_iter()
                                .map(|(i, e)| (base + i, e)),
                        );
                        done.fetch_add(batch.len(), Ordering::Relaxed);
                    }
                    bad
                })
            })
            .collect();
        while finished.load(Ordering::Acquire) < workers.len() {
            progress(done.load(Ordering::Relaxed));
            std::thread::park_timeout(TICK);
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Counts a worker as finished and wakes the waiting thread when dropped.
struct Finished<'a>(&'a AtomicUsize, &'a std::thread::Thread);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
        self.1.unpark();
    }
}

/// An export's lines, and what the replay needs besides them.
struct Parsed {
    lines: Vec<ExportLine>,
    /// One per entry line of `lines`, in order.
    decoded: Vec<DecodedEntry>,
    /// `line N: ...` for every line that is not an export line.
    bad_lines: Vec<String>,
    origin: Option<String>,
    header_vkey: Option<String>,
    exported_at: Option<u64>,
}

/// Parses an export line by line (like `proto::audit::parse_export`, but keeping every line that
/// parses and naming every one that does not, so that one damaged line does not hide the rest),
/// and decodes every entry line's bytes. The text is cut at line ends into one part per thread;
/// each part is parsed and decoded on its own thread.
///
/// # Errors
/// When the text is empty or its first line is not an export header: it is not an export.
fn parse(text: &str, threads: usize, progress: &Progress) -> std::result::Result<Parsed, String> {
    progress.show("parsing the export");
    // Cut points at line ends, so that every part holds whole lines.
    let parts = threads.clamp(1, 64);
    let mut cuts = vec![0usize];
    for k in 1..parts {
        let target = text.len() * k / parts;
        let from = target.max(*cuts.last().unwrap_or(&0));
        match text[from..].find('\n') {
            Some(i) => cuts.push(from + i + 1),
            None => break,
        }
    }
    cuts.push(text.len());
    cuts.dedup();
    type Part = (
        Vec<(usize, std::result::Result<ExportLine, String>)>,
        Vec<DecodedEntry>,
    );
    let results: Vec<Part> = std::thread::scope(|s| {
        let workers: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                s.spawn(move || {
                    // Line numbers from 1: the lines before this part, plus one.
                    let first = text[..a].bytes().filter(|&c| c == b'\n').count() + 1;
                    let mut out = Vec::new();
                    let mut decoded = Vec::new();
                    for (k, l) in text[a..b].lines().enumerate() {
                        if l.trim().is_empty() {
                            continue;
                        }
                        let parsed = parse_and_decode_line(l).map(|(line, d)| {
                            decoded.extend(d);
                            line
                        });
                        out.push((first + k, parsed));
                    }
                    (out, decoded)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut p = Parsed {
        lines: Vec::new(),
        decoded: Vec::new(),
        bad_lines: Vec::new(),
        origin: None,
        header_vkey: None,
        exported_at: None,
    };
    for (lines, decoded) in results {
        p.decoded.extend(decoded);
        for (n, parsed) in lines {
            match parsed {
                Ok(line) => {
                    if let ExportLine::Header {
                        origin,
                        log_vkey,
                        exported_at,
                        ..
                    } = &line
                    {
                        p.origin.get_or_insert_with(|| origin.clone());
                        p.header_vkey.get_or_insert_with(|| log_vkey.clone());
                        p.exported_at.get_or_insert(*exported_at);
                    }
                    p.lines.push(line);
                }
                Err(e) if p.lines.is_empty() && p.bad_lines.is_empty() => {
                    return Err(format!(
                        "not a consent-ledger export (line {n}: {e}); expected NDJSON from GET \
                         /v1/log/export or `consent-node export`"
                    ));
                }
                Err(e) => p
                    .bad_lines
                    .push(format!("line {n}: not an export line: {e}")),
            }
        }
    }
    if p.lines.is_empty() {
        return Err("empty: not a consent-ledger export".into());
    }
    Ok(p)
}

/// Reads a whole export into memory, drawing progress; `fail` maps a read error.
fn read_export(
    mut r: impl Read,
    progress: &Progress,
    fail: &dyn Fn(std::io::Error) -> Error,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut header_seen = false;
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() as u64 > MAX_EXPORT {
            return Err(Error::Usage(format!(
                "the export is larger than {MAX_EXPORT} bytes, the most this command reads into \
                 memory"
            )));
        }
        // The header's size says early whether this is a long replay.
        if !header_seen {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                header_seen = true;
                if let Ok(ExportLine::Header { size, .. }) = serde_json::from_slice(&buf[..end]) {
                    if size > PROGRESS_ABOVE {
                        progress.enable();
                    }
                }
            }
        }
        progress.show(&format!(
            "reading the export: {:.1} MB",
            buf.len() as f64 / 1e6
        ));
    }
    Ok(buf)
}

/// A progress line on standard error, redrawn in place (`\r`) at most every [`TICK`], and only
/// from the thread doing the work. The first draw waits one tick, so quick runs print nothing.
struct Progress {
    terminal: bool,
    enabled: Cell<bool>,
    last: Cell<Instant>,
    width: Cell<usize>,
}

impl Progress {
    fn new(terminal: bool, started: Instant) -> Progress {
        Progress {
            terminal,
            enabled: Cell::new(terminal),
            last: Cell::new(started),
            width: Cell::new(0),
        }
    }

    fn enable(&self) {
        self.enabled.set(true);
    }

    /// Draws `msg` if a tick has passed since the last draw.
    fn show(&self, msg: &str) {
        if self.enabled.get() && self.last.get().elapsed() >= TICK {
            self.draw(msg);
        }
    }

    /// Draws `msg` now if anything was drawn before (the next phase of a long run).
    fn show_now(&self, msg: &str) {
        if self.width.get() > 0 {
            self.draw(msg);
        }
    }

    fn draw(&self, msg: &str) {
        let pad = self.width.get().saturating_sub(msg.chars().count());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{msg}{:pad$}", "").and_then(|()| err.flush());
        self.width.set(msg.chars().count().max(1));
        self.last.set(Instant::now());
    }

    /// Clears the line (on a terminal) or ends it (in a log), if anything was drawn.
    fn finish(&self) {
        let width = self.width.replace(0);
        if width == 0 {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{:width$}\r", "")
        } else {
            writeln!(err)
        };
        let _ = err.flush();
    }
}

/// Everything the human report shows.
struct HumanView<'a> {
    report: &'a AuditReport,
    source: &'a str,
    origin: Option<&'a str>,
    exported_at: Option<u64>,
    vkey: Option<&'a str>,
    pinned: bool,
    show_states: bool,
    controller: Option<&'a PublicKey>,
    aliases: &'a HashMap<PublicKey, String>,
    seconds: f64,
    threads: usize,
}

fn human(v: &HumanView<'_>) -> String {
    let r = v.report;
    let mut out = Vec::new();
    out.push(format!(
        "audit of {}: {}",
        v.source,
        if r.ok {
            "OK".to_owned()
        } else {
            format!("DOES NOT VERIFY ({} anomalies)", r.anomalies.len())
        }
    ));
    out.push(format!(
        "origin       {}{}",
        v.origin.unwrap_or("(no header)"),
        v.exported_at
            .map(|t| format!(", exported at {}", clock::format_ms(t)))
            .unwrap_or_default()
    ));
    out.push(format!(
        "entries      {} ({} signatures verified)",
        r.entries, r.signatures_ok
    ));
    out.push(format!("subjects     {}", r.subjects));
    out.push(format!("controllers  {}", r.controllers));
    let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    out.push(format!(
        "kinds        {}",
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        }
    ));
    out.push(format!(
        "tree root    {}",
        r.tree_root
            .map_or_else(|| "none".to_owned(), |h| h.to_string())
    ));
    out.push(format!(
        "key          {}",
        match (v.vkey, v.pinned) {
            (Some(k), true) => format!("{k} (pinned with --vkey)"),
            (Some(k), false) => format!(
                "{k} (from the export's header: proves the export is consistent, not that this \
                 node signed it; pin the node's key with --vkey)"
            ),
            (None, _) => "none (the export has no header)".to_owned(),
        }
    ));
    checkpoints(&mut out, &r.checkpoints);
    if r.forked_subjects.is_empty() {
        out.push("forked       none".to_owned());
    } else {
        out.push(format!(
            "forked       {} subjects (every check for them denies)",
            r.forked_subjects.len()
        ));
        out.extend(r.forked_subjects.iter().map(|s| format!("  {s}")));
    }
    let cosigned = r
        .checkpoints
        .iter()
        .filter(|c| !c.cosigners.is_empty())
        .count();
    let witnesses: std::collections::BTreeSet<&String> =
        r.checkpoints.iter().flat_map(|c| &c.cosigners).collect();
    out.push(format!(
        "cosigned     {cosigned} checkpoints, by {} witnesses",
        witnesses.len()
    ));
    if r.split_views.is_empty() {
        out.push("split views  none".to_owned());
    } else {
        out.push(format!(
            "split views  {} (logs that signed two roots for one size)",
            r.split_views.len()
        ));
        out.extend(
            r.split_views
                .iter()
                .map(|s| format!("  {} at size {} (proof {})", s.origin, s.size, s.id)),
        );
    }
    if r.anomalies.is_empty() {
        out.push("anomalies    none".to_owned());
    } else {
        out.push(format!("anomalies    {}", r.anomalies.len()));
        out.extend(
            r.anomalies
                .iter()
                .take(LIST_MAX)
                .map(|a| format!("  - {a}")),
        );
        if r.anomalies.len() > LIST_MAX {
            out.push(format!(
                "  ... and {} more (--json lists every one)",
                r.anomalies.len() - LIST_MAX
            ));
        }
    }
    if v.show_states {
        let label = |k: &PublicKey| controller_label(k, v.aliases.get(k).map(String::as_str));
        out.push(format!(
            "states at {}{}: {}",
            clock::format_ms(r.judged_at),
            v.controller
                .map(|c| format!(", controller {}", label(c)))
                .unwrap_or_default(),
            r.states.len()
        ));
        for s in &r.states {
            out.push(format!(
                "  {}  {}  {}  {}{}",
                s.subject,
                label(&s.controller),
                s.purpose,
                s.status,
                s.seq.map(|q| format!(" (seq {q})")).unwrap_or_default()
            ));
        }
    }
    out.push(format!(
        "time         {:.2} s ({} threads)",
        v.seconds, v.threads
    ));
    out.join("\n")
}

/// The checkpoints: every one when there are few; otherwise the failing ones and the last few.
fn checkpoints(out: &mut Vec<String>, cps: &[CheckpointReport]) {
    let good = |c: &CheckpointReport| c.signature_ok && c.matches_log;
    let bad = cps.iter().filter(|c| !good(c)).count();
    out.push(format!(
        "checkpoints  {}{}",
        cps.len(),
        if bad == 0 {
            ", each signed by the key and matching the log".to_owned()
        } else {
            format!(", {bad} failing")
        }
    ));
    let line = |c: &CheckpointReport| {
        let mut why = Vec::new();
        if !c.signature_ok {
            why.push("SIGNATURE DOES NOT VERIFY");
        }
        if !c.matches_log {
            why.push("ROOT IS NOT THE LOG'S");
        }
        format!(
            "  size {:<8} root {}  {}",
            c.size,
            short(&c.root.to_string()),
            if why.is_empty() {
                "ok".to_owned()
            } else {
                why.join(", ")
            }
        )
    };
    if cps.len() <= LIST_MAX {
        out.extend(cps.iter().map(line));
        return;
    }
    let shown: Vec<&CheckpointReport> = cps
        .iter()
        .enumerate()
        .filter(|(i, c)| !good(c) || *i + LAST_SHOWN >= cps.len())
        .map(|(_, c)| c)
        .take(LIST_MAX)
        .collect();
    let hidden = cps.len() - shown.len();
    let all_ok = shown.iter().filter(|c| !good(c)).count() == bad;
    out.extend(shown.into_iter().map(line));
    out.push(format!(
        "  ... and {hidden} more{} (--json lists every one)",
        if all_ok { ", all ok" } else { "" }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tests::chain;

    #[test]
    fn parallel_signature_check_names_the_same_entries_as_the_sequential_one() {
        let mut entries = chain(23).entries;
        for i in [0, 7, 8, 22] {
            entries[i].content.issued_at += 1;
        }
        let want = verify_signatures_sequential(&entries);
        assert_eq!(
            want.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 7, 8, 22]
        );
        for threads in [1, 2, 3, 5, 23, 64] {
            let got = verify_signatures_parallel(&entries, threads, &|_| {});
            assert_eq!(got, want, "{threads} threads");
        }
        assert!(verify_signatures_parallel(&[], 4, &|_| {}).is_empty());
        assert!(verify_signatures_parallel(&entries[1..7], 4, &|_| {}).is_empty());
    }

    #[test]
    fn many_checkpoints_are_summarised_but_failing_ones_are_always_shown() {
        let cp = |size: u64, ok: bool| CheckpointReport {
            size,
            root: proto::keys::Hash::from_bytes([size as u8; 32]),
            signature_ok: ok,
            matches_log: true,
            cosigners: vec![],
        };
        let few: Vec<_> = (1..=3).map(|n| cp(n, n != 2)).collect();
        let mut out = Vec::new();
        checkpoints(&mut out, &few);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out[0].contains("1 failing"), "{out:?}");
        assert!(out[2].contains("SIGNATURE DOES NOT VERIFY"), "{out:?}");
        let many: Vec<_> = (1..=80).map(|n| cp(n, n != 7)).collect();
        let mut out = Vec::new();
        checkpoints(&mut out, &many);
        assert_eq!(out.len(), 1 + 1 + LAST_SHOWN + 1, "{out:?}");
        assert!(out[1].contains("size 7 "), "{out:?}");
        assert!(out[6].contains("size 80 "), "{out:?}");
        assert!(out[7].contains("74 more, all ok"), "{out:?}");
    }

    #[test]
    fn damaged_lines_are_named_and_a_non_export_is_refused() {
        let quiet = Progress::new(false, Instant::now());
        let text = "{\"type\":\"header\",\"format\":\"consent-ledger-export/v1\",\"origin\":\"o\",\
                    \"log_vkey\":\"k\",\"size\":0,\"exported_at\":5}\n\
                    {\"type\":\"entry\",\"log_index\":0,\"hex\"\n\n\
                    {\"type\":\"end\",\"entries\":0}\n";
        // The same answer however the text is cut between threads.
        for threads in 1..=6 {
            let p = parse(text, threads, &quiet).expect("an export");
            assert_eq!(p.lines.len(), 2);
            assert_eq!(p.bad_lines.len(), 1);
            assert!(p.bad_lines[0].starts_with("line 2:"), "{:?}", p.bad_lines);
            assert_eq!(p.header_vkey.as_deref(), Some("k"));
            assert_eq!(p.exported_at, Some(5));
            assert!(parse("{\"decision\":\"allow\"}\n", threads, &quiet).is_err());
            assert!(parse("\n\n", threads, &quiet).is_err());
        }
    }
}
