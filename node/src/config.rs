//! Node configuration: defaults, an optional TOML file, and command-line flags (flags win).
//!
//! Defaults (the "embedded default" a bare `consent-node` runs on):
//! - data dir: `$CONSENT_DATA_DIR`, else `$XDG_DATA_HOME/consent-ledger`, else
//!   `$HOME/.local/share/consent-ledger`;
//! - HTTP: `127.0.0.1:7411` (loopback only);
//! - p2p: `/ip4/127.0.0.1/tcp/7412` and `/ip4/127.0.0.1/udp/7412/quic-v1` (loopback; listen on
//!   `/ip4/0.0.0.0/...` to replicate with other machines);
//! - mDNS LAN discovery: on (`mdns = false` or `--no-mdns` turns it off);
//! - background sync: a round with one peer every 5 seconds;
//! - interest: every chain (`controllers = [...]` or `--controller` makes a brand node that
//!   replicates only the chains naming its controllers);
//! - log level: `info` (`RUST_LOG` overrides).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::clock::Clock;
use crate::ledger::PendingLimits;

/// The default HTTP address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7411";
/// The default p2p listen addresses.
pub const DEFAULT_P2P: [&str; 2] = ["/ip4/127.0.0.1/tcp/7412", "/ip4/127.0.0.1/udp/7412/quic-v1"];

/// The TOML config file; every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    pub http: Option<SocketAddr>,
    /// p2p listen multiaddrs.
    pub p2p: Option<Vec<String>>,
    /// Bootstrap peers (multiaddrs).
    pub bootstrap: Option<Vec<String>>,
    /// mDNS LAN discovery (default true).
    pub mdns: Option<bool>,
    /// Replication on (default true).
    pub replicate: Option<bool>,
    /// Seconds between background sync rounds (default 5).
    pub sync_interval_secs: Option<u64>,
    /// Replicate only chains naming these controllers (hex keys); absent or empty: every chain.
    pub controllers: Option<Vec<String>>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `node=debug`.
    pub log: Option<String>,
    /// Added to the system clock (ms); for tests and drills.
    pub clock_offset_ms: Option<i64>,
    /// Most entries waiting for a predecessor.
    pub pending_max: Option<usize>,
    /// How long an entry may wait for its predecessor (seconds).
    pub pending_ttl_secs: Option<u64>,
    /// Freshness bound (seconds): when no sync round with a peer has completed for this long,
    /// checks that would allow answer deny with status `stale`. Needs replication. Absent: off.
    pub max_staleness_secs: Option<u64>,
    /// Test-only adversary behaviour: `SUBJECT:SEQ` hides that subject's entries from that seq on
    /// from this node's peers (see `p2p::sync::Withhold`). Set only by the hidden flag
    /// `--adversary-withhold`, and only with [`ADVERSARY_ENV`] set: never from a config file.
    #[serde(skip)]
    pub adversary_withhold: Option<String>,
    /// With `adversary_withhold`: hide them from the served log too.
    #[serde(skip)]
    pub adversary_withhold_log: Option<bool>,
}

/// The environment variable that must be `1` for the test-only adversary flags to be taken: a
/// real node cannot be switched into hiding entries by a stray flag.
pub const ADVERSARY_ENV: &str = "CONSENT_TEST_ADVERSARY";

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory (sled store and node key).
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// p2p settings (None: replication off).
    pub p2p: Option<crate::p2p::P2pConfig>,
    /// Log filter.
    pub log: String,
    /// The node's clock.
    pub clock: Clock,
    /// Pending-area limits.
    pub pending: PendingLimits,
    /// The freshness bound (None: off).
    pub max_staleness: Option<Duration>,
}

/// The default data directory (see the module docs).
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CONSENT_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("consent-ledger");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/consent-ledger")
}

impl FileConfig {
    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid TOML for this struct.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Resolves against the defaults.
    ///
    /// # Errors
    /// When an address does not parse.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let defaults = PendingLimits::default();
        if self.adversary_withhold.is_some() && std::env::var(ADVERSARY_ENV).as_deref() != Ok("1") {
            anyhow::bail!(
                "--adversary-withhold is a test-only switch that makes this node hide entries from \
                 its peers; it is refused unless {ADVERSARY_ENV}=1"
            );
        }
        if self.max_staleness_secs.is_some() && self.replicate == Some(false) {
            anyhow::bail!(
                "max_staleness_secs needs replication: a node without p2p never syncs, so its view would always be stale"
            );
        }
        if self.max_staleness_secs == Some(0) {
            anyhow::bail!("max_staleness_secs must be at least 1");
        }
        Ok(Config {
            max_staleness: self.max_staleness_secs.map(Duration::from_secs),
            data_dir: self.data_dir.unwrap_or_else(default_data_dir),
            http: match self.http {
                Some(a) => a,
                None => DEFAULT_HTTP.parse().context("default HTTP address")?,
            },
            p2p: if self.replicate.unwrap_or(true) {
                Some(crate::p2p::P2pConfig {
                    listen: parse_addrs(
                        "p2p",
                        self.p2p.unwrap_or_else(|| {
                            DEFAULT_P2P.iter().map(|s| (*s).to_owned()).collect()
                        }),
                    )?,
                    bootstrap: parse_addrs("bootstrap", self.bootstrap.unwrap_or_default())?,
                    mdns: self.mdns.unwrap_or(true),
                    sync_interval: Duration::from_secs(self.sync_interval_secs.unwrap_or(5).max(1)),
                    interest: self
                        .controllers
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            c.parse().map_err(|e| {
                                anyhow::anyhow!("controllers: {c:?} is not a 64-hex-digit key: {e}")
                            })
                        })
                        .collect::<anyhow::Result<Vec<proto::PublicKey>>>()?,
                    audit_logs: self.max_staleness_secs.is_some(),
                    withhold: self
                        .adversary_withhold
                        .as_deref()
                        .map(|w| {
                            crate::p2p::sync::Withhold::parse(
                                w,
                                self.adversary_withhold_log.unwrap_or(false),
                            )
                            .map_err(|e| anyhow::anyhow!("adversary_withhold: {e}"))
                        })
                        .transpose()?,
                })
            } else {
                None
            },
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            clock: Clock {
                offset_ms: self.clock_offset_ms.unwrap_or(0),
            },
            pending: PendingLimits {
                max_total: self.pending_max.unwrap_or(defaults.max_total),
                max_per_subject: defaults.max_per_subject,
                ttl: self
                    .pending_ttl_secs
                    .map_or(defaults.ttl, Duration::from_secs),
            },
        })
    }
}

fn parse_addrs(what: &str, addrs: Vec<String>) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse().with_context(|| {
                format!("{what}: {a:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/7412)")
            })
        })
        .collect()
}

/// Loads the node key from `dir/node.key` (hex seed, mode 0600), creating it on first start.
///
/// # Errors
/// When the file cannot be read, written or parsed.
pub fn node_key(dir: &Path) -> anyhow::Result<proto::SecretKey> {
    let path = dir.join("node.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading node key {}", path.display()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .with_context(|| format!("node key {} is not 64 hex digits", path.display()))?;
        return Ok(proto::SecretKey::from_seed(seed));
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("drawing a random node key")?;
    let key = proto::SecretKey::from_seed(seed);
    write_secret(&path, &hex::encode(seed))?;
    seed.fill(0);
    Ok(key)
}

#[cfg(unix)]
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating node key {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing node key {}", path.display()))
}

#[cfg(not(unix))]
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing node key {}", path.display()))
}
