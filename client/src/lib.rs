//! The `consent` command line's library: key schedule, key store, node client and commands.
//!
//! Every command is a function `commands::<name>::run(&Ctx, ..) -> Result<Report>`: it does its
//! work, and returns what to print (human text and JSON) and the exit code; `main.rs` only
//! parses, dispatches, prints and maps errors to exit codes ([`Error::exit_code`]).
//!
//! Safety rules the commands keep (docs/CLI.md):
//! - a chain fetched from a node is verified from seq 1 before anything is signed on top of it,
//!   and its current signing key must be this device's key;
//! - signing happens under an exclusive per-subject lock, around fetch-head, sign, submit and the
//!   update of the local head cache, so concurrent `consent` processes never fork a chain;
//! - the CLI refuses to sign on a head older than one it has seen (head cache per subject);
//! - secrets (the words, `M_g`, seeds) are never printed, except the words once by `consent init`
//!   on standard error.
//!
//! # Layout
//! - [`keys`]: the customer's key schedule (recovery phrase, per-brand subject keys, blinded
//!   recovery keys).
//! - [`keystore`]: `keys.json` (plain or passphrase-sealed `M_g`), `--key` files, [`keystore::Identity`].
//! - [`home`]: the config directory, `config.json` (aliases, subject ids), head cache, locks.
//! - [`node`]: the node's HTTP API and the verification of what it serves.
//! - [`receipt`]: human and ISO/IEC TS 27560-shaped receipts.
//! - [`clock`]: times and durations on the command line.
//! - [`prompt`]: reading passphrases and words without echo.
//! - [`cli`]: the clap definition.
//! - [`commands`]: one module per subcommand.
//! - [`error`]: [`Error`] and the exit codes.

#![deny(missing_docs)]

pub mod cli;
pub mod clock;
pub mod commands;
pub mod error;
pub mod home;
pub mod keys;
pub mod keystore;
pub mod node;
pub mod prompt;
pub mod receipt;

use std::path::PathBuf;

use proto::keys::PublicKey;

pub use error::{Error, Result};

use crate::home::{Config, Home};
use crate::keystore::{Identity, KeyFile, KeyStore};
use crate::node::NodeClient;

/// What a command prints, and how it exits.
#[derive(Debug)]
pub struct Report {
    /// For people (stdout without --json).
    pub text: String,
    /// For machines (stdout with --json).
    pub json: serde_json::Value,
    /// Already serialised JSON, printed instead of `json` when set (for a large report).
    pub json_text: Option<String>,
    /// The exit code (0; 1 for a deny from `consent check`; 4 when `consent audit` finds
    /// anomalies, with the report printed).
    pub exit: u8,
    /// Warnings and notes for standard error (`warning: ...`), in both output modes.
    pub notes: Vec<String>,
}

impl Report {
    /// A successful report.
    pub fn ok(text: String, json: serde_json::Value) -> Report {
        Report {
            text,
            json,
            json_text: None,
            exit: error::EXIT_OK,
            notes: Vec::new(),
        }
    }
}

/// Everything a command needs from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The config directory.
    pub home: Home,
    /// The node's base URL.
    pub node_url: String,
    /// `--key FILE`, when signing with a single key file.
    pub key_file: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

impl Ctx {
    /// From the parsed global options.
    ///
    /// # Errors
    /// [`Error::Usage`] when no config directory can be found.
    pub fn new(g: &cli::Global) -> Result<Ctx> {
        Ok(Ctx {
            home: Home::locate(g.home.as_deref())?,
            node_url: g.node.clone(),
            key_file: g.key.clone(),
            json: g.json,
        })
    }

    /// A client for the node.
    ///
    /// # Errors
    /// [`Error::Usage`] for a URL this build cannot use.
    pub fn node(&self) -> Result<NodeClient> {
        NodeClient::new(&self.node_url)
    }

    /// `config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadFile`].
    pub fn config(&self) -> Result<Config> {
        self.home.config()
    }

    /// A controller given as 64 hex digits or as an alias.
    ///
    /// # Errors
    /// [`Error::Usage`] for an unknown alias or malformed key.
    pub fn controller(&self, s: &str) -> Result<PublicKey> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return s
                .to_ascii_lowercase()
                .parse()
                .map_err(|e| Error::Usage(format!("controller {s}: {e}")));
        }
        let cfg = self.config()?;
        cfg.aliases.get(s).copied().ok_or_else(|| {
            Error::Usage(format!(
                "unknown controller {s:?}: give its key (64 hex digits) or add an alias with \
                 `consent controllers add {s} KEY`"
            ))
        })
    }

    /// The alias of a controller key, if any.
    pub fn alias_of(&self, key: &PublicKey) -> Option<String> {
        let cfg = self.config().ok()?;
        cfg.aliases
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(n, _)| n.clone())
    }

    /// The signing keys: the `--key` file, or `M_g` from the key store (asking for the
    /// passphrase, from `CONSENT_PASSPHRASE` or a prompt, when it is sealed).
    ///
    /// # Errors
    /// [`Error::Key`], [`Error::WrongPassphrase`], [`Error::Io`], [`Error::BadFile`].
    pub fn identity(&self) -> Result<Identity> {
        if let Some(p) = &self.key_file {
            return Ok(Identity::KeyFile(KeyFile::load(p)?));
        }
        let path = self.home.keys_path();
        let ks = KeyStore::load(&path)?;
        let pass = if ks.is_encrypted() {
            Some(match prompt::from_env(prompt::PASSPHRASE_ENV) {
                Some(p) => p,
                None => prompt::read_secret(&format!("Passphrase for {}: ", path.display()))?,
            })
        } else {
            None
        };
        let master = ks.unlock(&path, pass.as_ref().map(|p| p.as_str()))?;
        Ok(Identity::Phrase {
            master,
            generation: ks.generation,
            recovery_public: ks.recovery_public,
        })
    }

    /// The subject id for `controller` when it is known without unlocking keys: the key file's
    /// key, or the one remembered in `config.json`.
    ///
    /// # Errors
    /// As [`Ctx::identity`] for a key file; [`Error::Io`], [`Error::BadFile`].
    pub fn known_subject(&self, controller: &PublicKey) -> Result<Option<PublicKey>> {
        if let Some(p) = &self.key_file {
            return Ok(Some(KeyFile::load(p)?.key.public_key()));
        }
        Ok(self.config()?.subjects.get(controller).copied())
    }

    /// The subject id for `controller` with `identity` at hand: the remembered one, else the
    /// current generation's key for `controller`, which is then remembered.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::BadFile`].
    pub fn subject_with(&self, identity: &Identity, controller: &PublicKey) -> Result<PublicKey> {
        match identity {
            Identity::KeyFile(k) => Ok(k.key.public_key()),
            Identity::Phrase { master, .. } => {
                if let Some(s) = self.config()?.subjects.get(controller) {
                    return Ok(*s);
                }
                let s = master.signing_key(controller).public_key();
                let cfg = self.home.update_config(|c| {
                    c.subjects.entry(*controller).or_insert(s);
                    Ok(())
                })?;
                Ok(cfg.subjects.get(controller).copied().unwrap_or(s))
            }
        }
    }

    /// The subject id for `controller`, unlocking the keys only when it is not known yet.
    ///
    /// # Errors
    /// As [`Ctx::identity`].
    pub fn subject(&self, controller: &PublicKey) -> Result<PublicKey> {
        if let Some(s) = self.known_subject(controller)? {
            return Ok(s);
        }
        let id = self.identity()?;
        self.subject_with(&id, controller)
    }
}
