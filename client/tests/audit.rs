//! End-to-end tests of `consent audit`, `consent verify-decision` and `consent check --evidence`:
//! real `consent-node` processes on `127.0.0.1:0` with temporary data dirs, entries written
//! through the CLI, exports and decision records tampered with on disk.
//!
//! Every wait has a deadline; nodes are killed on drop, and their logs are printed when a test
//! fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Node, Out, ACME, BETA, WAIT};

// ---------------------------------------------------------------------------------------------
// Harness (the shared part is in common/mod.rs)
// ---------------------------------------------------------------------------------------------

/// Runs `consent` with a config dir, a key file and a node.
struct Consent {
    home: PathBuf,
    key: PathBuf,
    node: String,
}

impl Consent {
    /// Runs and asserts the exit code.
    fn expect(&self, code: i32, args: &[&str]) -> Out {
        let mut child = Command::new(env!("CARGO_BIN_EXE_consent"))
            .arg("--key")
            .arg(&self.key)
            .args(args)
            .env("CONSENT_HOME", &self.home)
            .env("CONSENT_NODE", &self.node)
            .env_remove("CONSENT_PASSPHRASE")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning consent");
        let mut so = child.stdout.take().expect("stdout");
        let mut se = child.stderr.take().expect("stderr");
        let t1 = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = so.read_to_string(&mut s);
            s
        });
        let t2 = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = se.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + WAIT;
        let status = loop {
            match child.try_wait().expect("waiting for consent") {
                Some(s) => break s,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("consent {} did not finish within {WAIT:?}", args.join(" "));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let out = Out {
            code: status.code().unwrap_or(-1),
            stdout: t1.join().expect("stdout reader"),
            stderr: t2.join().expect("stderr reader"),
        };
        assert_eq!(out.code, code, "consent {}: {out:?}", args.join(" "));
        out
    }
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/testdata/vectors/v1.json"
    ))
    .expect("vectors");
    serde_json::from_str(&text).expect("vectors JSON")
}

/// `text` with one hex digit changed in the `"hex"` value of its `n`-th entry line, `back`
/// characters before the value's end (in the signature when `back` < 128).
fn flip_entry_digit(text: &str, n: usize, back: usize) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = lines
        .iter_mut()
        .filter(|l| l.contains("\"type\":\"entry\""))
        .nth(n)
        .expect("an entry line");
    let end = line.rfind('"').expect("closing quote");
    let at = end - back;
    let old = line.as_bytes()[at];
    let new = if old == b'0' { "1" } else { "0" };
    line.replace_range(at..=at, new);
    lines.join("\n") + "\n"
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_passes_on_a_real_export_and_names_every_tampering() {
    let node = Node::start();
    let other = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let c = Consent {
        home: tmp.path().join("home"),
        key: tmp.path().join("me.key"),
        node: node.url.clone(),
    };
    c.expect(0, &["init"]);
    c.expect(
        0,
        &[
            "grant",
            "--controller",
            ACME,
            "--purpose",
            "dpv:Advertising",
        ],
    );
    c.expect(
        0,
        &["grant", "--controller", BETA, "--purpose", "dpv:Marketing"],
    );
    c.expect(0, &["withdraw", "--controller", ACME]);
    // Two more subjects, one with a key rotation, from the golden vectors.
    let v = vectors();
    let mut n = 0;
    for chain in [&v["chains"][0], &v["chains"][2]] {
        for e in chain["entries"].as_array().expect("entries") {
            let f = tmp.path().join(format!("vector-{n}.hex"));
            std::fs::write(&f, e.as_str().expect("hex")).expect("write");
            c.expect(0, &["submit", &path_str(&f)]);
            n += 1;
        }
    }
    let total = 3 + n;

    // From the node (--node), and from a saved export (--file).
    let live = c
        .expect(0, &["audit", "--node", &node.url, "--json"])
        .json();
    assert_eq!(live["ok"], true, "{live}");
    assert_eq!(live["entries"], total);
    assert_eq!(live["signatures_ok"], total);
    assert_eq!(live["subjects"], 3);
    assert_eq!(live["vkey_pinned"], false);
    assert!(live["seconds"].as_f64().is_some(), "{live}");
    let mut export = String::new();
    node.get_response("/v1/log/export")
        .into_reader()
        .read_to_string(&mut export)
        .expect("export body");
    let file = tmp.path().join("ledger.ndjson");
    std::fs::write(&file, &export).expect("write export");
    let f = path_str(&file);
    let human = c.expect(0, &["audit", "--file", &f]);
    assert!(human.stdout.contains(": OK"), "{human:?}");
    assert!(
        human.stdout.contains("from the export's header"),
        "{human:?}"
    );
    let vkey = node.vkey();
    let pinned = c
        .expect(0, &["audit", "--file", &f, "--vkey", &vkey, "--json"])
        .json();
    assert_eq!(pinned["vkey_pinned"], true);
    assert_eq!(pinned["log_vkey"], vkey.as_str());
    let vkey_file = tmp.path().join("node.vkey");
    std::fs::write(&vkey_file, format!("{vkey}\n")).expect("write vkey");
    c.expect(0, &["audit", "--file", &f, "--vkey", &path_str(&vkey_file)]);

    // States as of a time, for one controller.
    let states = c
        .expect(0, &["audit", "--file", &f, "--controller", ACME, "--json"])
        .json();
    let states = states["states"].as_array().expect("states");
    assert!(!states.is_empty());
    assert!(states.iter().all(|s| s["controller"] == ACME), "{states:?}");
    assert!(states.iter().any(|s| s["status"] == "dpv:ConsentWithdrawn"));
    let before = c
        .expect(0, &["audit", "--file", &f, "--at", "2000-01-01", "--json"])
        .json();
    assert_eq!(before["states"], serde_json::json!([]));

    // One changed byte in an entry line (its signature).
    let bad = tmp.path().join("changed.ndjson");
    std::fs::write(&bad, flip_entry_digit(&export, 1, 20)).expect("write");
    let out = c.expect(4, &["audit", "--file", &path_str(&bad), "--json"]);
    assert_eq!(out.json()["ok"], false);
    let anomalies = out.anomalies();
    assert!(
        anomalies
            .iter()
            .any(|a| a.contains("seq 2") && a.contains("signature does not verify")),
        "{anomalies:?}"
    );
    assert!(
        anomalies.iter().any(|a| a.contains("is not the root")),
        "{anomalies:?}"
    );
    let out = c.expect(4, &["audit", "--file", &path_str(&bad)]);
    assert!(out.stdout.contains("DOES NOT VERIFY"), "{out:?}");
    assert!(out.stdout.contains("signature does not verify"), "{out:?}");
    assert!(out.stderr.contains("does not verify"), "{out:?}");

    // An entry line removed.
    let dropped: Vec<&str> = export
        .lines()
        .filter(|l| !l.contains("\"log_index\":1,"))
        .collect();
    assert_eq!(dropped.len() + 1, export.lines().count());
    // Audits `lines` as a file: it must fail (exit 4) with an anomaly that contains `want`.
    let fails_with = |name: &str, lines: &[&str], want: &str| {
        let bad = tmp.path().join(name);
        std::fs::write(&bad, lines.join("\n") + "\n").expect("write");
        let anomalies = c
            .expect(4, &["audit", "--file", &path_str(&bad), "--json"])
            .anomalies();
        assert!(
            anomalies.iter().any(|a| a.contains(want)),
            "{want}: {anomalies:?}"
        );
    };
    fails_with(
        "dropped.ndjson",
        &dropped,
        "log index 2 where 1 was expected",
    );

    // The checkpoint at the exported size removed: the last entries are signed by nothing.
    let last_cp = export
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("\"type\":\"checkpoint\""))
        .expect("a checkpoint line");
    let unsigned: Vec<&str> = export
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != last_cp)
        .map(|(_, l)| l)
        .collect();
    fails_with(
        "unsigned-tail.ndjson",
        &unsigned,
        &format!("no checkpoint at the exported size {total}"),
    );

    // Another node's key: no checkpoint of this node verifies against it.
    let foreign = other.vkey();
    assert_ne!(foreign, vkey);
    let out = c.expect(4, &["audit", "--file", &f, "--vkey", &foreign, "--json"]);
    let anomalies = out.anomalies();
    assert!(
        anomalies.iter().any(|a| a.contains("--vkey pins")),
        "{anomalies:?}"
    );
    assert!(
        anomalies
            .iter()
            .any(|a| a.contains("signature does not verify")),
        "{anomalies:?}"
    );

    // Not an export, a missing file, an unreachable node.
    c.expect(2, &["audit", "--file", &path_str(&vkey_file)]);
    c.expect(2, &["audit", "--file", &path_str(&tmp.path().join("none"))]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    c.expect(3, &["audit", "--node", &closed]);
}

#[test]
fn decision_records_are_verified_saved_and_rechecked_offline() {
    let node = Node::start();
    let other = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let c = Consent {
        home: tmp.path().join("home"),
        key: tmp.path().join("me.key"),
        node: node.url.clone(),
    };
    let subject = c.expect(0, &["init", "--json"]).json()["subject"]
        .as_str()
        .expect("subject")
        .to_owned();
    c.expect(
        0,
        &[
            "grant",
            "--controller",
            ACME,
            "--purpose",
            "dpv:Advertising",
        ],
    );
    c.expect(
        0,
        &["grant", "--controller", BETA, "--purpose", "dpv:Marketing"],
    );
    c.expect(0, &["withdraw", "--controller", BETA]);
    let vkey = node.vkey();
    let rec = tmp.path().join("rec.json");
    let r = path_str(&rec);
    let ask_about = |controller: &str, purpose: &str| {
        vec![
            "check".to_owned(),
            "--subject".to_owned(),
            subject.clone(),
            "--controller".to_owned(),
            controller.to_owned(),
            "--purpose".to_owned(),
            purpose.to_owned(),
            "--evidence".to_owned(),
        ]
    };
    let ask = |purpose: &str| ask_about(ACME, purpose);
    let args = |v: &[String], more: &[&str]| -> Vec<String> {
        v.iter()
            .cloned()
            .chain(more.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let run = |code: i32, v: &[String]| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        c.expect(code, &refs)
    };

    let allow = run(0, &args(&ask("dpv:Advertising"), &["--save", &r, "--json"])).json();
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["evidence_verified"]["vkey_pinned"], false);
    assert!(rec.exists());
    // Never overwritten.
    let before = std::fs::read_to_string(&rec).expect("record");
    run(2, &args(&ask("dpv:Advertising"), &["--save", &r]));
    assert_eq!(std::fs::read_to_string(&rec).expect("record"), before);
    // Pinned to this node's key; another node's key: the record does not verify (exit 2 for
    // `check`).
    run(0, &args(&ask("dpv:Advertising"), &["--vkey", &vkey]));
    let foreign = other.vkey();
    run(2, &args(&ask("dpv:Advertising"), &["--vkey", &foreign]));
    // A deny is verified too.
    let deny = run(1, &args(&ask_about(BETA, "dpv:Marketing"), &["--json"])).json();
    assert_eq!(deny["decision"], "deny");
    assert!(deny["evidence_verified"].is_object(), "{deny}");

    // Offline.
    let ok = c.expect(0, &["verify-decision", &r, "--json"]).json();
    assert_eq!(ok["verified"], true);
    assert_eq!(ok["subject"], subject.as_str());
    assert_eq!(ok["controller"], ACME);
    assert_eq!(ok["purpose"], "dpv:Advertising");
    assert_eq!(ok["status"], "dpv:ConsentGiven");
    assert_eq!(ok["seq"], 1);
    assert_eq!(ok["vkey_pinned"], false);
    assert_eq!(ok["checkpoint"]["size"], 3);
    let human = c.expect(0, &["verify-decision", &r]);
    assert!(human.stdout.contains("named in the record"), "{human:?}");
    let pinned = c
        .expect(0, &["verify-decision", &r, "--vkey", &vkey, "--json"])
        .json();
    assert_eq!(pinned["vkey_pinned"], true);
    let out = c.expect(4, &["verify-decision", &r, "--vkey", &foreign]);
    assert!(out.stderr.contains("checkpoint"), "{out:?}");

    // One changed byte in the record's chain.
    let mut record: Value = serde_json::from_str(&before).expect("record JSON");
    let entry = record["evidence"]["chain"][0]
        .as_str()
        .expect("chain entry")
        .to_owned();
    let at = entry.len() - 20;
    let new = if &entry[at..=at] == "0" { "1" } else { "0" };
    let mut changed = entry.clone();
    changed.replace_range(at..=at, new);
    record["evidence"]["chain"][0] = Value::String(changed);
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, record.to_string()).expect("write");
    let out = c.expect(4, &["verify-decision", &path_str(&bad), "--json"]);
    let err: Value = serde_json::from_str(out.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"], "does_not_verify");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("chain"),
        "{err}"
    );
    // Not a record at all.
    c.expect(2, &["verify-decision", &path_str(&c.key)]);
}
