//! The CLI's one error type and its exit codes (documented in docs/CLI.md).

use proto::keys::PublicKey;

/// Exit code: success (for `consent check`: allow).
pub const EXIT_OK: u8 = 0;
/// Exit code of `consent check` when the answer is deny or unknown.
pub const EXIT_DENY: u8 = 1;
/// Exit code: bad usage or a local error (files, arguments, vocabulary, a request the node refused).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the node is unreachable or unavailable.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the node served something that does not verify (or, for `consent audit` and
/// `consent verify-decision`, the export or record does not verify).
pub const EXIT_UNVERIFIED: u8 = 4;
/// Exit code: a fork (HTTP 409, a forked chain, or a chain that contradicts the local head cache).
pub const EXIT_FORK: u8 = 5;
/// Exit code: wrong passphrase, wrong recovery phrase, or another key problem.
pub const EXIT_KEY: u8 = 6;
/// Exit code: the node's head is older than one this device has seen; nothing was signed.
pub const EXIT_STALE: u8 = 7;

/// Everything that can go wrong in a `consent` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or a local precondition that does not hold.
    #[error("{0}")]
    Usage(String),
    /// A file or directory operation failed.
    // The OS error is in the message and deliberately not a `source`: reports print the error
    // chain, which would repeat it.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A local file exists but cannot be parsed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: String,
        /// Why it is unusable.
        message: String,
    },
    /// A code that is not in the vocabulary for its field.
    #[error("unknown {field} code {code:?}{}", did_you_mean(.suggestions))]
    UnknownCode {
        /// `purpose`, `data` or `legal basis`.
        field: &'static str,
        /// The code given.
        code: String,
        /// The nearest codes of that field.
        suggestions: Vec<String>,
    },
    /// No answer from the node (connection refused, timeout, DNS, ...).
    #[error("node {url} is unreachable: {message}")]
    NodeUnreachable {
        /// The node's base URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The node answered 5xx (read-only, overloaded, storage error).
    #[error("node {url} is unavailable (HTTP {status} {code}): {message}")]
    NodeUnavailable {
        /// The node's base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error code of its JSON body.
        code: String,
        /// The message of its JSON body.
        message: String,
    },
    /// The node refused the request (4xx other than 409).
    #[error("node {url} refused the request (HTTP {status} {code}): {message}")]
    NodeRefused {
        /// The node's base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error code of its JSON body.
        code: String,
        /// The message of its JSON body.
        message: String,
    },
    /// The node served a chain, an entry or an answer that does not verify.
    #[error("the node served data that does not verify: {0} (nothing was signed)")]
    Unverified(String),
    /// A record or export checked offline does not verify (`consent verify-decision`).
    #[error("{0}")]
    Invalid(String),
    /// A fork: the node reported one (409 or the forked flag), or its chain contradicts the
    /// local head cache at the same seq.
    #[error("fork: {0}")]
    Fork(String),
    /// The passphrase does not decrypt the key store.
    #[error("wrong passphrase for {path}")]
    WrongPassphrase {
        /// The key store.
        path: String,
    },
    /// Any other key problem (missing keys, wrong recovery phrase, a chain signed by another key).
    #[error("{0}")]
    Key(String),
    /// The head to sign on is older than one this device has seen.
    #[error(
        "the head to sign on for subject {subject} is seq {node_seq}, but this device has seen \
         seq {seen_seq}: refusing to sign on an older head, which would fork the chain (a \
         lagging or restored node, or entries signed offline and not submitted yet: submit them \
         with `consent submit`)"
    )]
    StaleHead {
        /// The subject.
        subject: PublicKey,
        /// The seq of the head offered (by the node, or by --seq).
        node_seq: u64,
        /// The highest seq this device has seen.
        seen_seq: u64,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl Error {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::Io { .. }
            | Error::BadFile { .. }
            | Error::UnknownCode { .. }
            | Error::NodeRefused { .. } => EXIT_USAGE,
            Error::NodeUnreachable { .. } | Error::NodeUnavailable { .. } => EXIT_UNREACHABLE,
            Error::Unverified(_) | Error::Invalid(_) => EXIT_UNVERIFIED,
            Error::Fork(_) => EXIT_FORK,
            Error::WrongPassphrase { .. } | Error::Key(_) => EXIT_KEY,
            Error::StaleHead { .. } => EXIT_STALE,
        }
    }

    /// A stable machine-readable name, used as `error` in the `--json` error object.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Io { .. } => "io",
            Error::BadFile { .. } => "bad_file",
            Error::UnknownCode { .. } => "unknown_code",
            Error::NodeUnreachable { .. } => "node_unreachable",
            Error::NodeUnavailable { .. } => "node_unavailable",
            Error::NodeRefused { .. } => "node_refused",
            Error::Unverified(_) | Error::Invalid(_) => "does_not_verify",
            Error::Fork(_) => "fork",
            Error::WrongPassphrase { .. } => "wrong_passphrase",
            Error::Key(_) => "key",
            Error::StaleHead { .. } => "stale_head",
        }
    }

    /// An I/O error with the operation and path that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            error: source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
