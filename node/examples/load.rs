//! Load generator for a running consent-node on loopback (used by `scripts/bench`).
//!
//! `load ingest --node URL --clients N --subjects S --per-subject L`: pre-signs S chains of L
//! entries, then N client threads submit them over HTTP (each subject's chain in order, as its
//! owner would) and report durable entries per second.
//! `load check --node URL --clients N --seconds T --subjects S`: N client threads ask
//! `GET /v1/consent/check` for random subjects for T seconds; reports checks per second and
//! latency percentiles. Run `ingest` first with the same `--subjects` and seed.
//! Clients are tasks on one thread with raw HTTP/1.1 keep-alive connections, so that the load
//! generator takes as little as possible of the cores it shares with the node.
//! `ingest ... --followers URL,URL` also reports live replication (informational, no target):
//! entries per second from the first submission until every follower holds every entry.
//! `load catchup --node URL[,URL] --size N [--name NAME]`: seconds until every node (started
//! just before) holds N entries.
//! All print one JSON object per line, with the raw single-core ed25519-dalek verification rate
//! measured in the same process and the ratio to it.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::entry::{recovery_commitment, Body, Consent, Content, Method};
use proto::keys::{Hash, SecretKey};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn subject_key(i: usize) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    seed[31] = 0x5a;
    SecretKey::from_seed(seed)
}

fn brand() -> SecretKey {
    SecretKey::from_seed([0xb7; 32])
}

const PURPOSES: [&str; 4] = [
    "dpv:DirectMarketing",
    "dpv:Marketing",
    "dpv:PersonalisedAdvertising",
    "dpv:ServicePersonalisation",
];

fn chain(i: usize, len: usize) -> Vec<Vec<u8>> {
    let sk = subject_key(i);
    let rec = SecretKey::from_seed([0xcc; 32]).public_key();
    let mut prev = Hash::ZERO;
    let mut out = Vec::with_capacity(len);
    for seq in 1..=len as u64 {
        let consent = Consent {
            controller: brand().public_key(),
            purposes: vec![PURPOSES[(i + seq as usize) % 4].to_owned()],
            data: vec!["pd:EmailAddress".into()],
            legal_basis: "dpv:Consent".into(),
            notice: None,
            valid_until: None,
            jurisdiction: Some("EU".into()),
            method: Method::Api,
            gpc: None,
        };
        let e = Content {
            subject: sk.public_key(),
            seq,
            prev,
            issued_at: 1_767_225_600_000 + seq,
            signer: sk.public_key(),
            recovery: (seq == 1).then(|| recovery_commitment(&rec)),
            body: if seq % 3 == 0 {
                Body::Withdraw(consent)
            } else {
                Body::Grant(consent)
            },
        }
        .sign(&sk)
        .expect("sign");
        prev = e.hash();
        out.push(e.to_bytes());
    }
    out
}

/// Signatures per round of [`raw_verify_rate`].
const RAW_SIGS: usize = 1500;

/// Raw single-core ed25519-dalek verification rate over `n` signatures of entry-sized messages.
/// The figures measure it before their timed work and again after it, and keep the higher: this
/// shared machine's speed drifts, and a yardstick caught in a slow moment would flatter a ratio.
/// Catch-up measures it after only: its nodes are already syncing when it starts.
fn raw_verify_rate(n: usize) -> f64 {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let keys: Vec<SigningKey> = (0..64u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 251) as u8; 300]).collect();
    let sigs: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 64].sign(m))
        .collect();
    let vks: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
    // The best of several rounds: interference from other work only ever slows a round down, and
    // the best round is the conservative yardstick for the ratios.
    let mut best = 0f64;
    for _ in 0..7 {
        let start = Instant::now();
        for (i, m) in msgs.iter().enumerate() {
            vks[i % 64].verify(m, &sigs[i]).expect("verify");
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn parallel_map<T: Send + 'static>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = f.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut out = vec![];
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    out.push((i, f(i)));
                }
                out
            })
        })
        .collect();
    let mut all: Vec<(usize, T)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// A minimal HTTP/1.1 keep-alive client over one TCP connection: enough for a load generator,
/// and far cheaper than a thread per connection on a 2-core machine shared with the node.
struct Conn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream: tokio::io::BufReader::new(stream),
            host: addr.to_owned(),
        }
    }

    /// Sends pre-built request bytes and returns (status, body).
    async fn send_raw(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        self.stream.get_mut().write_all(req).await.expect("write");
        self.read_response().await
    }

    async fn read_response(&mut self) -> (u16, Vec<u8>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }

    /// Sends a request and returns (status, body).
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        if !content_type.is_empty() {
            req.extend_from_slice(format!("content-type: {content_type}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.send_raw(&req).await
    }
}

fn host_of(node: &str) -> String {
    node.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn ingest(args: &[String]) {
    let node = arg(args, "--node", "http://127.0.0.1:7411");
    let clients: usize = arg(args, "--clients", "64").parse().expect("--clients");
    let subjects: usize = arg(args, "--subjects", "4000").parse().expect("--subjects");
    let per: usize = arg(args, "--per-subject", "5")
        .parse()
        .expect("--per-subject");
    let raw = raw_verify_rate(RAW_SIGS);
    eprintln!("load: signing {} entries", subjects * per);
    let host = host_of(&node);
    let h = host.clone();
    // Whole HTTP requests are built before the timing: the load generator shares the cores with
    // the node, and should take as little of them as it can while measuring.
    // --first-subject shifts the subjects, so that a second run against the same nodes submits
    // new entries.
    let first: usize = arg(args, "--first-subject", "0")
        .parse()
        .expect("--first-subject");
    let chains = Arc::new(parallel_map(subjects, 2, move |i| {
        chain(first + i, per)
            .into_iter()
            .map(|e| {
                let mut req = format!(
                    "POST /v1/entries HTTP/1.1\r\nhost: {h}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                    e.len()
                )
                .into_bytes();
                req.extend_from_slice(&e);
                req
            })
            .collect::<Vec<Vec<u8>>>()
    }));
    eprintln!("load: submitting with {clients} clients");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let stored: usize = runtime().block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let chains = chains.clone();
                let next = next.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(&host).await;
                    let mut ok = 0usize;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= chains.len() {
                            break;
                        }
                        for req in &chains[i] {
                            let (status, body) = conn.send_raw(req).await;
                            // Every entry is new: only a 201 (stored durably) counts.
                            assert!(
                                status == 201,
                                "unexpected status {status}: {}",
                                String::from_utf8_lossy(&body)
                            );
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("client task");
        }
        total
    });
    let secs = start.elapsed().as_secs_f64();
    let rate = stored as f64 / secs;
    let followers: Vec<String> = arg(args, "--followers", "")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(host_of)
        .collect();
    // Live replication: from the first submission until every follower holds every entry the
    // leader holds. Informational (no target): every node verifies and durably stores every
    // entry, and A also serves the HTTP ingest, all on the same cores, so this reads the CPU
    // three whole nodes spend per entry more than the replication path. The replication target
    // is `replication_sync_to_two` (docs/BENCHMARKS.md).
    let live = (!followers.is_empty()).then(|| {
        let size = log_size(&host);
        let done = wait_for_size(&followers, size, std::time::Duration::from_secs(300));
        (done, start.elapsed().as_secs_f64())
    });
    let raw = raw.max(raw_verify_rate(RAW_SIGS));
    if let Some((done, rsecs)) = live {
        let rrate = stored as f64 / rsecs;
        println!(
            "{}",
            serde_json::json!({
                "name": "replication_live_gossip",
                "unit": "entries/s",
                "value": rrate,
                "entries": stored,
                "followers": followers.len(),
                "completed": done,
                "seconds": rsecs,
                "raw_ed25519_verify_per_s_single_core": raw,
                "ratio_to_raw_verify": rrate / raw,
                "target_ratio": null,
                // No rate target; not converging at all is still a failure.
                "meets_target": if done { serde_json::Value::Null } else { false.into() },
            })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "name": "durable_ingest_http",
            "unit": "entries/s",
            "value": rate,
            "entries": stored,
            "clients": clients,
            "seconds": secs,
            "raw_ed25519_verify_per_s_single_core": raw,
            "ratio_to_raw_verify": rate / raw,
            "target_ratio": 0.5,
            "meets_target": rate / raw >= 0.5,
        })
    );
}

/// `GET /v1/node/info` over a fresh connection; the ingest-log size (0 while unreachable).
fn log_size(host: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return 0;
    };
    let req = format!("GET /v1/node/info HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let Some(body) = text.split("\r\n\r\n").nth(1) else {
        return 0;
    };
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["log_size"].as_u64())
        .unwrap_or(0)
}

/// Polls every node until each holds at least `size` entries.
fn wait_for_size(hosts: &[String], size: u64, limit: std::time::Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if hosts.iter().all(|h| log_size(h) >= size) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `load catchup --node URL --size N`: the time until the node holds N entries (run it as the
/// node starts), as a figure beside the raw single-core verify rate.
fn catchup(args: &[String]) {
    let node = arg(args, "--node", "http://127.0.0.1:7411");
    let size: u64 = arg(args, "--size", "100000").parse().expect("--size");
    let target_secs: f64 = arg(args, "--target-seconds", "30")
        .parse()
        .expect("--target-seconds");
    let name = arg(args, "--name", "catchup_fresh_node");
    // With --target-ratio the figure is judged as a throughput against the raw verify rate.
    let target_ratio: Option<f64> = args
        .iter()
        .position(|a| a == "--target-ratio")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--target-ratio"));
    let hosts: Vec<String> = node.split(',').map(host_of).collect();
    let start = Instant::now();
    let done = wait_for_size(&hosts, size, std::time::Duration::from_secs(600));
    let secs = start.elapsed().as_secs_f64();
    let raw = raw_verify_rate(RAW_SIGS);
    let rate = size as f64 / secs;
    println!(
        "{}",
        serde_json::json!({
            "name": name,
            "unit": "seconds",
            "value": secs,
            "entries": size,
            "nodes": hosts.len(),
            "completed": done,
            "entries_per_s": rate,
            "raw_ed25519_verify_per_s_single_core": raw,
            "ratio_to_raw_verify": rate / raw,
            "target_seconds": target_secs,
            "target_ratio": target_ratio,
            "meets_target": done && match target_ratio {
                Some(r) => rate / raw >= r,
                None => secs <= target_secs,
            },
        })
    );
}

fn check(args: &[String]) {
    let node = arg(args, "--node", "http://127.0.0.1:7411");
    let clients: usize = arg(args, "--clients", "8").parse().expect("--clients");
    let subjects: usize = arg(args, "--subjects", "4000").parse().expect("--subjects");
    let seconds: f64 = arg(args, "--seconds", "10").parse().expect("--seconds");
    let raw = raw_verify_rate(RAW_SIGS);
    let brand = brand().public_key();
    let paths: Arc<Vec<String>> = Arc::new(
        (0..subjects)
            .map(|i| {
                format!(
                    "/v1/consent/check?subject={}&controller={brand}&purpose={}",
                    subject_key(i).public_key(),
                    PURPOSES[i % 4]
                )
            })
            .collect(),
    );
    let host = host_of(&node);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut lat: Vec<u32> = runtime().block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let paths = paths.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(&host).await;
                    let mut lat = Vec::with_capacity(200_000);
                    let mut i = c * 7919;
                    while Instant::now() < deadline {
                        i = (i + 104_729) % paths.len();
                        let t = Instant::now();
                        let (status, _) = conn.request("GET", &paths[i], "", b"").await;
                        assert_eq!(status, 200);
                        lat.push(t.elapsed().as_micros() as u32);
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    });
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let rate = lat.len() as f64 / secs;
    let raw = raw.max(raw_verify_rate(RAW_SIGS));
    println!(
        "{}",
        serde_json::json!({
            "name": "check_http",
            "unit": "checks/s",
            "value": rate,
            "clients": clients,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "raw_ed25519_verify_per_s_single_core": raw,
            "ratio_to_raw_verify": rate / raw,
            "target": "at least 20000 checks/s with p99 under 5 ms",
            "meets_target": rate >= 20_000.0 && pct(0.99) < 5.0,
        })
    );
}

/// Raw ed25519-dalek batch verification on all cores (batches of 1024 per thread), in
/// signatures per second: the yardstick for the audit replay rate.
fn raw_batch_all_cores() -> f64 {
    use ed25519_dalek::{Signer, SigningKey};
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let n = 1024usize;
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 251) as u8; 400]).collect();
    let sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
    let rounds = 8;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                for _ in 0..rounds {
                    ed25519_dalek::verify_batch(&refs, &sigs, &vks).expect("valid");
                }
            });
        }
    });
    (threads * rounds * n) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("ingest") => ingest(&args),
        Some("check") => check(&args),
        Some("raw-batch") => println!("{}", raw_batch_all_cores()),
        Some("raw") => println!("{}", raw_verify_rate(RAW_SIGS)),
        Some("catchup") => catchup(&args),
        _ => {
            eprintln!("usage: load ingest|check|raw|raw-batch|catchup --node URL [--clients N] [--subjects S] [--per-subject L] [--seconds T] [--followers URL,URL] [--size N]");
            std::process::exit(2);
        }
    }
}
