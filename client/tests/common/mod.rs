//! The harness shared by the CLI's end-to-end tests: the node binary, a real node on a free
//! loopback port, and a finished `consent` run.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// The longest any wait may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// Brand keys used as controllers.
pub const ACME: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
/// A second brand.
pub const BETA: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// `target/<profile>/consent-node`, brought up to date once per test process with
/// `cargo build -p consent-node` (a no-op build takes well under a second), so a stale node is
/// not tested by accident; when cargo cannot run or the node does not build, an existing binary
/// is used (with a note on stderr).
pub fn node_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let deps = exe.parent().expect("target/<profile>/deps");
        let profile = if deps.file_name().is_some_and(|n| n == "deps") {
            deps.parent().expect("target/<profile>")
        } else {
            deps
        };
        let bin = profile.join(format!("consent-node{}", std::env::consts::EXE_SUFFIX));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
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
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
        if let Some(target) = profile.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        match profile.file_name().and_then(|n| n.to_str()) {
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
            // A stale binary would test the CLI against a node the workspace no longer builds.
            Ok(out) => panic!(
                "building consent-node failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if bin.exists() => {
                eprintln!("cannot run cargo ({e}); using {} as it is", bin.display());
            }
            Err(e) => panic!("cannot run cargo to build consent-node: {e}"),
        }
        assert!(bin.exists(), "{} does not exist", bin.display());
        bin
    })
}

/// A real node on a free loopback port, with a temporary data dir.
pub struct Node {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("node.log")).expect("node log");
        let mut child = Command::new(node_binary())
            .arg("run")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--http", "127.0.0.1:0"])
            .args(["--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .env("RUST_LOG", "info")
            .env_remove("CONSENT_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning consent-node");
        let stdout = child.stdout.take().expect("node stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("consent-node listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut node = Node {
            child,
            url: String::new(),
            dir,
        };
        match rx.recv_timeout(WAIT) {
            Ok(url) => node.url = url,
            Err(e) => panic!(
                "consent-node did not say where it listens within {WAIT:?} ({e})\n{}",
                node.logs()
            ),
        }
        node
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// GET `path`, as JSON.
    pub fn get(&self, path: &str) -> Value {
        self.get_response(path)
            .into_json()
            .expect("JSON from the node")
    }

    /// GET `path`, the raw response.
    pub fn get_response(&self, path: &str) -> ureq::Response {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build()
            .get(&format!("{}{path}", self.url))
            .call()
            .expect("GET from the node")
    }

    /// The node's checkpoint verifier key.
    pub fn vkey(&self) -> String {
        self.get("/v1/node/info")["log_vkey"]
            .as_str()
            .expect("log_vkey")
            .to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- consent-node stderr -----\n{}", self.logs());
        }
    }
}

/// One finished `consent` run.
#[derive(Debug)]
pub struct Out {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }

    /// The `anomalies` of an audit report on standard output.
    pub fn anomalies(&self) -> Vec<String> {
        self.json()["anomalies"]
            .as_array()
            .unwrap_or_else(|| panic!("no anomalies in {self:?}"))
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
