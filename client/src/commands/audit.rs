//! `consent audit`: replay a node's whole export (`GET /v1/log/export`, or a file written by
//! `consent-node export`) with `proto::audit::Replay`, and report every anomaly.
//!
//! The export is split into parts of whole lines: a file into byte ranges sized to it (at least
//! eight per worker, 128 KiB to 2.5 MB), each read by a worker itself; a node's answer into parts
//! of 512 KiB by a reader thread as it arrives, so that the replay runs while the node is still
//! sending. One worker per available core takes the next part, parses and decodes its lines and
//! verifies its entries' signatures in one batch (signer keys cached per worker). The calling
//! thread feeds the finished parts, in order, to the replay (log indices, chains, states, the
//! Merkle tree), so the replay overlaps with the workers; at most two parts per worker wait for
//! it. The states are then computed on all cores. A progress line is drawn on standard error, in
//! place, when it is a terminal or the export has more than [`PROGRESS_ABOVE`] entries.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proto::audit::{
    parse_and_decode_line, verify_decoded, AuditOptions, AuditReport, CheckpointReport,
    DecodedEntry, ExportLine, Replay, StateLine, States,
};
use proto::error::EntryError;
use proto::keys::PublicKey;
use proto::sig::KeyCache;

use crate::clock;
use crate::commands::{controller_label, parse_vkey, short, trusted_key};
use crate::error::{Error, Result, EXIT_UNVERIFIED};
use crate::node::MAX_EXPORT;
use crate::{Ctx, Report};

/// Exports with more entries than this show progress even when stderr is not a terminal.
pub const PROGRESS_ABOVE: u64 = 10_000;
/// How often the progress line is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// About how many bytes of the export one worker takes at a time (about 4,000 entry lines: one
/// signature batch).
pub const PART_BYTES: usize = 5 << 19;
/// The part size of an export read from a node (its length is not known beforehand).
const STREAM_PART_BYTES: usize = 1 << 19;
/// The smallest part (about 200 entry lines).
const MIN_PART_BYTES: usize = 1 << 17;

/// The part size for an export of `len` bytes: at least eight parts per worker, so that the
/// last parts do not leave a core idle, between [`MIN_PART_BYTES`] and [`PART_BYTES`].
fn part_size(len: u64, threads: usize) -> usize {
    let per = len / (8 * threads.max(1) as u64);
    usize::try_from(per)
        .unwrap_or(PART_BYTES)
        .clamp(MIN_PART_BYTES, PART_BYTES)
}
/// Signer keys each worker keeps decoded.
const KEYS_CACHED: usize = 1 << 16;
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
    let progress = Progress::new(std::io::stderr().is_terminal(), started);

    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // Checkpoints are checked against the pinned key, else against the header's (in the replay).
    let options = AuditOptions {
        at,
        controller,
        trusted: trusted.clone(),
    };
    // A file is read by the workers, each its own parts; a node's answer is cut into parts by a
    // reader thread as it arrives.
    let (source, replayed) = match o.file {
        Some(p) => {
            let name = p.display().to_string();
            let file =
                std::fs::File::open(p).map_err(|e| Error::io(format!("opening {name}"), e))?;
            let len = file
                .metadata()
                .map_err(|e| Error::io(format!("reading {name}"), e))?
                .len();
            if len > MAX_EXPORT {
                return Err(too_large());
            }
            let input = Input::File {
                file: &file,
                len,
                part_bytes: part_size(len, threads) as u64,
            };
            let replayed = replay(&input, options, threads, &progress).map_err(|e| match e {
                Failure::Read(e) => Error::io(format!("reading {name}"), e),
                Failure::TooLarge => too_large(),
                Failure::NotExport(m) => Error::BadFile {
                    path: name.clone(),
                    message: m,
                },
            })?;
            (name, replayed)
        }
        None => {
            let node = ctx.node()?;
            let url = node.url().to_owned();
            let body = node.export()?;
            let source = format!("{url}/v1/log/export");
            // Replayed as it arrives: a reader thread cuts the answer into parts.
            let replayed = replay_reader(
                body,
                STREAM_PART_BYTES,
                MAX_EXPORT,
                options,
                threads,
                &progress,
            )
            .map_err(|e| match e {
                Failure::Read(e) => Error::NodeUnreachable {
                    url: url.clone(),
                    message: format!("the export broke off: {e}"),
                },
                Failure::TooLarge => too_large(),
                Failure::NotExport(m) => Error::Unverified(format!("{source}: {m}")),
            })?;
            (source, replayed)
        }
    };
    progress.show_now("checking the Merkle tree, checkpoints and fork proofs");
    let (mut report, states) = replayed.replay.finish_checks(clock::now_ms());
    report.states = state_lines(&states, threads);
    // Freeing every subject's state takes a while on a large ledger and nobody waits for it.
    std::thread::spawn(move || drop(states));
    progress.finish();
    let parsed = replayed.header;
    let header_key = parsed.header_vkey.as_deref().map(parse_vkey);

    // What the replay cannot see: unparsable lines, and a header key other than the pinned one.
    let mut first = replayed.bad_lines;
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
    // Serialised straight from the report (a large ledger has a state line per subject and
    // purpose), and only when asked for.
    let json_text = if ctx.json {
        let view = JsonView {
            report: &report,
            seconds,
            threads,
            source: &source,
            origin: parsed.origin.as_deref(),
            exported_at: parsed.exported_at,
            log_vkey: vkey.as_deref(),
            vkey_pinned: pinned,
        };
        Some(
            serde_json::to_string_pretty(&view)
                .map_err(|e| Error::Unverified(format!("serialising the report: {e}")))?,
        )
    } else {
        None
    };
    let mut r = Report::ok(text, serde_json::Value::Null);
    r.json_text = json_text;
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

/// Every subject's state lines, computed on `threads` threads, in subject order.
fn state_lines(states: &States, threads: usize) -> Vec<StateLine> {
    let n = states.len();
    let per = n.div_ceil(threads.clamp(1, n.max(1))).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..n)
            .step_by(per)
            .map(|a| s.spawn(move || states.lines(a..(a + per).min(n))))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// What the export's header says (the first header line, if any).
#[derive(Debug, Default)]
struct Header {
    origin: Option<String>,
    header_vkey: Option<String>,
    exported_at: Option<u64>,
}

/// An export replayed, before [`Replay::finish`].
struct Replayed {
    replay: Replay,
    header: Header,
    /// `line N: ...` for every line that is not an export line.
    bad_lines: Vec<String>,
}

/// One part of the export, parsed, decoded and with its signatures checked by a worker.
struct Part {
    /// Lines in the part (every part but the last ends at a line end).
    lines: usize,
    /// Each non-blank line: its position in the part (from 0), and what it parsed to.
    parsed: Vec<(usize, std::result::Result<ExportLine, String>)>,
    /// One per entry line of `parsed`, in order: the decoded entry and its signature's verdict.
    entries: Vec<(DecodedEntry, std::result::Result<(), EntryError>)>,
}

/// Parses a part's lines (keeping every line that parses and naming every one that does not,
/// so that one damaged line does not hide the rest), decodes its entry lines and checks their
/// signatures in one batch.
fn work(text: &str, cache: &mut KeyCache) -> Part {
    let mut lines = 0;
    let mut parsed = Vec::new();
    let mut decoded = Vec::new();
    for (k, l) in text.lines().enumerate() {
        lines = k + 1;
        if l.trim().is_empty() {
            continue;
        }
        parsed.push((
            k,
            parse_and_decode_line(l).map(|(line, d)| {
                decoded.extend(d);
                line
            }),
        ));
    }
    let verdicts = verify_decoded(&decoded, cache);
    Part {
        lines,
        parsed,
        entries: decoded.into_iter().zip(verdicts).collect(),
    }
}

/// Why an export could not be replayed.
#[derive(Debug)]
enum Failure {
    /// Reading it failed.
    Read(std::io::Error),
    /// It is larger than [`MAX_EXPORT`].
    TooLarge,
    /// It is not an export (empty, or its first line is not an export line).
    NotExport(String),
}

/// Where an export's bytes are.
enum Input<'a> {
    /// In a file of `len` bytes, read part by part by the workers: part k holds the lines that
    /// begin in bytes `[k × part_bytes, (k + 1) × part_bytes)`.
    File {
        file: &'a std::fs::File,
        len: u64,
        part_bytes: u64,
    },
    /// Arriving over the network, cut into parts by [`Stream::fill`] as it comes.
    Stream(&'a Stream),
}

/// An export arriving over the network: a reader thread ([`Stream::fill`]) cuts it into parts of
/// whole lines as it comes, and the workers take them ([`Input::part`]), so that the replay runs
/// while the node is still sending.
struct Stream {
    state: Mutex<StreamState>,
    changed: Condvar,
}

#[derive(Default)]
struct StreamState {
    /// Parts read so far (a worker takes its part out).
    parts: Vec<Option<String>>,
    /// The stream has ended (or failed, or was closed).
    done: bool,
    /// Why it failed; handed to the first worker that finds it.
    error: Option<Failure>,
    /// The replay stopped: the reader stops too.
    closed: bool,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            state: Mutex::new(StreamState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `r` to its end in parts of about `part_bytes` whole lines (at most `max` bytes in
    /// all), making each available as it is cut.
    fn fill(&self, mut r: impl Read, part_bytes: usize, max: u64) {
        let mut buf: Vec<u8> = Vec::with_capacity(part_bytes + (1 << 16));
        let mut chunk = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let end = loop {
            if self.lock().closed {
                break None;
            }
            let n = match r.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(Failure::Read(e)),
            };
            total += n as u64;
            if total > max {
                break Some(Failure::TooLarge);
            }
            let before = buf.len();
            buf.extend_from_slice(&chunk[..n]);
            // Only the bytes just read are searched for a line end, so that one long line costs
            // a single pass, not one per read.
            if buf.len() >= part_bytes {
                if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
                    let rest = buf.split_off(before + i + 1);
                    let part = std::mem::replace(&mut buf, rest);
                    self.push(utf8(part));
                }
            }
        };
        let mut st = self.lock();
        if end.is_none() && !buf.is_empty() {
            st.parts.push(Some(utf8(buf)));
        }
        st.error = end;
        st.done = true;
        drop(st);
        self.changed.notify_all();
    }

    fn push(&self, part: String) {
        self.lock().parts.push(Some(part));
        self.changed.notify_all();
    }

    /// Part `k` once it is cut; `None` when the stream ended before it.
    fn take(&self, k: usize) -> std::result::Result<Option<String>, Failure> {
        let mut st = self.lock();
        while st.parts.len() <= k && !st.done && !st.closed {
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(p) = st.parts.get_mut(k) {
            return Ok(p.take());
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Stops the reader at its next read, and workers waiting for parts (the replay is over).
    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

impl Input<'_> {
    /// How many parts there are (for a stream: as many as it will bring).
    fn parts(&self) -> usize {
        match self {
            Input::File {
                len, part_bytes, ..
            } => usize::try_from(len.div_ceil(*part_bytes.max(&1)).max(1)).unwrap_or(usize::MAX),
            Input::Stream(_) => usize::MAX,
        }
    }

    /// Part `k`'s text; `None` past the last part.
    fn part(&self, k: usize) -> std::result::Result<Option<Cow<'_, str>>, Failure> {
        if k >= self.parts() {
            return Ok(None);
        }
        match self {
            Input::Stream(stream) => stream.take(k).map(|p| p.map(Cow::Owned)),
            Input::File {
                file,
                len,
                part_bytes,
            } => {
                let from = (k as u64).saturating_mul(*part_bytes).min(*len);
                let to = from.saturating_add(*part_bytes).min(*len);
                let read = || -> std::io::Result<Vec<u8>> {
                    let start = line_start(file, *len, from)?;
                    let end = line_start(file, *len, to)?;
                    let mut bytes =
                        vec![0u8; usize::try_from(end.saturating_sub(start)).unwrap_or(0)];
                    std::os::unix::fs::FileExt::read_exact_at(*file, &mut bytes, start)?;
                    Ok(bytes)
                };
                read()
                    .map(|b| Some(Cow::Owned(utf8(b))))
                    .map_err(Failure::Read)
            }
        }
    }
}

/// The offset of the first line of `file` that begins at or after `at` (`len` if none).
fn line_start(file: &std::fs::File, len: u64, at: u64) -> std::io::Result<u64> {
    if at == 0 || at >= len {
        return Ok(at.min(len));
    }
    // A line begins at `at` when the byte before it ends a line.
    let mut pos = at - 1;
    let mut buf = [0u8; 4096];
    while pos < len {
        let n = usize::try_from((len - pos).min(buf.len() as u64)).unwrap_or(buf.len());
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..n], pos)?;
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    Ok(len)
}

/// Replays an export: `threads` workers read, parse, decode and verify its parts while this
/// thread feeds their results, in order, to a [`Replay`] and draws progress.
///
/// # Errors
/// [`Failure::Read`] when a part cannot be read; [`Failure::NotExport`] when the export is empty
/// or its first line is not an export line.
fn replay(
    input: &Input<'_>,
    options: AuditOptions,
    threads: usize,
    progress: &Progress,
) -> std::result::Result<Replayed, Failure> {
    let parts = input.parts();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Parts replayed so far: a worker takes part k only once k < replayed + ahead, so that at
    // most `ahead` parts wait in memory for the replay.
    let replayed = (Mutex::new(0usize), Condvar::new());
    let ahead = 2 * threads.max(1);
    let mut out = Replayed {
        replay: Replay::new(options),
        header: Header::default(),
        bad_lines: Vec::new(),
    };
    let mut total = None;
    let mut any = false;
    progress.show("reading the export");
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, std::result::Result<Part, Failure>)>();
        for _ in 0..threads.clamp(1, parts) {
            let (tx, next, stop, replayed) = (tx.clone(), &next, &stop, &replayed);
            s.spawn(move || {
                // A worker that panics stops the others, so that nobody waits for its part; the
                // scope then passes the panic on.
                let _stop = StopOnPanic(stop);
                let mut cache = KeyCache::new(KEYS_CACHED);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= parts || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (count, moved) = replayed;
                    let mut done = count.lock().unwrap_or_else(PoisonError::into_inner);
                    while k >= *done + ahead && !stop.load(Ordering::Relaxed) {
                        done = moved
                            .wait_timeout(done, TICK)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    drop(done);
                    let part = match input.part(k) {
                        Ok(Some(text)) => Ok(work(&text, &mut cache)),
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    let failed = part.is_err();
                    if tx.send((k, part)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Parts finish out of order; they are replayed in order.
        let mut waiting: BTreeMap<usize, std::result::Result<Part, Failure>> = BTreeMap::new();
        let mut wanted = 0;
        let mut line = 1;
        let result = 'parts: loop {
            match rx.recv_timeout(TICK) {
                Ok((k, part)) => {
                    waiting.insert(k, part);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Every worker is done (or one panicked: the scope then panics too). A stream
                // that failed hands its error to whichever worker asked first past its end,
                // which may not be the part replayed next.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break std::mem::take(&mut waiting)
                        .into_values()
                        .find_map(std::result::Result::err)
                        .map_or(Ok(()), Err);
                }
            }
            while let Some(part) = waiting.remove(&wanted) {
                let fed = part.and_then(|part| {
                    feed(&mut out, part, &mut line, &mut any, &mut total)
                        .map_err(Failure::NotExport)
                });
                if let Err(e) = fed {
                    break 'parts Err(e);
                }
                wanted += 1;
                *replayed.0.lock().unwrap_or_else(PoisonError::into_inner) = wanted;
                replayed.1.notify_all();
            }
            if total.is_some_and(|t| t > PROGRESS_ABOVE) {
                progress.enable();
            }
            progress.show(&match total {
                Some(t) => format!(
                    "auditing: {}/{t} entries ({threads} threads)",
                    out.replay.entries()
                ),
                None => format!("auditing: {} entries", out.replay.entries()),
            });
        };
        stop.store(true, Ordering::Relaxed);
        replayed.1.notify_all();
        if let Input::Stream(stream) = input {
            stream.close();
        }
        result
    })?;
    if !any {
        return Err(Failure::NotExport(
            "empty: not a consent-ledger export".into(),
        ));
    }
    Ok(out)
}

/// [`replay`] of an export read from `r` as it arrives: a reader thread cuts it into parts of
/// about `part_bytes` (at most `max` bytes in all) while the workers replay them.
///
/// # Errors
/// As [`replay`]; a read error or an export larger than `max` fails it.
fn replay_reader(
    r: impl Read + Send,
    part_bytes: usize,
    max: u64,
    options: AuditOptions,
    threads: usize,
    progress: &Progress,
) -> std::result::Result<Replayed, Failure> {
    let stream = Stream::new();
    std::thread::scope(|s| {
        s.spawn(|| stream.fill(r, part_bytes, max));
        // `replay` closes the stream when it ends, which stops the reader.
        replay(&Input::Stream(&stream), options, threads, progress)
    })
}

/// Sets its flag when dropped during a panic.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Feeds one worker's part to the replay. `line` is the number of the part's first line, `any`
/// whether an export line was seen before it, `total` the header's entry count.
///
/// # Errors
/// When the export's first non-blank line is not an export line.
fn feed(
    out: &mut Replayed,
    part: Part,
    line: &mut usize,
    any: &mut bool,
    total: &mut Option<u64>,
) -> std::result::Result<(), String> {
    let mut entries = part.entries.into_iter();
    for (k, parsed) in part.parsed {
        let n = *line + k;
        match parsed {
            Ok(l) => {
                if let ExportLine::Header {
                    origin,
                    log_vkey,
                    exported_at,
                    size,
                    ..
                } = &l
                {
                    let h = &mut out.header;
                    h.origin.get_or_insert_with(|| origin.clone());
                    h.header_vkey.get_or_insert_with(|| log_vkey.clone());
                    h.exported_at.get_or_insert(*exported_at);
                    total.get_or_insert(*size);
                }
                *any = true;
                match l {
                    ExportLine::Entry { log_index, hex } => match entries.next() {
                        Some((d, signature)) => out.replay.entry(log_index, d, signature),
                        None => out.replay.line(ExportLine::Entry { log_index, hex }),
                    },
                    other => out.replay.line(other),
                }
            }
            Err(e) if !*any && out.bad_lines.is_empty() => {
                return Err(format!(
                    "not a consent-ledger export (line {n}: {e}); expected NDJSON from GET \
                     /v1/log/export or `consent-node export`"
                ));
            }
            Err(e) => out
                .bad_lines
                .push(format!("line {n}: not an export line: {e}")),
        }
    }
    *line += part.lines;
    Ok(())
}

/// The error for an export over [`MAX_EXPORT`] bytes.
fn too_large() -> Error {
    Error::Usage(format!(
        "the export is larger than {MAX_EXPORT} bytes, the most this command reads into memory"
    ))
}

/// Bytes as text: valid UTF-8 as it is; anything else with its bad bytes replaced (the lines
/// holding them then fail to parse, each named).
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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

/// The `--json` report: the replay's report and what the command adds.
#[derive(serde::Serialize)]
struct JsonView<'a> {
    #[serde(flatten)]
    report: &'a AuditReport,
    seconds: f64,
    threads: usize,
    source: &'a str,
    origin: Option<&'a str>,
    exported_at: Option<u64>,
    log_vkey: Option<&'a str>,
    vkey_pinned: bool,
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

    /// A reader that gives at most `.1` bytes at a time, as a network connection may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// [`replay`] of `text` arriving as a stream, a few bytes at a time, cut into parts of about
    /// `part_bytes`.
    fn replay_text(
        text: &str,
        options: AuditOptions,
        threads: usize,
        part_bytes: usize,
        progress: &Progress,
    ) -> std::result::Result<Replayed, Failure> {
        replay_reader(
            Trickle(text.as_bytes(), 97),
            part_bytes,
            MAX_EXPORT,
            options,
            threads,
            progress,
        )
    }

    /// An export of `chain(n)` with the entries at `tampered` changed after signing.
    fn export(n: u64, tampered: &[usize]) -> String {
        let mut entries = chain(n).entries;
        for &i in tampered {
            entries[i].content.issued_at += 1;
        }
        let mut text = format!(
            "{{\"type\":\"header\",\"format\":\"consent-ledger-export/v1\",\"origin\":\"o\",\
             \"log_vkey\":\"k\",\"size\":{n},\"exported_at\":5}}\n"
        );
        for (i, e) in entries.iter().enumerate() {
            text += &format!(
                "{{\"type\":\"entry\",\"log_index\":{i},\"hex\":\"{}\"}}\n",
                hex::encode(e.to_bytes())
            );
        }
        text + &format!("{{\"type\":\"end\",\"entries\":{n}}}\n")
    }

    #[test]
    fn the_parallel_replay_reports_what_the_sequential_audit_reports() {
        let quiet = Progress::new(false, Instant::now());
        for tampered in [vec![], vec![0], vec![7, 8, 22]] {
            let text = export(23, &tampered);
            let lines = proto::audit::parse_export(&text).expect("an export");
            let want = proto::audit::audit(
                &lines,
                &AuditOptions::default(),
                9,
                &proto::audit::verify_signatures_sequential,
            );
            let bad_sigs = want
                .anomalies
                .iter()
                .filter(|a| a.contains("signature"))
                .count();
            assert_eq!(bad_sigs, tampered.len(), "{:?}", want.anomalies);
            assert_eq!(want.signatures_ok, 23 - tampered.len() as u64);
            // However the text is cut and however many workers take it.
            for part_bytes in [1, 700, 3000, 1 << 20] {
                for threads in [1, 2, 3, 64] {
                    let got =
                        replay_text(&text, AuditOptions::default(), threads, part_bytes, &quiet)
                            .expect("an export");
                    assert!(got.bad_lines.is_empty());
                    let mut got = got.replay.finish(9);
                    let mut want = want.clone();
                    got.anomalies.sort();
                    want.anomalies.sort();
                    assert_eq!(got, want, "{part_bytes} bytes a part, {threads} threads");
                }
            }
        }
    }

    #[test]
    fn a_file_read_part_by_part_replays_as_the_same_text_in_memory() {
        let quiet = Progress::new(false, Instant::now());
        let text =
            export(23, &[4]) + "\n{\"type\":\"entry\",\"log_index\":23,\"hex\":\"zz\"}\nnot json\n";
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("export.ndjson");
        std::fs::write(&path, &text).expect("written");
        let file = std::fs::File::open(&path).expect("opened");
        let len = text.len() as u64;
        let want =
            replay_text(&text, AuditOptions::default(), 1, 1 << 20, &quiet).expect("an export");
        let want_lines = want.bad_lines.clone();
        let want = want.replay.finish(9);
        assert!(
            want.anomalies.iter().any(|a| a.contains("does not decode")),
            "{want:?}"
        );
        assert_eq!(want_lines.len(), 1, "{want_lines:?}");
        // Parts smaller than a line, about a line, and larger than the file.
        for part_bytes in [1, 7, 300, 1000, 4096, len, 10 * len] {
            for threads in [1, 2, 5] {
                let input = Input::File {
                    file: &file,
                    len,
                    part_bytes,
                };
                let got =
                    replay(&input, AuditOptions::default(), threads, &quiet).expect("an export");
                assert_eq!(got.bad_lines, want_lines, "{part_bytes} bytes a part");
                assert_eq!(got.replay.finish(9), want, "{part_bytes} bytes a part");
            }
        }
        // A file that is shorter than it was said to be is a read error, not a verdict.
        let input = Input::File {
            file: &file,
            len: len + 10,
            part_bytes: 1000,
        };
        assert!(matches!(
            replay(&input, AuditOptions::default(), 2, &quiet),
            Err(Failure::Read(_))
        ));
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

    /// A reader that fails once its bytes are out, as a connection that breaks off.
    struct BreaksOff<'a>(&'a [u8]);

    impl Read for BreaksOff<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = self.0.len().min(buf.len()).min(50);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_stream_that_breaks_off_or_grows_too_large_fails_without_a_verdict() {
        let quiet = Progress::new(false, Instant::now());
        let text = export(23, &[]);
        let half = &text.as_bytes()[..text.len() / 2];
        for (max, broken) in [(MAX_EXPORT, true), (text.len() as u64 / 3, false)] {
            for threads in [1, 2, 4] {
                let options = AuditOptions::default();
                let got = if broken {
                    replay_reader(BreaksOff(half), 300, max, options, threads, &quiet)
                } else {
                    let r = Trickle(text.as_bytes(), 40);
                    replay_reader(r, 300, max, options, threads, &quiet)
                };
                match got {
                    Err(Failure::Read(_)) => assert!(broken),
                    Err(Failure::TooLarge) => assert!(!broken),
                    _ => panic!("no failure ({broken}, {threads} threads)"),
                }
            }
        }
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
            for part_bytes in [1, 10, 100, 1000] {
                let p = replay_text(text, AuditOptions::default(), threads, part_bytes, &quiet)
                    .expect("an export");
                assert_eq!(p.bad_lines.len(), 1);
                assert!(p.bad_lines[0].starts_with("line 2:"), "{:?}", p.bad_lines);
                assert_eq!(p.header.header_vkey.as_deref(), Some("k"));
                assert_eq!(p.header.exported_at, Some(5));
                let r = p.replay.finish(9);
                assert_eq!(r.entries, 0);
                let other = "{\"decision\":\"allow\"}\n";
                let opts = AuditOptions::default;
                assert!(replay_text(other, opts(), threads, part_bytes, &quiet).is_err());
                assert!(replay_text("\n\n", opts(), threads, part_bytes, &quiet).is_err());
                assert!(replay_text("", opts(), threads, part_bytes, &quiet).is_err());
            }
        }
    }
}
