//! `consent-node`: the peer node of consent-ledger (see the library docs and README.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use node::config::FileConfig;
use tokio_util::sync::CancellationToken;

/// sled copies tree nodes on every write; mimalloc handles that churn with less CPU than glibc
/// malloc (about 5 % of the node's CPU per ingested entry; docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// consent-ledger peer node: keeps customers' signed consent chains, verifies every entry, and
/// answers brands' consent checks over HTTP.
///
/// With no arguments it runs on its embedded default: a sled store in the XDG data dir
/// (~/.local/share/consent-ledger, or $CONSENT_DATA_DIR) and HTTP on 127.0.0.1:7411.
///
/// Examples:
///   consent-node
///   consent-node run --data-dir /var/lib/consent --http 127.0.0.1:8080
///   consent-node run --config node.toml
///   consent-node check --data-dir /var/lib/consent
///   consent-node export --data-dir /var/lib/consent --out ledger.ndjson
#[derive(Parser, Debug)]
#[command(
    name = "consent-node",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Default)]
struct RunArgs {
    /// TOML config file (keys: data_dir, http, p2p, bootstrap, mdns, replicate,
    /// sync_interval_secs, controllers, max_staleness_secs, log, clock_offset_ms, pending_max,
    /// pending_ttl_secs).
    /// Flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (store and node key).
    #[arg(long, env = "CONSENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// p2p listen multiaddr (repeatable; default /ip4/127.0.0.1/tcp/7412 and
    /// /ip4/127.0.0.1/udp/7412/quic-v1; port 0 picks a free port, printed on start).
    #[arg(long)]
    p2p: Vec<String>,
    /// Peer to dial at start, e.g. /ip4/10.0.0.5/tcp/7412/p2p/12D3KooW... (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Turn mDNS LAN discovery off.
    #[arg(long)]
    no_mdns: bool,
    /// Run without replication (a standalone node).
    #[arg(long)]
    no_p2p: bool,
    /// Seconds between background sync rounds with a peer.
    #[arg(long)]
    sync_interval_secs: Option<u64>,
    /// Replicate only the chains that name this controller (hex key; repeatable): a brand node.
    /// Without it the node takes every chain (auditors, portals).
    #[arg(long = "controller")]
    controllers: Vec<String>,
    /// Freshness bound in seconds: once no sync round with any peer has completed for this
    /// long, checks that would allow answer `deny` with status `stale` (off by default). With
    /// it, the node audits each peer's log against the peer's signed checkpoint after a round
    /// and counts only audited rounds (a peer caught hiding entries is banned).
    #[arg(long)]
    max_staleness_secs: Option<u64>,
    /// Log filter, e.g. `info` or `node=debug` (RUST_LOG wins when set).
    #[arg(long)]
    log: Option<String>,
    /// Shift the node's clock by this many milliseconds (tests and drills only).
    #[arg(long, allow_hyphen_values = true)]
    clock_offset_ms: Option<i64>,
    /// Tests only: hide SUBJECT's entries from SEQ on from this node's peers (an adversary).
    #[arg(long, hide = true, value_name = "SUBJECT:SEQ")]
    adversary_withhold: Option<String>,
    /// Tests only: with --adversary-withhold, hide them from the served log too.
    #[arg(long, hide = true)]
    adversary_withhold_log: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node (the default).
    Run(Box<RunArgs>),
    /// Verify the whole store offline: every entry, chain, log position and derived record.
    /// Exits 0 when intact, 1 when damaged.
    Check {
        /// Data directory.
        #[arg(long, env = "CONSENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Rebuild the derived indexes from the entries before checking.
        #[arg(long)]
        rebuild: bool,
    },
    /// Write a self-contained export of a stopped node's ledger (NDJSON: entries in log order,
    /// checkpoints, fork proofs) for `consent audit --file`. A running node serves the same at
    /// GET /v1/log/export.
    Export {
        /// Data directory.
        #[arg(long, env = "CONSENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Output file (`-` for standard output).
        #[arg(long)]
        out: PathBuf,
    },
}

fn init_logs(filter: &str) {
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or_else(|| Command::Run(Box::default())) {
        Command::Run(args) => match run(*args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("consent-node: error: {e:#}");
                2
            }
        },
        Command::Export { data_dir, out } => match export(data_dir, &out) {
            Ok(n) => {
                eprintln!("exported {n} entries to {}", out.display());
                0
            }
            Err(e) => {
                eprintln!("consent-node: export failed: {e:#}");
                2
            }
        },
        Command::Check { data_dir, rebuild } => match check(data_dir, rebuild) {
            Ok(n) => {
                println!("store intact: {n} entries verified");
                0
            }
            Err(CheckFailure::Damaged(e)) => {
                eprintln!("consent-node: store check failed: {e:#}");
                1
            }
            Err(CheckFailure::Cannot(e)) => {
                eprintln!("consent-node: cannot check the store: {e:#}");
                2
            }
        },
    };
    std::process::exit(code);
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    if args.data_dir.is_some() {
        file.data_dir = args.data_dir;
    }
    if args.http.is_some() {
        file.http = args.http;
    }
    if !args.p2p.is_empty() {
        file.p2p = Some(args.p2p);
    }
    if args.no_mdns {
        file.mdns = Some(false);
    }
    if args.no_p2p {
        file.replicate = Some(false);
    }
    if !args.controllers.is_empty() {
        file.controllers = Some(args.controllers);
    }
    if args.sync_interval_secs.is_some() {
        file.sync_interval_secs = args.sync_interval_secs;
    }
    if args.max_staleness_secs.is_some() {
        file.max_staleness_secs = args.max_staleness_secs;
    }
    if !args.bootstrap.is_empty() {
        file.bootstrap = Some(args.bootstrap);
    }
    if args.log.is_some() {
        file.log = args.log;
    }
    if args.clock_offset_ms.is_some() {
        file.clock_offset_ms = args.clock_offset_ms;
    }
    if args.adversary_withhold.is_some() {
        file.adversary_withhold = args.adversary_withhold;
    }
    if args.adversary_withhold_log {
        file.adversary_withhold_log = Some(true);
    }
    let config = file.resolve()?;
    init_logs(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            signal.cancel();
        });
        node::run(config, shutdown).await
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn export(data_dir: Option<PathBuf>, out: &std::path::Path) -> anyhow::Result<u64> {
    let data_dir = data_dir.unwrap_or_else(node::config::default_data_dir);
    let dir = data_dir.join("store");
    if !dir.exists() {
        anyhow::bail!("no store at {}", dir.display());
    }
    let store = node::store::SledStore::open(&dir).with_context(|| {
        format!(
            "opening the store in {} (is the node still running?)",
            dir.display()
        )
    })?;
    let key = node::config::node_key(&data_dir)?;
    let checkpoints = node::checkpoint::Checkpointer::new(key);
    let now = node::clock::Clock::default().now_ms();
    let mut progress = |n: u64| eprintln!("exported {n} entries...");
    let n = if out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        node::export::write_export(&store, &checkpoints, now, &mut w, &mut progress)?
    } else {
        let f =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let n = node::export::write_export(&store, &checkpoints, now, &mut w, &mut progress)?;
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?
            .sync_all()
            .with_context(|| format!("syncing {}", out.display()))?;
        n
    };
    node::store::Store::flush(&store)?;
    Ok(n)
}

/// What `check` says of a store that sled cannot read whole.
fn unreadable_message(e: &node::store::StoreError) -> String {
    format!(
        "sled cannot read the store whole: {e}. `consent-node run` moves it aside \
         (store.damaged-<time>), salvages what sled can still read, and repairs every other \
         entry the journal names from its peers (--bootstrap), at the same log positions"
    )
}

/// Why `consent-node check` did not find the store intact.
enum CheckFailure {
    /// The store is damaged (exit 1).
    Damaged(anyhow::Error),
    /// The store could not be checked: none there, in use by a running node, another format,
    /// an I/O error (exit 2).
    Cannot(anyhow::Error),
}

fn check(data_dir: Option<PathBuf>, rebuild: bool) -> Result<u64, CheckFailure> {
    let dir = data_dir
        .unwrap_or_else(node::config::default_data_dir)
        .join("store");
    if !dir.exists() {
        return Err(CheckFailure::Cannot(anyhow::anyhow!(
            "no store at {}",
            dir.display()
        )));
    }
    let store = match node::store::SledStore::open(&dir) {
        Ok(s) => s,
        Err(e) if node::store::is_sled_corruption(&e) => {
            return Err(CheckFailure::Damaged(anyhow::anyhow!(
                "{}",
                unreadable_message(&e)
            )))
        }
        Err(e) => {
            // Records that do not decode are damage; a lock, a format or an I/O error is not.
            let damaged = matches!(e, node::store::StoreError::Corrupt { .. });
            let e =
                anyhow::Error::from(e).context(format!("opening the store in {}", dir.display()));
            return Err(if damaged {
                CheckFailure::Damaged(e)
            } else {
                CheckFailure::Cannot(e)
            });
        }
    };
    check_open(&store, rebuild).map_err(CheckFailure::Damaged)
}

/// The checks of an opened store; any failure is damage.
fn check_open(store: &node::store::SledStore, rebuild: bool) -> anyhow::Result<u64> {
    let lost = store.lost_entries();
    if let Some(first) = lost.first() {
        let subjects: std::collections::BTreeSet<_> = lost.iter().map(|r| r.subject).collect();
        let from = node::store::Store::log_size(store);
        let names: Vec<String> = subjects.iter().take(5).map(|s| s.to_string()).collect();
        anyhow::bail!(
            "the store lost {} entries at log positions {from}..{} (of {} subjects: {}{}), \
             from seq {} of the first: sled dropped a damaged part of its log. Start the node \
             with its peers (--bootstrap) to repair them; until then it refuses those chains \
             and takes no writes",
            lost.len(),
            from + lost.len() as u64,
            subjects.len(),
            names.join(", "),
            if subjects.len() > 5 { ", ..." } else { "" },
            first.seq,
        );
    }
    let unreadable = |e: node::store::StoreError| {
        if node::store::is_sled_corruption(&e) {
            anyhow::anyhow!("{}", unreadable_message(&e))
        } else {
            e.into()
        }
    };
    if rebuild {
        store
            .rebuild_derived()
            .map_err(unreadable)
            .context("rebuilding the derived indexes")?;
    }
    node::store::scan_readable(store).map_err(unreadable)?;
    store.verify_all().map_err(unreadable)
}
