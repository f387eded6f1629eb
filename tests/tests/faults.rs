//! Fault injection at the file syscalls of one ingest (issue 7, item 2), the way Tessera tests
//! itself: strace attaches to a running `consent-node` and makes one kind of file syscall on the
//! store's files fail with `EIO` or `ENOSPC`, or kills the node with SIGKILL at it.
//!
//! First a calibration run traces one ordinary ingest and lists the syscalls it makes on the
//! store's files. Then, for each of those syscalls and each fault, a fresh submission is made
//! while every call of that syscall on the store's files fails. After each fault:
//! - an entry that got a 2xx must be in the store after a kill -9 and a restart (never an ack
//!   without a durable write);
//! - after a failed write or flush the node stops acknowledging (503 `read_only`), even once the
//!   fault is gone, instead of retrying blindly, and it still answers checks from what it holds
//!   (the full-disk case);
//! - after the restart `consent-node check` passes, every acknowledged entry is there, and the
//!   node takes writes again.
//!
//! It needs strace and permission to ptrace the node; where either is missing it says so and
//! returns (the CI machine has both). `CONSENT_REQUIRE_STRACE=1` turns that into a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::api::Verdict;
use proto::entry::Entry;
use tests::{key, store_check, Chain, NodeOptions, TestNode};

/// Syscalls that can touch the store's files (strace's `%file` and `%desc` classes would also
/// catch reads of unrelated descriptors; these are the ones sled and the store use).
const FILE_SYSCALLS: &str = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,\
sync_file_range,fallocate,ftruncate,read,pread64,readv,preadv,openat,rename,renameat,unlink,unlinkat";

/// Whether strace can trace a child process here.
fn strace_works() -> bool {
    Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An strace process attached to the node.
struct Tracer {
    child: Child,
    out: PathBuf,
}

impl Tracer {
    /// Attaches to every thread of `pid`, tracing `syscalls` on the store's files, with an
    /// optional injection (`error=EIO`, `signal=KILL`, ...) into every such call.
    fn attach(pid: u32, store: &Path, syscalls: &str, inject: Option<&str>, out: PathBuf) -> Self {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-o"]).arg(&out);
        cmd.arg("-e").arg(format!("trace={syscalls}"));
        if let Some(fault) = inject {
            cmd.arg("-e").arg(format!("inject={syscalls}:{fault}"));
        }
        // Only calls on the store's own files: sled's `db` and `conf`, and the snapshots.
        for f in ["db", "conf", "blobs"] {
            cmd.arg("-P").arg(store.join(f));
        }
        let child = cmd
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning strace");
        // strace attaches to each thread in turn; give it time to reach all of them.
        std::thread::sleep(Duration::from_millis(800));
        Tracer { child, out }
    }

    /// Detaches (SIGINT makes strace let go of its tracees) and returns what it traced.
    fn detach(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// The syscall names in an strace `-f -o` trace (`PID name(args) = ret`).
fn syscall_names(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let name = rest.split('(').next()?;
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

/// Whether the node holds `entry` (looked up by hash).
fn holds(node: &TestNode, entry: &Entry) -> bool {
    node.get(&format!("/v1/entries/{}", entry.hash())).status == 200
}

#[test]
fn file_syscall_faults_never_ack_without_a_durable_write() {
    if !strace_works() {
        assert!(
            std::env::var_os("CONSENT_REQUIRE_STRACE").is_none(),
            "strace is required (CONSENT_REQUIRE_STRACE) but cannot trace here"
        );
        eprintln!("faults: SKIPPED: strace is not installed or cannot ptrace here");
        return;
    }
    let brand = key("brand/faults").public_key();
    let mut chain = Chain::new("faults-subject");
    let mut node = TestNode::spawn(NodeOptions::new().args(&["--no-p2p"]));
    let store = node.data_dir().join("store");
    let traces = tempfile::tempdir().expect("a temporary directory for traces");
    let mut acked: Vec<Entry> = Vec::new();
    for _ in 0..3 {
        let e = chain.grant(brand, &["dpv:Marketing"]);
        node.submit(&e, 201);
        acked.push(e);
    }

    // Calibration: the file syscalls of one ordinary ingest.
    let tracer = Tracer::attach(
        node.pid(),
        &store,
        FILE_SYSCALLS,
        None,
        traces.path().join("calibrate"),
    );
    let e = chain.grant(brand, &["dpv:Marketing"]);
    node.submit(&e, 201);
    acked.push(e);
    let calls = syscall_names(&tracer.detach());
    eprintln!("faults: one ingest makes these syscalls on the store's files: {calls:?}");
    assert!(
        calls.iter().any(|c| c.contains("write")) && calls.iter().any(|c| c.contains("sync")),
        "the trace of one ingest shows no write and no sync on the store's files: {calls:?}"
    );

    let mut cases = 0;
    let mut refused = 0;
    for syscall in &calls {
        for fault in ["error=EIO", "error=ENOSPC", "signal=KILL"] {
            cases += 1;
            let label = format!("{syscall}:{fault}");
            let tracer = Tracer::attach(
                node.pid(),
                &store,
                syscall,
                Some(fault),
                traces.path().join(label.replace([':', '='], "-")),
            );
            let entry = chain.peek(proto::entry::Body::Grant(tests::consent(
                brand,
                &["dpv:Marketing"],
            )));
            let first = node.try_post_entry_json(&entry);
            let acknowledged = matches!(&first, Ok(r) if r.status == 201 || r.status == 200);
            let refused_here = matches!(&first, Ok(r) if r.status == 503);
            eprintln!(
                "faults: {label}: {}",
                match &first {
                    Ok(r) => format!("HTTP {} {}", r.status, r.body.trim()),
                    Err(e) => format!("no answer ({e})"),
                }
            );
            // Every flush ends in an fdatasync: with each of them failing, nothing can be
            // durable, so nothing may be acknowledged.
            if fault.starts_with("error") && syscall.as_str() == "fdatasync" {
                assert!(
                    !acknowledged,
                    "{label}: acknowledged although every fdatasync failed: {first:?}"
                );
            }
            if refused_here {
                refused += 1;
                let r = first.as_ref().expect("an answer");
                assert!(
                    r.body.contains("read_only"),
                    "{label}: a 503 that is not read_only: {}",
                    r.body
                );
                // The fault is gone, but the node must not retry as if nothing happened.
                let _ = tracer.detach();
                let again = node.post_entry_json(&entry);
                assert_eq!(
                    again.status, 503,
                    "{label}: the node acknowledged after a failed write: {}",
                    again.body
                );
                assert!(!node.info().writable, "{label}: info still says writable");
                // Read-only, it still answers checks from what it holds.
                let c = node.check(&chain.id(), &brand, "dpv:Marketing");
                assert_eq!(c.decision, Verdict::Allow, "{label}: check after the fault");
                // What it holds in memory may include the refused entry: valid and signed by
                // the subject, but never acknowledged, and maybe gone after a restart.
                let held = acked.len() as u64;
                assert!(
                    c.head_seq == held || c.head_seq == held + 1,
                    "{label}: head seq {} after the fault, with {held} acknowledged",
                    c.head_seq
                );
                // And serves the subject's chain and the ingest log. (sled fails a read that
                // must restructure a page with the failed write's error; the store then reopens
                // sled and reads again.)
                for path in [
                    format!("/v1/subjects/{}/entries", chain.id()),
                    "/v1/log/entries?start=0&limit=1000".to_string(),
                ] {
                    let r = node.get(&path);
                    assert_eq!(
                        r.status, 200,
                        "{label}: GET {path} after the fault: {}",
                        r.body
                    );
                    for e in &acked {
                        assert!(
                            r.body.contains(&e.hash().to_string()),
                            "{label}: GET {path} after the fault lacks an acknowledged entry"
                        );
                    }
                }
            } else if acknowledged {
                let _ = tracer.detach();
            } else {
                // Killed at the syscall (or the connection died with it): nothing to detach.
                let _ = tracer.detach();
                // Neither acknowledged nor refused read-only: only a kill may end that way, and
                // then with no answer at all (an error fault must be answered 503 read_only or,
                // if the write never needed the failing call, a 2xx).
                assert!(
                    fault.starts_with("signal") && first.is_err(),
                    "{label}: neither a 2xx nor 503 read_only, nor a kill without answer: {first:?}\n{}",
                    node.log_tail(30)
                );
            }
            if acknowledged {
                acked.push(chain.commit(entry.clone()));
            }
            // Whatever happened, a kill -9 and a restart must keep every acknowledged entry.
            node.kill9();
            let check = store_check(node.data_dir(), &[]);
            assert!(
                check.status.success(),
                "{label}: consent-node check failed after the fault:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            node.start();
            for e in &acked {
                assert!(
                    holds(&node, e),
                    "{label}: acknowledged entry seq {} lost",
                    e.seq()
                );
            }
            assert!(node.info().writable, "{label}: not writable after restart");
            if !acknowledged {
                // Not acknowledged: it may or may not have been kept; either way it goes in now.
                let r = node.post_entry_json(&entry);
                assert!(
                    r.status == 201 || r.status == 200,
                    "{label}: resubmitting after restart: HTTP {} {}",
                    r.status,
                    r.body
                );
                acked.push(chain.commit(entry));
            }
        }
    }
    eprintln!(
        "faults: {cases} injections over {} syscalls; {refused} refused with read_only; \
         {} entries acknowledged, 0 lost",
        calls.len(),
        acked.len()
    );
    assert!(
        refused > 0,
        "no injected error turned the node read-only: the faults never reached the store"
    );
}
