//! End-to-end tests of the `consent` CLI: real `consent-node` processes on `127.0.0.1:0`, a tiny
//! fake node that serves tampered chains, and the CLI binary cargo built for this package.
//!
//! Every wait has a deadline; nodes are killed on drop, and their stderr is printed when a test
//! fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto::entry::Entry;
use serde_json::Value;

mod common;
use common::{Node, Out, ACME, BETA, WAIT};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Runs `consent` with a config dir and a node, and keeps every output for the secret check.
struct Consent {
    home: PathBuf,
    node: String,
    env: Vec<(String, String)>,
    outputs: Arc<Mutex<Vec<String>>>,
}

impl Consent {
    fn new(home: &Path, node: &str) -> Consent {
        Consent {
            home: home.to_path_buf(),
            node: node.to_owned(),
            env: Vec::new(),
            outputs: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn env(mut self, k: &str, v: &str) -> Consent {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_consent"));
        cmd.args(args)
            .env("CONSENT_HOME", &self.home)
            .env("CONSENT_NODE", &self.node)
            .env_remove("CONSENT_PASSPHRASE")
            .env_remove("CONSENT_RECOVERY_PHRASE")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Out {
        let child = self
            .command(args, extra_env)
            .spawn()
            .expect("spawning consent");
        let out = finish(child, args);
        let mut all = self.outputs.lock().expect("outputs");
        all.push(format!(
            "$ consent {}\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        ));
        out
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    /// Runs and asserts the exit code.
    fn expect(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, code, "consent {}: {out:?}", args.join(" "));
        out
    }

    fn all_output(&self) -> String {
        self.outputs.lock().expect("outputs").join("\n")
    }
}

/// Waits for a child (at most [`WAIT`]), collecting its output; kills it on timeout.
fn finish(mut child: Child, args: &[&str]) -> Out {
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
    Out {
        code: status.code().unwrap_or(-1),
        stdout: t1.join().expect("stdout reader"),
        stderr: t2.join().expect("stderr reader"),
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The 24 words from `consent init`'s stderr.
fn words_of(stderr: &str) -> String {
    let words: Vec<&str> = stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| {
            w[0].ends_with('.')
                && w[0].trim_end_matches('.').parse::<u32>().is_ok()
                && w[1].bytes().all(|b| b.is_ascii_lowercase())
        })
        .map(|w| w[1])
        .collect();
    assert_eq!(words.len(), 24, "24 numbered words on stderr:\n{stderr}");
    words.join(" ")
}

fn assert_no_secret(haystack: &str, secrets: &[(&str, String)]) {
    for (what, s) in secrets {
        assert!(
            !haystack.contains(s.as_str()),
            "the {what} appears in the output:\n{haystack}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A fake node that serves a chosen chain and records POSTs
// ---------------------------------------------------------------------------------------------

struct FakeNode {
    url: String,
    posts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Serves `chain` (a ChainResponse) for `from_seq=1`, an empty page after it, 404 for
    /// anything else, and answers every POST with 500 after counting it.
    fn serve(chain: Value) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake node");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let posts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (posts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = answer(c, &chain, &p);
                }
            }
        });
        FakeNode {
            url,
            posts,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut c: TcpStream, chain: &Value, posts: &AtomicUsize) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(c.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (status, body) = if method == "POST" {
        posts.fetch_add(1, Ordering::SeqCst);
        (
            "500 Internal Server Error",
            r#"{"error":"fake","message":"the fake node stores nothing"}"#.to_owned(),
        )
    } else if target.starts_with("/v1/subjects/") && target.contains("from_seq=1&") {
        ("200 OK", chain.to_string())
    } else if target.starts_with("/v1/subjects/") {
        let mut empty = chain.clone();
        empty["entries"] = Value::Array(vec![]);
        ("200 OK", empty.to_string())
    } else {
        (
            "404 Not Found",
            r#"{"error":"not_found","message":"no such endpoint"}"#.to_owned(),
        )
    };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    c.flush()
}

/// Re-derives a served record (JSON form and hash) from canonical bytes.
fn record_from_bytes(bytes: &[u8], log_index: u64) -> Value {
    let e = Entry::from_bytes(bytes).expect("tampered bytes still decode");
    serde_json::json!({
        "hash": e.hash(),
        "log_index": log_index,
        "hex": hex::encode(bytes),
        "entry": e,
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn customer_flow_with_passphrase_grant_status_check_receipt_withdraw_offline_recover() {
    let node = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path().join("home");
    let pass = "correct horse battery staple 42";
    let c = Consent::new(&home, &node.url).env("CONSENT_PASSPHRASE", pass);

    // init: keys 0600, words on stderr only, refuses to overwrite.
    let init = c.expect(0, &["init", "--json"]);
    let words = words_of(&init.stderr);
    assert!(!init.stdout.contains(&words), "the words leak into --json");
    assert_eq!(init.json()["encrypted"], true);
    let keys = home.join("keys.json");
    #[cfg(unix)]
    {
        assert_eq!(mode(&keys), 0o600);
        assert_eq!(mode(&home), 0o700);
    }
    let again = c.expect(2, &["init"]);
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");
    let entropy = client::keys::Entropy::from_phrase(&words).expect("the words parse");
    let master0 = hex::encode(entropy.master(0).as_bytes());
    let stored = std::fs::read_to_string(&keys).expect("keys.json");
    assert!(!stored.contains(&master0) && !stored.contains(&words));

    // Aliases and per-controller subject ids.
    c.expect(0, &["controllers", "add", "acme", ACME]);
    let subject = c
        .expect(0, &["id", "--controller", "acme"])
        .stdout
        .trim()
        .to_owned();
    let other = c
        .expect(0, &["id", "--controller", BETA])
        .stdout
        .trim()
        .to_owned();
    assert_eq!(subject.len(), 64);
    assert_ne!(subject, other, "one pseudonym per controller");

    // An unknown purpose is refused with the nearest codes, before any passphrase or node work.
    let typo = c.expect(
        2,
        &[
            "grant",
            "--controller",
            "acme",
            "--purpose",
            "dpv:DirectMarketin",
        ],
    );
    assert!(
        typo.stderr.contains("did you mean dpv:DirectMarketing"),
        "{typo:?}"
    );
    let typo_json = c.expect(
        2,
        &[
            "grant",
            "--json",
            "--controller",
            "acme",
            "--purpose",
            "dpv:Marketng",
        ],
    );
    let err: Value = serde_json::from_str(typo_json.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"], "unknown_code");
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.contains("dpv:Marketing")));

    // A wrong passphrase fails cleanly with its exit code and signs nothing.
    let wrong = c.run_env(
        &[
            "grant",
            "--controller",
            "acme",
            "--purpose",
            "dpv:DirectMarketing",
        ],
        &[("CONSENT_PASSPHRASE", "not the passphrase")],
    );
    assert_eq!(wrong.code, 6, "{wrong:?}");
    assert!(wrong.stderr.contains("wrong passphrase"), "{wrong:?}");

    // Grant with every field.
    let notice = tmp.path().join("notice.html");
    std::fs::write(&notice, "<p>We send offers by e-mail.</p>").expect("notice");
    let notice_path = notice.display().to_string();
    let g = c.expect(
        0,
        &[
            "grant",
            "--json",
            "--controller",
            "acme",
            "--purpose",
            "dpv:DirectMarketing",
            "--purpose",
            "dpv:Advertising",
            "--data",
            "pd:EmailAddress",
            "--notice-url",
            "https://acme.example/privacy",
            "--notice-file",
            &notice_path,
            "--notice-version",
            "3",
            "--valid-for",
            "13mo",
            "--jurisdiction",
            "EU",
            "--gpc",
        ],
    );
    let receipt = g.json();
    assert_eq!(receipt["seq"], 1);
    assert_eq!(receipt["status"], "stored");
    assert_eq!(receipt["subject"], subject.as_str());
    assert_eq!(
        receipt["purposes"],
        serde_json::json!(["dpv:Advertising", "dpv:DirectMarketing"])
    );
    assert!(receipt["log_index"].is_u64());
    let grant_hash = receipt["hash"].as_str().expect("hash").to_owned();

    // Status, computed locally from the verified chain.
    let st = c.expect(0, &["status", "--json"]).json();
    let rows = &st["chains"][0]["consents"];
    assert_eq!(st["chains"][0]["verified"], true);
    assert!(
        rows.as_array().is_some_and(|r| r
            .iter()
            .any(|x| x["purpose"] == "dpv:DirectMarketing" && x["status"] == "given")),
        "{st}"
    );
    let human = c.expect(0, &["status"]).stdout;
    assert!(
        human.contains("dpv:DirectMarketing") && human.contains("given"),
        "{human}"
    );

    // check: 0 allow, 1 deny or unknown, 2 error.
    let chk = |purpose: &str| {
        c.run(&[
            "check",
            "--subject",
            &subject,
            "--controller",
            "acme",
            "--purpose",
            purpose,
        ])
    };
    let allow = chk("dpv:DirectMarketing");
    assert_eq!(allow.code, 0, "{allow:?}");
    assert!(allow.stdout.contains("allow") && allow.stdout.contains(&grant_hash));
    // Consent to a narrower purpose does not cover the broader one.
    assert_eq!(chk("dpv:Marketing").code, 1);
    assert_eq!(chk("dpv:Marketin").code, 2);
    c.expect(
        2,
        &[
            "check",
            "--subject",
            "zz",
            "--controller",
            "acme",
            "--purpose",
            "dpv:Marketing",
        ],
    );

    // Receipt, human and ISO/IEC TS 27560-shaped JSON.
    let r = c.expect(0, &["receipt", &grant_hash]);
    assert!(r.stdout.contains("Consent receipt (verified)"), "{r:?}");
    assert!(r.stdout.contains("https://acme.example/privacy"));
    let rj = c.expect(0, &["receipt", "--json", &grant_hash]).json();
    assert_eq!(rj["recordId"], grant_hash.as_str());
    assert_eq!(rj["dataSubject"]["id"], subject.as_str());
    assert_eq!(rj["dataController"]["id"], ACME);
    assert_eq!(rj["dataController"]["alias"], "acme");
    assert_eq!(rj["state"], "dpv:ConsentGiven");
    assert_eq!(rj["legalBasis"], "dpv:Consent");
    assert_eq!(rj["personalDataCategories"][0], "pd:EmailAddress");
    assert_eq!(rj["notice"]["version"], "3");
    assert_eq!(
        rj["notice"]["sha256"],
        proto::entry::sha256(b"<p>We send offers by e-mail.</p>")
            .to_string()
            .as_str()
    );
    assert_eq!(rj["jurisdiction"], "EU");
    assert_eq!(rj["indicationMethod"], "cli");
    assert_eq!(rj["gpc"], true);
    assert!(rj["validity"]["until"].is_string());
    assert_eq!(rj["evidence"]["chainVerified"], true);

    // Withdraw everything for acme: the check now denies.
    let w = c
        .expect(0, &["withdraw", "--json", "--controller", "acme"])
        .json();
    assert_eq!(w["seq"], 2);
    let deny = chk("dpv:DirectMarketing");
    assert_eq!(deny.code, 1, "{deny:?}");
    assert!(deny.stdout.contains("dpv:ConsentWithdrawn"));
    assert_eq!(
        c.expect(0, &["receipt", "--json", w["hash"].as_str().expect("hash")])
            .json()["state"],
        "dpv:ConsentWithdrawn"
    );

    // Offline: sign on the local head cache, refuse to sign online past it, submit later.
    let file = tmp.path().join("offline.hex");
    let file_s = file.display().to_string();
    let off = c
        .expect(
            0,
            &[
                "grant",
                "--json",
                "--controller",
                "acme",
                "--purpose",
                "dpv:Marketing",
                "--offline",
                "--out",
                &file_s,
            ],
        )
        .json();
    assert_eq!(off["seq"], 3);
    assert_eq!(off["status"], "signed_offline");
    let stale = c.expect(
        7,
        &[
            "grant",
            "--controller",
            "acme",
            "--purpose",
            "dpv:Advertising",
        ],
    );
    assert!(stale.stderr.contains("consent submit"), "{stale:?}");
    let sub = c.expect(0, &["submit", "--json", &file_s]).json();
    assert_eq!(sub["status"], "stored");
    assert_eq!(sub["hash"], off["hash"]);
    assert_eq!(chk("dpv:Marketing").code, 0);
    assert_eq!(
        c.expect(0, &["submit", "--json", &file_s]).json()["status"],
        "duplicate"
    );
    let log = c.expect(0, &["log", "--controller", "acme"]).stdout;
    assert_eq!(log.lines().count(), 4, "{log}");

    // The node unreachable: exit 3.
    let down = c.expect(3, &["--node", "http://127.0.0.1:1", "status"]);
    assert!(down.stderr.contains("unreachable"), "{down:?}");

    // Recover with the words: the chain is rotated and keeps its subject id; M_1 replaces M_0.
    let wrong_words = client::keys::Entropy::from_bytes([7; 32]).phrase();
    let mismatch = c.run_env(
        &["recover"],
        &[("CONSENT_RECOVERY_PHRASE", wrong_words.as_str())],
    );
    assert_eq!(mismatch.code, 6, "{mismatch:?}");
    assert!(mismatch.stderr.contains("does not match"), "{mismatch:?}");
    let rec = c.run_env(
        &["recover", "--json"],
        &[("CONSENT_RECOVERY_PHRASE", &words)],
    );
    assert_eq!(rec.code, 0, "{rec:?}");
    let rec = rec.json();
    assert_eq!(rec["generation"], 1);
    assert_eq!(rec["controllers"][0]["result"], "rotated");
    assert_eq!(rec["controllers"][0]["seq"], 4);
    assert_eq!(
        c.expect(0, &["id", "--controller", "acme"]).stdout.trim(),
        subject
    );
    let after = c
        .expect(
            0,
            &[
                "grant",
                "--json",
                "--controller",
                "acme",
                "--purpose",
                "dpv:Advertising",
            ],
        )
        .json();
    assert_eq!(after["seq"], 5);
    let chain = node.get(&format!("/v1/subjects/{subject}/entries"));
    let entries: Vec<Entry> = chain["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|r| serde_json::from_value(r["entry"].clone()).expect("entry"))
        .collect();
    let head = proto::verify_chain(&entries).expect("the chain verifies");
    assert_eq!(head.seq, 5);
    assert_eq!(
        head.signing_key,
        entropy
            .master(1)
            .signing_key(&ACME.parse().expect("key"))
            .public_key()
    );

    // No secret anywhere: not the words (outside init's stderr), not M_0 or M_1, not the
    // passphrase.
    let master1 = hex::encode(entropy.master(1).as_bytes());
    let mut everything = c.all_output();
    everything = everything.replacen(&init.stderr, "", 1);
    assert_no_secret(
        &everything,
        &[
            ("recovery phrase", words.clone()),
            ("master M_0", master0),
            ("master M_1", master1),
            ("passphrase", pass.to_owned()),
        ],
    );
    let stored = std::fs::read_to_string(&keys).expect("keys.json");
    assert!(!stored.contains(&words));
    #[cfg(unix)]
    assert_eq!(mode(&keys), 0o600);
}

#[test]
fn tampered_chains_are_caught_and_nothing_is_signed() {
    let node = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let c = Consent::new(&tmp.path().join("home"), &node.url);
    c.expect(0, &["init", "--no-passphrase"]);
    c.expect(0, &["controllers", "add", "acme", ACME]);
    for p in [
        "dpv:DirectMarketing",
        "dpv:Advertising",
        "dpv:Personalisation",
    ] {
        c.expect(0, &["grant", "--controller", "acme", "--purpose", p]);
    }
    let subject = c
        .expect(0, &["id", "--controller", "acme"])
        .stdout
        .trim()
        .to_owned();
    let real = node.get(&format!("/v1/subjects/{subject}/entries"));
    assert_eq!(real["head_seq"], 3);
    let records = real["entries"].as_array().expect("entries").clone();
    let hex_of = |i: usize| hex::decode(records[i]["hex"].as_str().expect("hex")).expect("hex");

    let with_entries = |entries: Vec<Value>| {
        let mut v = real.clone();
        v["entries"] = Value::Array(entries);
        v
    };
    // issued_at of seq 2 (bytes 74..82, big-endian) moved forward by one bit in its second
    // lowest byte (or, when that byte is 0xff, in its lowest), so that the link rules still
    // hold; JSON form and hash re-derived.
    let mut flipped = hex_of(1);
    let (byte, bit) = [80usize, 81]
        .into_iter()
        .find_map(|i| (0..8).find(|b| flipped[i] & (1 << b) == 0).map(|b| (i, b)))
        .expect("a zero bit in the two lowest bytes");
    flipped[byte] |= 1 << bit;
    let byte_changed = with_entries(vec![
        records[0].clone(),
        record_from_bytes(&flipped, 1),
        records[2].clone(),
    ]);
    // The canonical hex changed in the signature, the JSON form left alone.
    let mut sig_flipped = hex_of(2);
    let last = sig_flipped.len() - 10;
    sig_flipped[last] ^= 0x40;
    let mut hex_only = records[2].clone();
    hex_only["hex"] = Value::String(hex::encode(&sig_flipped));
    let hex_changed = with_entries(vec![records[0].clone(), records[1].clone(), hex_only]);
    let mut dropped = with_entries(vec![records[0].clone(), records[2].clone()]);
    dropped["head_seq"] = Value::from(2);
    let reordered = with_entries(vec![
        records[0].clone(),
        records[2].clone(),
        records[1].clone(),
    ]);
    let mut other_subject = real.clone();
    other_subject["subject"] = Value::String(BETA.to_owned());

    let grant = [
        "grant",
        "--controller",
        "acme",
        "--purpose",
        "dpv:Marketing",
    ];
    for (name, chain, why) in [
        ("one byte changed", byte_changed, "bad signature"),
        ("hex differs from JSON", hex_changed, "differ"),
        ("an entry dropped", dropped, "seq"),
        ("entries reordered", reordered, "seq"),
        ("answer for another subject", other_subject, "answered for"),
    ] {
        let fake = FakeNode::serve(chain);
        let out = c.run(&[
            "--node", &fake.url, grant[0], grant[1], grant[2], grant[3], grant[4],
        ]);
        assert_eq!(out.code, 4, "{name}: {out:?}");
        assert!(
            out.stderr.contains("does not verify") && out.stderr.contains(why),
            "{name}: {out:?}"
        );
        assert_eq!(
            fake.posts.load(Ordering::SeqCst),
            0,
            "{name}: something was POSTed"
        );
        // Read-only commands refuse the chain too.
        let st = c.run(&["--node", &fake.url, "status"]);
        assert_eq!(st.code, 4, "{name}: status {st:?}");
    }

    // A consistent but older chain (the last entry withheld): refused as stale, nothing signed.
    let mut older = with_entries(vec![records[0].clone(), records[1].clone()]);
    older["head_seq"] = Value::from(2);
    let fake = FakeNode::serve(older);
    let out = c.run(&[
        "--node", &fake.url, grant[0], grant[1], grant[2], grant[3], grant[4],
    ]);
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(fake.posts.load(Ordering::SeqCst), 0);
    drop(fake);

    // The node says the chain is forked: exit 5, nothing signed.
    let mut forked = real.clone();
    forked["forked"] = Value::Bool(true);
    let fake = FakeNode::serve(forked);
    let out = c.run(&[
        "--node", &fake.url, grant[0], grant[1], grant[2], grant[3], grant[4],
    ]);
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(fake.posts.load(Ordering::SeqCst), 0);
    drop(fake);

    // The real node still has the untouched chain, and the CLI still signs on it.
    c.expect(0, &grant);
    assert_eq!(
        node.get(&format!("/v1/subjects/{subject}/entries"))["head_seq"],
        4
    );
}

#[test]
fn twenty_concurrent_grants_make_one_clean_chain() {
    let node = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let c = Consent::new(&tmp.path().join("home"), &node.url);
    c.expect(0, &["init", "--no-passphrase"]);
    c.expect(0, &["controllers", "add", "acme", ACME]);
    let purposes = [
        "dpv:DirectMarketing",
        "dpv:Advertising",
        "dpv:Personalisation",
        "dpv:ServiceProvision",
    ];
    let children: Vec<(Child, String)> = (0..20)
        .map(|i| {
            let p = purposes[i % purposes.len()];
            let child = c
                .command(&["grant", "--controller", "acme", "--purpose", p], &[])
                .spawn()
                .expect("spawning consent grant");
            (child, p.to_owned())
        })
        .collect();
    for (child, p) in children {
        let out = finish(child, &["grant", p.as_str()]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let subject = c
        .expect(0, &["id", "--controller", "acme"])
        .stdout
        .trim()
        .to_owned();
    let chain = node.get(&format!("/v1/subjects/{subject}/entries"));
    assert_eq!(chain["head_seq"], 20);
    assert_eq!(chain["forked"], false);
    let entries: Vec<Entry> = chain["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|r| serde_json::from_value(r["entry"].clone()).expect("entry"))
        .collect();
    assert_eq!(entries.len(), 20);
    proto::verify_chain(&entries).expect("one clean chain");
    let info = node.get("/v1/node/info");
    assert_eq!(info["forks"], 0);
    assert_eq!(info["log_size"], 20);
}

#[test]
fn key_file_mode_signs_and_keeps_its_seed_private() {
    let node = Node::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let c = Consent::new(&tmp.path().join("home"), &node.url);
    let key = tmp.path().join("me.key");
    let key_s = key.display().to_string();
    let init = c.expect(0, &["--key", &key_s, "init", "--json"]).json();
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    c.expect(2, &["--key", &key_s, "init"]);
    let subject = init["subject"].as_str().expect("subject").to_owned();
    let g = c
        .expect(
            0,
            &[
                "--key",
                &key_s,
                "grant",
                "--json",
                "--controller",
                ACME,
                "--purpose",
                "dpv:Advertising",
            ],
        )
        .json();
    assert_eq!(g["subject"], subject.as_str());
    assert_eq!(
        c.run(&[
            "check",
            "--subject",
            &subject,
            "--controller",
            ACME,
            "--purpose",
            "dpv:Advertising"
        ])
        .code,
        0
    );
    let seed = std::fs::read_to_string(&key)
        .expect("key file")
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("seed line")
        .to_owned();
    assert_no_secret(&c.all_output(), &[("seed", seed)]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let loose = c.expect(
            6,
            &[
                "--key",
                &key_s,
                "grant",
                "--controller",
                ACME,
                "--purpose",
                "dpv:Advertising",
            ],
        );
        assert!(loose.stderr.contains("chmod 600"), "{loose:?}");
    }
}
