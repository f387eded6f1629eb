//! The command line: every subcommand, flag and help text (clap derive). Kept in the library so
//! that `consent completions` can generate scripts from the same definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::node::DEFAULT_NODE;

const EXAMPLES: &str = "\
Examples:
  consent init                                  create keys (shows 24 recovery words once)
  consent controllers add acme 3b6a27bc...      name a brand's controller key
  consent grant --controller acme --purpose dpv:DirectMarketing --data pd:EmailAddress \\
      --notice-url https://acme.example/privacy --notice-file notice.html --notice-version 3 \\
      --valid-for 13mo --jurisdiction EU
  consent status                                what this device has consented to, verified
  consent withdraw --controller acme            withdraw everything given to acme
  consent receipt 9f86d081...  --json           an ISO/IEC TS 27560-shaped record
  consent check --subject S --controller acme --purpose dpv:DirectMarketing && send_mail
  consent recover                               rotate every chain after losing a device
  consent audit --file ledger.ndjson            replay and verify a node's whole export
  consent verify-decision record.json           re-check a decision record offline

Environment: CONSENT_HOME (config dir), CONSENT_NODE (node URL), CONSENT_PASSPHRASE,
CONSENT_RECOVERY_PHRASE. Exit codes: 0 ok, 1 deny/unknown (check), 2 usage or local error,
3 node unreachable, 4 node data, export or record does not verify, 5 fork, 6 passphrase or key
problem, 7 node head older than one seen. See docs/CLI.md.";

/// consent: sign your consent decisions into your own verifiable chain, and check them.
///
/// Your keys derive from 24 recovery words; each brand (controller) sees a different
/// pseudonymous subject key. Every chain fetched from a node is verified before anything is
/// signed on top of it.
#[derive(Parser, Debug)]
#[command(name = "consent", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print machine-readable JSON on stdout (errors as JSON {error, message} on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// The node's base URL.
    #[arg(long, global = true, env = "CONSENT_NODE", default_value = DEFAULT_NODE, value_name = "URL")]
    pub node: String,
    /// Config directory (default $XDG_CONFIG_HOME/consent, else ~/.config/consent).
    #[arg(long, global = true, env = "CONSENT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Sign with a single plain key file (hex seed) instead of the recovery-phrase keys.
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this device's keys in the config dir (refuses to overwrite).
    ///
    /// Shows the 24 recovery words once, on stderr (never in --json output): write them down.
    /// The master key is sealed with a passphrase (CONSENT_PASSPHRASE or a prompt; empty for
    /// none). With --key FILE, writes a new random key file instead.
    ///
    /// Example: CONSENT_PASSPHRASE=... consent init
    Init {
        /// Store the master key without a passphrase (the file is still mode 0600).
        #[arg(long)]
        no_passphrase: bool,
        /// With --key: a recovery public key (hex) to write into the new key file.
        #[arg(long, value_name = "HEX")]
        recovery_key: Option<String>,
    },
    /// Print your subject id (pseudonymous public key) for a controller.
    ///
    /// Example: consent id --controller acme
    Id {
        /// Controller key (hex) or alias.
        #[arg(long)]
        controller: String,
    },
    /// Recover after losing a device: rotate every known chain to new keys with the 24 words.
    ///
    /// Reads the words from CONSENT_RECOVERY_PHRASE or a prompt. For each known controller
    /// (aliases, remembered subjects and every --controller) it fetches and verifies the chain
    /// and appends a rotate entry signed by the chain's blinded recovery key; then stores the next
    /// generation's master key.
    ///
    /// Example: consent recover --controller acme
    Recover {
        /// A controller (hex or alias) to recover besides the known ones (repeatable).
        #[arg(long)]
        controller: Vec<String>,
        /// Store the new master key without a passphrase.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Give consent to a controller for one or more purposes.
    ///
    /// Example: consent grant --controller acme --purpose dpv:DirectMarketing --valid-for 13mo
    Grant(GrantArgs),
    /// Withdraw consent (no --purpose: everything given to the controller).
    ///
    /// Example: consent withdraw --controller acme --purpose dpv:DirectMarketing
    Withdraw(ChangeArgs),
    /// Record a refusal (no --purpose: everything the controller asked for).
    ///
    /// Example: consent refuse --controller acme --purpose dpv:PersonalisedAdvertising
    Refuse(ChangeArgs),
    /// Current consents per controller and purpose, computed locally from verified chains.
    ///
    /// Example: consent status --controller acme
    Status {
        /// Only this controller (hex or alias).
        #[arg(long)]
        controller: Option<String>,
    },
    /// The chain for a controller, verified, one line per entry.
    ///
    /// Example: consent log --controller acme
    Log {
        /// Controller key (hex) or alias.
        #[arg(long)]
        controller: String,
    },
    /// Fetch one entry by hash, verify it and its chain, and print a receipt.
    ///
    /// With --json, an ISO/IEC TS 27560-shaped consent record.
    ///
    /// Example: consent receipt 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    Receipt {
        /// The entry hash (64 hex digits).
        hash: String,
    },
    /// For brands' scripts: may CONTROLLER use SUBJECT's data for PURPOSE? Exit 0 allow, 1 deny
    /// or unknown, 2 on any error, the node unreachable included (treat every non-zero code as
    /// "do not process").
    ///
    /// Example: consent check --subject 1f2e... --controller acme --purpose dpv:DirectMarketing
    Check {
        /// Subject key (hex).
        #[arg(long)]
        subject: String,
        /// Controller key (hex) or alias.
        #[arg(long)]
        controller: String,
        /// Purpose code, e.g. dpv:DirectMarketing.
        #[arg(long)]
        purpose: String,
        /// Judge as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Ask for the decision record (chain, inclusion proof, signed checkpoint) and verify it
        /// before trusting the answer.
        #[arg(long)]
        evidence: bool,
        /// With --evidence: the node's checkpoint key (`name+id+key`, or a file holding it);
        /// default: the key named in the record.
        #[arg(long, value_name = "VKEY", requires = "evidence")]
        vkey: Option<String>,
        /// With --evidence: write the verified decision record (JSON) to FILE (never overwrites);
        /// `consent verify-decision FILE` re-checks it offline.
        #[arg(long, value_name = "FILE", requires = "evidence")]
        save: Option<PathBuf>,
    },
    /// For auditors: replay a node's whole export and check everything that can be checked
    /// without trusting the node.
    ///
    /// Reads the export from the node (GET /v1/log/export; --node, CONSENT_NODE) or from
    /// --file (written by `consent-node export` or saved from that URL). Checks the format, log
    /// indices, every signature (on all cores), every chain, every checkpoint's signature and
    /// root against the log, and every fork proof; then reconstructs the states. Exit 0 when
    /// nothing is wrong, 4 on any anomaly (each is listed), 3 when the node is unreachable.
    ///
    /// Example: consent audit --file ledger.ndjson --vkey node.vkey --at 2026-01-01
    Audit {
        /// Read the export from this file instead of the node.
        #[arg(long, value_name = "EXPORT")]
        file: Option<PathBuf>,
        /// Reconstruct the states as of this time (RFC 3339 or a date) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Only this controller's states (hex or alias).
        #[arg(long, value_name = "C")]
        controller: Option<String>,
        /// The node's checkpoint key, known independently (`name+id+key`, or a file holding
        /// it); default: the key in the export's header, which proves consistency, not identity.
        #[arg(long, value_name = "VKEY")]
        vkey: Option<String>,
    },
    /// Verify a decision record (`consent check --evidence --save FILE`, or the JSON answer of
    /// GET /v1/consent/check?...&evidence=true) offline. Exit 0 if it verifies, 4 if not.
    ///
    /// Example: consent verify-decision record.json --vkey node.vkey
    VerifyDecision {
        /// The decision record (JSON).
        file: PathBuf,
        /// The node's checkpoint key (`name+id+key`, or a file holding it); default: the key
        /// named in the record, which proves consistency, not identity.
        #[arg(long, value_name = "VKEY")]
        vkey: Option<String>,
    },
    /// Submit an entry signed earlier with --offline (canonical hex or JSON).
    ///
    /// Example: consent submit grant.hex
    Submit {
        /// The file written by `--offline --out FILE` (or `-` for standard input).
        file: PathBuf,
    },
    /// Controller aliases, so `--controller acme` works.
    ///
    /// Example: consent controllers add acme 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    #[command(subcommand)]
    Controllers(ControllersCommand),
    /// Print a shell completion script.
    ///
    /// Example: consent completions bash > ~/.local/share/bash-completion/completions/consent
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Decode an entry (canonical hex, or its JSON form) and verify its form and signature.
    ///
    /// Reads FILE, or standard input when FILE is `-` or absent.
    ///
    /// Example: consent inspect entry.hex
    Inspect {
        /// A file holding one entry as canonical hex or JSON.
        file: Option<PathBuf>,
    },
}

/// `consent controllers ...`.
#[derive(Subcommand, Debug)]
pub enum ControllersCommand {
    /// Name a controller key.
    ///
    /// Example: consent controllers add acme 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    Add {
        /// The alias (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The controller's Ed25519 public key (64 hex digits).
        #[arg(value_name = "KEY")]
        controller_key: String,
    },
    /// List the aliases and the subject id used for each.
    ///
    /// Example: consent --json controllers list
    List,
    /// Forget an alias (the chains are not touched).
    ///
    /// Example: consent controllers remove acme
    Remove {
        /// The alias.
        name: String,
    },
}

/// Where and how to sign without a node.
#[derive(Args, Debug, Clone, Default)]
pub struct OfflineArgs {
    /// Sign without contacting a node; write the entry to --out and submit it later with
    /// `consent submit`.
    #[arg(long, requires = "out")]
    pub offline: bool,
    /// With --offline: where to write the signed entry (canonical hex).
    #[arg(long, value_name = "FILE", requires = "offline")]
    pub out: Option<PathBuf>,
    /// With --offline: the seq to sign at (default: after the local head cache).
    #[arg(long, requires = "offline")]
    pub seq: Option<u64>,
    /// With --offline: the hash of the entry at seq - 1 (default: the local head cache).
    #[arg(long, requires = "offline", value_name = "HASH")]
    pub prev: Option<String>,
}

/// What a grant, withdraw or refuse names besides validity.
#[derive(Args, Debug, Clone)]
pub struct ConsentFields {
    /// Controller key (hex) or alias.
    #[arg(long)]
    pub controller: String,
    /// Personal-data category code, e.g. pd:EmailAddress (repeatable).
    #[arg(long = "data", value_name = "CODE")]
    pub data: Vec<String>,
    /// Legal basis code.
    #[arg(long, default_value = "dpv:Consent", value_name = "CODE")]
    pub legal_basis: String,
    /// Where the notice shown is published.
    #[arg(long, value_name = "URL")]
    pub notice_url: Option<String>,
    /// The exact notice text shown (its SHA-256 is recorded, not the text).
    #[arg(long, value_name = "FILE", conflicts_with = "notice_sha256")]
    pub notice_file: Option<PathBuf>,
    /// SHA-256 of the exact notice text shown (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub notice_sha256: Option<String>,
    /// The notice's version label.
    #[arg(long, value_name = "V")]
    pub notice_version: Option<String>,
    /// Jurisdiction, e.g. EU or US-CA.
    #[arg(long)]
    pub jurisdiction: Option<String>,
    /// Global Privacy Control (Sec-GPC: 1) was on when deciding.
    #[arg(long)]
    pub gpc: bool,
    /// How the decision was indicated: ui-action, written, cli, api, browser-signal.
    #[arg(long, default_value = "cli")]
    pub method: String,
    /// Offline signing.
    #[command(flatten)]
    pub offline: OfflineArgs,
}

/// `consent grant`.
#[derive(Args, Debug, Clone)]
pub struct GrantArgs {
    /// Purpose code, e.g. dpv:DirectMarketing (repeatable, at least one).
    #[arg(long = "purpose", value_name = "CODE", required = true)]
    pub purposes: Vec<String>,
    /// End of validity: a date (2027-06-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", conflicts_with = "valid_for")]
    pub valid_until: Option<String>,
    /// Validity from now: h, d, w, mo or y, e.g. 13mo.
    #[arg(long, value_name = "DURATION")]
    pub valid_for: Option<String>,
    /// The rest.
    #[command(flatten)]
    pub fields: ConsentFields,
}

/// `consent withdraw` and `consent refuse`.
#[derive(Args, Debug, Clone)]
pub struct ChangeArgs {
    /// Purpose code (repeatable); none means every purpose of the controller.
    #[arg(long = "purpose", value_name = "CODE")]
    pub purposes: Vec<String>,
    /// The rest.
    #[command(flatten)]
    pub fields: ConsentFields,
}
