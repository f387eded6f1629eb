//! End-to-end test harness for consent-ledger: starts real `consent-node` processes on
//! `127.0.0.1:0` with temporary data directories and talks to them over HTTP, like a brand or a
//! customer's CLI would.
//!
//! Every wait has a deadline ([`WAIT`]) and panics with a message that says what it waited for.
//! A [`TestNode`] keeps the node's stderr in a file and prints its tail when it is dropped while
//! the test is panicking, so a failing test shows the node's side of the story.
//!
//! # Layout
//! - [`node_binary`]: finds (and brings up to date) the `consent-node` binary cargo built.
//! - [`TestNode`], [`NodeOptions`]: one node process; HTTP helpers; SIGTERM, kill -9, restart.
//! - [`Client`]: a cloneable HTTP client for one node process, for submitter threads.
//! - [`Reply`]: a status, content type and body, with JSON helpers and the error-body contract.
//! - [`EventStream`], [`SseEvent`]: a blocking server-sent-events reader with deadlines.
//! - [`Chain`], [`key`], [`consent`], [`sign_as`]: build and sign customers' chains (like
//!   `proto/tests/common`), with `issued_at` from the real clock; forge entries for bad inputs.
//! - [`now_ms`], [`rfc3339`], [`store_check`], [`signal`], [`write_file`]: time, the offline
//!   store check, signals to a node from another thread, fixtures.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::api::{ChainResponse, CheckResponse, NodeInfo, SubmitResponse};
use proto::entry::{recovery_commitment, Body, Consent, Content, Entry, Method, Rotation};
use proto::keys::{Hash, PublicKey, SecretKey};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long any single wait may take before the test fails (startup, exit, HTTP, events).
pub const WAIT: Duration = Duration::from_secs(20);

/// Lines of the node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// The `consent-node` binary of this workspace, built once per test process.
///
/// Cargo sets `CARGO_BIN_EXE_<name>` only for binaries of the package under test, so the path is
/// derived from this test executable (`<target>/<profile>/deps/<test>-<hash>` puts the node at
/// `<target>/<profile>/consent-node`). On first use it runs `cargo build -p consent-node` for the
/// same target dir and profile, so `cargo test -p tests` alone never runs a missing or stale node
/// (a no-op build takes a fraction of a second). If cargo cannot be started at all but the binary
/// exists, that binary is used.
pub fn node_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_node_binary)
}

fn build_node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let parent = exe.parent().expect("the test executable's directory");
    let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().expect("the profile directory above deps/")
    } else {
        parent
    };
    let target_dir = profile_dir
        .parent()
        .expect("the target directory above the profile directory");
    let bin = profile_dir.join(format!("consent-node{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "consent-node",
        "--bin",
        "consent-node",
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .arg("--target-dir")
    .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "building consent-node failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if bin.exists() => {
            eprintln!(
                "tests: cannot run cargo ({e}); using the existing {}",
                bin.display()
            );
        }
        Err(e) => panic!(
            "cannot run cargo to build consent-node ({e}) and {} does not exist",
            bin.display()
        ),
    }
    assert!(
        bin.exists(),
        "cargo built consent-node but {} does not exist",
        bin.display()
    );
    bin
}

/// Runs `consent-node check --data-dir DIR` (plus `extra` arguments) and returns its output.
pub fn store_check(data_dir: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(node_binary())
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("CONSENT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning consent-node check");
    let deadline = Instant::now() + WAIT;
    // Drain both pipes in threads so a chatty check cannot block on a full pipe.
    let mut so = child.stdout.take().expect("check stdout");
    let mut se = child.stderr.take().expect("check stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = wait_until_exit(&mut child, deadline).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "consent-node check --data-dir {} did not finish within {WAIT:?}",
            data_dir.display()
        )
    });
    Output {
        status,
        stdout: t_out.join().expect("check stdout reader"),
        stderr: t_err.join().expect("check stderr reader"),
    }
}

/// Sends signal `name` (`TERM`, `KILL`, ...) to process `pid` with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(sent.success(), "kill -{name} {pid} failed: {sent}");
}

/// Polls `child` until it exits or `deadline` passes.
fn wait_until_exit(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for a child process: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Milliseconds since the Unix epoch, from the real clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Formats ms since the Unix epoch as RFC 3339 in UTC with milliseconds,
/// e.g. `2026-01-01T00:00:00.000Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP replies
// ---------------------------------------------------------------------------------------------

/// An HTTP answer: status, content type and body text.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The Content-Type header, if any.
    pub content_type: Option<String>,
    /// Every response header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}); status {}, content type {:?}, body: {:?}",
                self.status, self.content_type, self.body
            )
        })
    }

    /// The body parsed as `T`; panics (showing the body) if it does not parse.
    pub fn parse<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a {} body ({e}); status {}, body: {:?}",
                std::any::type_name::<T>(),
                self.status,
                self.body
            )
        })
    }

    /// Asserts the status, returning `self` for chaining.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {} with body {:?}",
            self.status, self.body
        );
        self
    }

    /// The error contract: a JSON object with string fields `error` (a code) and `message`
    /// (non-empty). Returns `(error, message)`, or a description of how the body breaks it.
    ///
    /// # Errors
    /// When the body is not such an object.
    pub fn error_body(&self) -> Result<(String, String), String> {
        let v: Value = serde_json::from_str(&self.body).map_err(|e| {
            format!(
                "body is not JSON ({e}); content type {:?}, body {:?}",
                self.content_type, self.body
            )
        })?;
        let code = v
            .get("error")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no string field `error` in {v}"))?;
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no string field `message` in {v}"))?;
        if message.is_empty() {
            return Err(format!("empty `message` in {v}"));
        }
        Ok((code.to_owned(), message.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// The node
// ---------------------------------------------------------------------------------------------

/// How to start a [`TestNode`].
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Use this data directory instead of a fresh temporary one (the caller keeps it alive).
    pub data_dir: Option<PathBuf>,
    /// Extra arguments after `run --data-dir DIR --http 127.0.0.1:0 --p2p /ip4/127.0.0.1/tcp/0
    /// --no-mdns`.
    pub args: Vec<String>,
}

impl NodeOptions {
    /// A fresh temporary data directory and no extra arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `dir` as the data directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Appends extra command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

/// One `consent-node run` process on `127.0.0.1:0`, with its data directory and logs.
///
/// Dropping it kills the process. If the test is panicking, the tail of the node's stderr is
/// printed first.
pub struct TestNode {
    /// The running process; `None` after [`TestNode::kill9`] or [`TestNode::terminate`].
    child: Option<Child>,
    /// `127.0.0.1:PORT` of the current process.
    addr: String,
    /// The store and node key live here; kept across restarts.
    data_dir: PathBuf,
    /// Holds the temporary data dir (when not given) and the log file until the node is dropped.
    _temp: tempfile::TempDir,
    /// stderr of every process started on this data dir, appended, with a banner per start.
    log_path: PathBuf,
    /// Extra arguments, reused on restart.
    args: Vec<String>,
    /// How many processes have been started.
    starts: u32,
    /// HTTP client with connect and read deadlines.
    agent: ureq::Agent,
}

impl TestNode {
    /// Starts a node and waits (at most [`WAIT`]) for its `listening on` line.
    pub fn spawn(opts: NodeOptions) -> TestNode {
        let temp = tempfile::Builder::new()
            .prefix("consent-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("data"));
        let log_path = temp.path().join("node.log");
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(WAIT)
            .build();
        let mut node = TestNode {
            child: None,
            addr: String::new(),
            data_dir,
            _temp: temp,
            log_path,
            args: opts.args,
            starts: 0,
            agent,
        };
        node.start();
        node
    }

    /// A node with a fresh data directory and default options.
    pub fn new() -> TestNode {
        Self::spawn(NodeOptions::new())
    }

    /// Starts the process (again) on the same data directory and waits for it to listen.
    /// Panics if a process is still running.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "start: the node is still running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the node log");
        writeln!(
            log,
            "===== start #{} of consent-node on {} =====",
            self.starts,
            self.data_dir.display()
        )
        .expect("writing the node log");
        let mut child = Command::new(node_binary())
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--http", "127.0.0.1:0"])
            // Replication on a free loopback port, found only through explicit peers: tests
            // running side by side never meet by mDNS.
            .args(["--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .args(&self.args)
            .env("RUST_LOG", "info,node=debug")
            .env_remove("CONSENT_DATA_DIR")
            // The test-only adversary flags are taken only with this set (node::config).
            .env(
                "CONSENT_TEST_ADVERSARY",
                if self.args.iter().any(|a| a.starts_with("--adversary")) {
                    "1"
                } else {
                    "0"
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning consent-node");
        let stdout = child.stdout.take().expect("the node's stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Report the address, then keep draining stdout so the node never blocks on it.
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("consent-node listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(WAIT) {
            Ok(addr) => self.addr = addr,
            Err(e) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "consent-node did not print its listening line within {WAIT:?} ({e:?}; exit status {status:?})\n{}",
                    self.logs()
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT` of the running process.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The data directory (store and node key).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is not running").id()
    }

    /// Everything the node wrote to stderr so far (all starts).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The last `n` lines of [`TestNode::logs`].
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the process with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: the node is not running");
        child.kill().expect("sending SIGKILL to the node");
        let status = wait_until_exit(&mut child, Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("the node did not die within {WAIT:?} of SIGKILL"));
        self.note(&format!("===== killed with SIGKILL: {status} ====="));
    }

    /// Sends SIGTERM (graceful shutdown) and waits, at most [`WAIT`], for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        self.wait_for_exit()
    }

    /// Waits, at most [`WAIT`], for a process that was already told to stop (e.g. with
    /// [`signal`] from another thread) to exit, and reaps it.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("wait_for_exit: the node is not running");
        match wait_until_exit(&mut child, Instant::now() + WAIT) {
            Some(status) => {
                self.note(&format!("===== exited: {status} ====="));
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the node did not exit within {WAIT:?} of being told to stop\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Graceful restart on the same data directory: SIGTERM (asserting exit status 0), then
    /// start again. The new process listens on a new port.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.terminate();
            assert!(
                status.success(),
                "the node exited with {status} after SIGTERM\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.start();
    }

    fn note(&self, line: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(f, "{line}");
        }
    }

    // -- HTTP ---------------------------------------------------------------------------------

    /// A cloneable, thread-safe HTTP client for the running process (e.g. for submitter threads).
    pub fn client(&self) -> Client {
        Client {
            base: self.url(),
            agent: self.agent.clone(),
        }
    }

    /// Sends a request; `Err` only for transport failures (refused, reset, timeout).
    ///
    /// # Errors
    /// The transport error, as text.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        self.client().try_request(method, path, headers, body)
    }

    /// Sends a request; panics on a transport failure.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// `POST path` with a body of the given content type (`None`: no Content-Type header).
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| vec![("Content-Type", ct)])
            .unwrap_or_default();
        self.request("POST", path, &headers, Some(body))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        let text = serde_json::to_vec(body).expect("serialising a JSON body");
        self.post_raw(path, Some("application/json"), &text)
    }

    /// Submits an entry's JSON form; `Err` only for transport failures.
    ///
    /// # Errors
    /// The transport error, as text.
    pub fn try_post_entry_json(&self, entry: &Entry) -> Result<Reply, String> {
        self.client().try_post_entry_json(entry)
    }

    /// Submits an entry's JSON form.
    pub fn post_entry_json(&self, entry: &Entry) -> Reply {
        self.try_post_entry_json(entry)
            .unwrap_or_else(|e| panic!("submitting an entry failed: {e}"))
    }

    /// Submits raw bytes as `application/octet-stream` (an entry's canonical encoding).
    pub fn post_entry_bytes(&self, bytes: &[u8]) -> Reply {
        self.post_raw("/v1/entries", Some("application/octet-stream"), bytes)
    }

    /// Submits an entry (JSON form), asserts the HTTP status and returns the parsed answer.
    #[track_caller]
    pub fn submit(&self, entry: &Entry, status: u16) -> SubmitResponse {
        let r = self.post_entry_json(entry);
        assert_eq!(
            r.status,
            status,
            "submitting {} seq {}: expected HTTP {status}, got {} with body {}",
            entry.kind(),
            entry.seq(),
            r.status,
            r.body
        );
        r.parse()
    }

    /// Submits every entry in order, each expecting 201 (stored).
    #[track_caller]
    pub fn submit_all(&self, entries: &[Entry]) -> Vec<SubmitResponse> {
        entries.iter().map(|e| self.submit(e, 201)).collect()
    }

    /// `GET /v1/consent/check` now; asserts 200.
    #[track_caller]
    pub fn check(
        &self,
        subject: &PublicKey,
        controller: &PublicKey,
        purpose: &str,
    ) -> CheckResponse {
        self.get(&format!(
            "/v1/consent/check?subject={subject}&controller={controller}&purpose={purpose}"
        ))
        .expect_status(200)
        .parse()
    }

    /// `GET /v1/consent/check` as of `at_ms` (sent as RFC 3339); asserts 200.
    #[track_caller]
    pub fn check_at(
        &self,
        subject: &PublicKey,
        controller: &PublicKey,
        purpose: &str,
        at_ms: u64,
    ) -> CheckResponse {
        self.get(&format!(
            "/v1/consent/check?subject={subject}&controller={controller}&purpose={purpose}&at={}",
            rfc3339(at_ms)
        ))
        .expect_status(200)
        .parse()
    }

    /// The value of the sample `series` of `GET /metrics` (name with labels, exactly as
    /// exposed), 0 if absent.
    #[track_caller]
    pub fn metric(&self, series: &str) -> f64 {
        metric(&self.get("/metrics").expect_status(200).body, series)
    }

    /// `GET /v1/node/info`; asserts 200.
    #[track_caller]
    pub fn info(&self) -> NodeInfo {
        self.get("/v1/node/info").expect_status(200).parse()
    }

    /// This node's first p2p listen address (with `/p2p/<peer id>`), waiting for it to bind.
    #[track_caller]
    pub fn p2p_addr(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = self.info().p2p_addrs.first() {
                return a.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the node reported no p2p address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /v1/peers`: the connected peers' ids.
    #[track_caller]
    pub fn peer_ids(&self) -> Vec<String> {
        let v = self.get("/v1/peers").expect_status(200).json();
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks this node to dial `other` (`POST /v1/peers`) and waits until they are connected.
    #[track_caller]
    pub fn connect(&self, other: &TestNode) {
        let addr = other.p2p_addr();
        self.post_json("/v1/peers", &serde_json::json!({ "addr": addr }))
            .expect_status(202);
        let id = other.info().peer_id;
        wait_for(WAIT, "the peers to connect", || {
            self.peer_ids().contains(&id)
        });
    }

    /// Submits chains from `threads` threads (each chain in order, chains side by side); every
    /// entry must be stored (201).
    #[track_caller]
    pub fn submit_parallel(&self, chains: &[Vec<Entry>], threads: usize) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                let client = self.client();
                let next = &next;
                s.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(chain) = chains.get(i) else { break };
                    for e in chain {
                        let r = client
                            .try_post_entry_json(e)
                            .unwrap_or_else(|err| panic!("submitting failed: {err}"));
                        assert_eq!(r.status, 201, "submitting seq {}: {}", e.seq(), r.body);
                    }
                });
            }
        });
    }

    /// Blocks (`POST /v1/peers/{id}/block`) or unblocks (`DELETE`) another node at this one.
    #[track_caller]
    pub fn set_blocked(&self, other_peer_id: &str, block: bool) {
        let method = if block { "POST" } else { "DELETE" };
        self.request(
            method,
            &format!("/v1/peers/{other_peer_id}/block"),
            &[],
            None,
        )
        .expect_status(204);
    }

    /// Every entry hash in this node's ingest log (`GET /v1/log/entries`, all pages), in log
    /// order.
    #[track_caller]
    pub fn log_hashes(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let r = self
                .get(&format!("/v1/log/entries?start={}&limit=1000", out.len()))
                .expect_status(200);
            let before = out.len();
            for line in r.body.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).expect("an NDJSON line");
                out.push(v["hash"].as_str().expect("a hash").to_owned());
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// The subject's whole chain, following pages of `GET /v1/subjects/{s}/entries`.
    #[track_caller]
    pub fn chain(&self, subject: &PublicKey) -> ChainResponse {
        let mut all: Option<ChainResponse> = None;
        let mut from = 1u64;
        loop {
            let page: ChainResponse = self
                .get(&format!("/v1/subjects/{subject}/entries?from_seq={from}"))
                .expect_status(200)
                .parse();
            let n = page.entries.len() as u64;
            match all.as_mut() {
                None => all = Some(page),
                Some(a) => a.entries.extend(page.entries),
            }
            let have = all.as_ref().map_or(0, |a| a.entries.len() as u64);
            let head = all.as_ref().map_or(0, |a| a.head_seq);
            if n == 0 || have >= head {
                break;
            }
            from += n;
        }
        all.expect("at least one page")
    }

    /// Opens `GET /v1/events?controller=C` (with `Last-Event-ID` when given); asserts 200 and
    /// `text/event-stream`.
    pub fn events(&self, controller: &PublicKey, last_event_id: Option<u64>) -> EventStream {
        self.events_query(
            &format!("controller={controller}"),
            last_event_id.map(|id| id.to_string()).as_deref(),
        )
    }

    /// Opens `GET /v1/events?{query}` with an optional raw `Last-Event-ID`; asserts 200 and
    /// `text/event-stream`.
    pub fn events_query(&self, query: &str, last_event_id: Option<&str>) -> EventStream {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(60))
            .build();
        let mut req = agent.get(&format!("{}/v1/events?{query}", self.url()));
        if let Some(id) = last_event_id {
            req = req.set("Last-Event-ID", id);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => panic!(
                "GET /v1/events answered {code}: {:?}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("GET /v1/events failed: {e}"),
        };
        let ct = resp.header("content-type").unwrap_or_default().to_owned();
        assert!(
            ct.starts_with("text/event-stream"),
            "GET /v1/events content type {ct:?}"
        );
        EventStream::start(resp.into_reader())
    }
}

/// An HTTP client bound to one node process: base URL plus an agent with deadlines.
#[derive(Clone)]
pub struct Client {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Shared connection pool and timeouts.
    agent: ureq::Agent,
}

impl Client {
    /// Sends a request; `Err` only for transport failures (refused, reset, timeout).
    ///
    /// # Errors
    /// The transport error, as text.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let status = resp.status();
        let content_type = resp.header("content-type").map(str::to_owned);
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or_default().to_owned();
                (n.to_ascii_lowercase(), v)
            })
            .collect();
        let body = resp
            .into_string()
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok(Reply {
            status,
            content_type,
            headers,
            body,
        })
    }

    /// Submits an entry's JSON form; `Err` only for transport failures.
    ///
    /// # Errors
    /// The transport error, as text.
    pub fn try_post_entry_json(&self, entry: &Entry) -> Result<Reply, String> {
        let text = serde_json::to_vec(entry).expect("serialising an entry");
        self.try_request(
            "POST",
            "/v1/entries",
            &[("Content-Type", "application/json")],
            Some(&text),
        )
    }
}

impl Default for TestNode {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "\n----- consent-node log (data dir {}, last {LOG_TAIL_LINES} lines) -----\n{}\n----- end of consent-node log -----",
                self.data_dir.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------------------------

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`grant`, `withdraw`, `refuse`, `expire`).
    pub event: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` field (JSON of a `ConsentEvent`).
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// A live SSE stream, read by a background thread; every read has a deadline.
pub struct EventStream {
    /// Parsed events, in order; the sender closes when the stream ends.
    rx: Receiver<SseEvent>,
}

impl EventStream {
    fn start(body: Box<dyn Read + Send + Sync + 'static>) -> EventStream {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut cur = SseEvent {
                event: String::new(),
                id: None,
                data: String::new(),
            };
            let mut has_data = false;
            for line in BufReader::new(body).lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if has_data || !cur.event.is_empty() {
                        let ev = std::mem::replace(
                            &mut cur,
                            SseEvent {
                                event: String::new(),
                                id: None,
                                data: String::new(),
                            },
                        );
                        has_data = false;
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                if line.starts_with(':') {
                    continue; // comment / keep-alive
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line.as_str(), ""),
                };
                match field {
                    "event" => cur.event = value.to_owned(),
                    "id" => cur.id = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            cur.data.push('\n');
                        }
                        cur.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
        });
        EventStream { rx }
    }

    /// The next event within `within`, or `None` if none came (or the stream ended).
    pub fn try_next(&self, within: Duration) -> Option<SseEvent> {
        self.rx.recv_timeout(within).ok()
    }

    /// Whether the stream ends (the server closes it) within `within`; events still arriving
    /// are skipped.
    pub fn ends_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// The next event within `within`; panics naming `what` was awaited.
    #[track_caller]
    pub fn next(&self, within: Duration, what: &str) -> SseEvent {
        match self.rx.recv_timeout(within) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no SSE event within {within:?} while waiting for {what}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the SSE stream ended while waiting for {what}")
            }
        }
    }
}

/// `n` nodes that find each other only through their `--bootstrap` flag (the first node's
/// address); returns once every other node is connected to the first.
pub fn cluster(n: usize) -> Vec<TestNode> {
    let first = TestNode::new();
    let addr = first.p2p_addr();
    let id = first.info().peer_id;
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(TestNode::spawn(
            NodeOptions::new().args(&["--bootstrap", &addr]),
        ));
    }
    for node in &nodes[1..] {
        wait_for(WAIT, "bootstrap connections", || {
            node.peer_ids().contains(&id)
        });
    }
    nodes
}

/// A small seeded generator (xorshift64*) for reproducible test schedules; seed it with an odd
/// number.
pub struct Rng(pub u64);

/// The seed of a seeded test: `var` from the environment if set, else `default`; printed (with
/// the variable that replays it) under the test's `label`.
pub fn seed_from_env(label: &str, var: &str, default: u64) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{label}: seed {seed} (set {var} to replay)");
    seed
}

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Polls `ok` every 20 ms until it holds; panics with `what` after `within`.
#[track_caller]
pub fn wait_for(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and chains
// ---------------------------------------------------------------------------------------------

/// A deterministic key from a label: seed = SHA-256(label).
pub fn key(label: &str) -> SecretKey {
    SecretKey::from_seed(proto::entry::sha256(label.as_bytes()).to_bytes())
}

/// A consent body for `controller` and `purposes` (sorted here), legal basis `dpv:Consent`.
pub fn consent(controller: PublicKey, purposes: &[&str]) -> Consent {
    let mut purposes: Vec<String> = purposes.iter().map(|s| (*s).to_owned()).collect();
    purposes.sort();
    purposes.dedup();
    Consent {
        controller,
        purposes,
        data: vec!["pd:EmailAddress".into()],
        legal_basis: "dpv:Consent".into(),
        notice: None,
        valid_until: None,
        jurisdiction: Some("EU".into()),
        method: Method::Cli,
        gpc: None,
    }
}

/// `n` chains labelled `label/0` .. `label/{n-1}`, each of `len` grants of `purpose` to
/// `controller`: bulk data for replication tests.
pub fn grant_chains(
    label: &str,
    n: usize,
    len: usize,
    controller: PublicKey,
    purpose: &str,
) -> Vec<Vec<Entry>> {
    (0..n)
        .map(|i| {
            let mut c = Chain::new(&format!("{label}/{i}"));
            for _ in 0..len {
                c.grant(controller, &[purpose]);
            }
            c.entries
        })
        .collect()
}

/// A customer's chain under construction, signed by whichever key is current.
///
/// `issued_at` comes from the real clock (never going back along the chain) unless the next
/// entry's time is set with [`Chain::at`].
#[derive(Clone, Debug)]
pub struct Chain {
    /// The subject key (the chain's identity; signs until the first rotation).
    pub subject: SecretKey,
    /// The current signing key.
    pub signing: SecretKey,
    /// The current recovery key (signs the next rotation).
    pub recovery: SecretKey,
    /// Entries made so far, seq 1, 2, ...
    pub entries: Vec<Entry>,
    /// issued_at of the next entry, if set explicitly.
    next_time: Option<u64>,
}

impl Chain {
    /// A new chain with keys derived from `label`.
    pub fn new(label: &str) -> Chain {
        let subject = key(&format!("{label}/subject"));
        Chain {
            signing: subject.clone(),
            subject,
            recovery: key(&format!("{label}/recovery")),
            entries: vec![],
            next_time: None,
        }
    }

    /// The subject's public key.
    pub fn id(&self) -> PublicKey {
        self.subject.public_key()
    }

    /// The seq the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.entries.len() as u64 + 1
    }

    /// Sets the next entry's issued_at (ms).
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.next_time = Some(ms);
        self
    }

    fn next_issued_at(&self) -> u64 {
        let last = self.entries.last().map_or(0, |e| e.content.issued_at);
        self.next_time.unwrap_or_else(|| now_ms().max(last))
    }

    /// The unsigned content of the next entry: linked to the last one, naming the current signing
    /// key as signer.
    pub fn content(&self, body: Body) -> Content {
        let seq = self.next_seq();
        Content {
            subject: self.id(),
            seq,
            prev: self.entries.last().map_or(Hash::ZERO, Entry::hash),
            issued_at: self.next_issued_at(),
            signer: self.signing.public_key(),
            recovery: (seq == 1).then(|| recovery_commitment(&self.recovery.public_key())),
            body,
        }
    }

    /// The next entry, signed, without adding it to the chain.
    pub fn peek(&self, body: Body) -> Entry {
        self.content(body)
            .sign(&self.signing)
            .expect("a well-formed entry")
    }

    /// Adds an entry made by [`Chain::peek`] (or by hand) to the chain.
    pub fn commit(&mut self, entry: Entry) -> Entry {
        self.entries.push(entry.clone());
        self.next_time = None;
        entry
    }

    /// Signs and appends the next entry.
    pub fn push(&mut self, body: Body) -> Entry {
        let e = self.peek(body);
        self.commit(e)
    }

    /// Appends a grant.
    pub fn grant(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Grant(consent(controller, purposes)))
    }

    /// Appends a grant valid until `valid_until` (ms).
    pub fn grant_until(
        &mut self,
        controller: PublicKey,
        purposes: &[&str],
        valid_until: u64,
    ) -> Entry {
        let mut c = consent(controller, purposes);
        c.valid_until = Some(valid_until);
        self.push(Body::Grant(c))
    }

    /// Appends a withdraw (empty `purposes`: everything of the controller).
    pub fn withdraw(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Withdraw(consent(controller, purposes)))
    }

    /// Appends a refuse.
    pub fn refuse(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Refuse(consent(controller, purposes)))
    }

    /// Appends a rotation to `new_signing`, committing to `next_recovery`, signed by the current
    /// recovery key.
    pub fn rotate(&mut self, new_signing: SecretKey, next_recovery: &SecretKey) -> Entry {
        let mut c = self.content(Body::Rotate(Rotation {
            new_key: new_signing.public_key(),
            next_recovery: recovery_commitment(&next_recovery.public_key()),
        }));
        c.signer = self.recovery.public_key();
        let e = c.sign(&self.recovery).expect("a well-formed rotation");
        self.commit(e.clone());
        self.signing = new_signing;
        self.recovery = next_recovery.clone();
        e
    }

    /// Replaces the entries with `entries` (e.g. the chain as a node serves it). The keys are
    /// kept: chains rebuilt this way must not contain rotations.
    pub fn reset_to(&mut self, entries: Vec<Entry>) {
        assert!(
            entries
                .iter()
                .all(|e| e.kind() != proto::entry::Kind::Rotate),
            "reset_to does not replay rotations"
        );
        self.entries = entries;
        self.next_time = None;
    }
}

/// Signs `content` with `key` whatever signer it names (for forged entries).
pub fn sign_as(content: Content, key: &SecretKey) -> Entry {
    let signature = key.sign(&content.signing_input());
    Entry { content, signature }
}

/// Writes `text` to a file (test fixtures).
pub fn write_file(path: &Path, text: &str) {
    let mut f = File::create(path).expect("creating a file");
    f.write_all(text.as_bytes()).expect("writing a file");
}

/// The value of the sample `series` (name with labels, exactly as exposed) in a Prometheus text
/// exposition, 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    }
}
