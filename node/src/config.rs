//! Node configuration: defaults, an optional TOML file, and command-line flags (flags win).
//!
//! Defaults (the "embedded default" a bare `consent-node` runs on):
//! - data dir: `$CONSENT_DATA_DIR`, else `$XDG_DATA_HOME/consent-ledger`, else
//!   `$HOME/.local/share/consent-ledger`;
//! - HTTP: `127.0.0.1:7411` (loopback only);
//! - p2p: `/ip4/127.0.0.1/tcp/7412` (reserved; replication is not built yet);
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
/// The default p2p listen address.
pub const DEFAULT_P2P: &str = "/ip4/127.0.0.1/tcp/7412";

/// The TOML config file; every key optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    pub http: Option<SocketAddr>,
    /// p2p listen multiaddr.
    pub p2p: Option<String>,
    /// Bootstrap peers (multiaddrs).
    pub bootstrap: Option<Vec<String>>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `node=debug`.
    pub log: Option<String>,
    /// Added to the system clock (ms); for tests and drills.
    pub clock_offset_ms: Option<i64>,
    /// Most entries waiting for a predecessor.
    pub pending_max: Option<usize>,
    /// How long an entry may wait for its predecessor (seconds).
    pub pending_ttl_secs: Option<u64>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory (sled store and node key).
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// p2p listen multiaddr (reserved for replication).
    pub p2p: String,
    /// Bootstrap peers.
    pub bootstrap: Vec<String>,
    /// Log filter.
    pub log: String,
    /// The node's clock.
    pub clock: Clock,
    /// Pending-area limits.
    pub pending: PendingLimits,
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
    /// When a default address does not parse (a build defect).
    pub fn resolve(self) -> anyhow::Result<Config> {
        let defaults = PendingLimits::default();
        Ok(Config {
            data_dir: self.data_dir.unwrap_or_else(default_data_dir),
            http: match self.http {
                Some(a) => a,
                None => DEFAULT_HTTP.parse().context("default HTTP address")?,
            },
            p2p: self.p2p.unwrap_or_else(|| DEFAULT_P2P.to_owned()),
            bootstrap: self.bootstrap.unwrap_or_default(),
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
