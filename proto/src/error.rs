//! Typed errors, one enum per concern. Messages are lowercase without a trailing period.

use crate::keys::{Hash, PublicKey};

/// A hex string that is not the expected newtype.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Wrong number of hex digits.
    #[error("{what}: expected {expected} hex digits, found {found}")]
    Length {
        /// What was being parsed.
        what: &'static str,
        /// Expected digit count.
        expected: usize,
        /// Found digit count.
        found: usize,
    },
    /// Upper-case digits (the canonical text form is lowercase).
    #[error("{what}: hex must be lowercase")]
    NotLowercase {
        /// What was being parsed.
        what: &'static str,
    },
    /// A character that is not a hex digit.
    #[error("{what}: not a hex string")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
    },
}

/// Why a signature is invalid under the rule of [`crate::sig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// S is not below the group order L.
    #[error("signature scalar S is not canonical (S >= L)")]
    NonCanonicalS,
    /// The public key is not a canonical point encoding.
    #[error("public key is not a canonical point encoding")]
    NonCanonicalKey,
    /// The public key does not decode to a curve point.
    #[error("public key is not a curve point")]
    InvalidKey,
    /// The public key has small order.
    #[error("public key has small order")]
    SmallOrderKey,
    /// R is not a canonical point encoding.
    #[error("signature point R is not a canonical encoding")]
    NonCanonicalR,
    /// R does not decode to a curve point.
    #[error("signature point R is not a curve point")]
    InvalidR,
    /// R has small order.
    #[error("signature point R has small order")]
    SmallOrderR,
    /// The verification equation does not hold.
    #[error("signature does not verify")]
    Equation,
}

/// Why bytes (or a JSON form) are not a well-formed entry. Returned by the decoder and by the
/// JSON conversion, which share the same form rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes than an entry may have.
    #[error("entry is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended inside a field.
    #[error("input ends inside field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left after the signature.
    #[error("{count} trailing bytes after the entry")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A version byte this implementation does not know.
    #[error("unknown entry version {0}")]
    UnknownVersion(u8),
    /// A kind byte outside 1..=4.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    /// An unknown indication-method byte or name.
    #[error("unknown indication method {0}")]
    UnknownMethod(String),
    /// A GPC byte outside 0..=2.
    #[error("invalid gpc value {0}")]
    BadGpc(u8),
    /// An option tag other than 0 or 1.
    #[error("field {field}: option tag must be 0 or 1, found {tag}")]
    BadOptionTag {
        /// The field.
        field: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A number outside its allowed range.
    #[error("field {field}: value {value} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// prev must be zero exactly at seq 1.
    #[error("prev must be all zero at seq 1 and only there")]
    PrevZeroMismatch,
    /// The recovery commitment must be present exactly at seq 1.
    #[error("recovery commitment must be present at seq 1 and only there")]
    RecoveryPresence,
    /// A rotate entry at seq 1.
    #[error("a chain cannot start with a rotate entry")]
    RotateAtSeqOne,
    /// A set with more elements than allowed.
    #[error("field {field}: {count} elements, at most {max} allowed")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Elements found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A grant with no purposes.
    #[error("a grant must name at least one purpose")]
    NoPurposes,
    /// A string of forbidden length.
    #[error("field {field}: length {len} not in {min}..={max}")]
    Length {
        /// The field.
        field: &'static str,
        /// Length found.
        len: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// A string with a character outside its alphabet.
    #[error("field {field}: character outside the allowed alphabet")]
    BadCharacter {
        /// The field.
        field: &'static str,
    },
    /// A set that is not strictly increasing (unsorted or with duplicates).
    #[error("field {field}: elements must be sorted by bytes and unique")]
    NotSorted {
        /// The field.
        field: &'static str,
    },
    /// A code that is not in the vocabulary for its field.
    #[error("field {field}: unknown code {code}")]
    UnknownCode {
        /// The field.
        field: &'static str,
        /// The code.
        code: String,
    },
    /// valid_until on an entry that is not a grant.
    #[error("valid_until is only allowed on grants")]
    ValidUntilNotAllowed,
    /// valid_until not after issued_at.
    #[error("valid_until must be after issued_at")]
    ValidUntilNotAfterIssue,
    /// A JSON field that this kind needs is missing, or one it must not have is present.
    #[error("json: {0}")]
    Json(String),
}

/// Why a single entry is invalid on its own (form and signature).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Malformed.
    #[error("malformed entry: {0}")]
    Form(#[from] DecodeError),
    /// At seq 1 the signer must be the subject.
    #[error("the first entry must be signed by the subject key")]
    FirstSignerNotSubject,
    /// The key given to sign with is not the signer the content names.
    #[error("the signing key does not match the entry's signer field")]
    SignerMismatch,
    /// The signature fails.
    #[error("bad signature: {0}")]
    Signature(#[from] SigError),
}

/// Why a chain (or a link between two entries) is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An entry is invalid on its own.
    #[error("entry at seq {seq}: {error}")]
    Entry {
        /// Its seq.
        seq: u64,
        /// Why.
        error: EntryError,
    },
    /// The chain does not start at seq 1.
    #[error("chain must start at seq 1, found seq {found}")]
    NotFromStart {
        /// The first seq found.
        found: u64,
    },
    /// An entry of another subject.
    #[error("entry at seq {seq} belongs to subject {found}, not {expected}")]
    SubjectMismatch {
        /// Its seq.
        seq: u64,
        /// The chain's subject.
        expected: PublicKey,
        /// The entry's subject.
        found: PublicKey,
    },
    /// seq is not the previous seq plus one.
    #[error("seq not incremental: expected {expected}, found {found}")]
    SeqNotIncremental {
        /// Expected seq.
        expected: u64,
        /// Found seq.
        found: u64,
    },
    /// prev is not the hash of the previous entry.
    #[error("entry at seq {seq}: prev {found} is not the previous entry's hash {expected}")]
    PrevMismatch {
        /// Its seq.
        seq: u64,
        /// The previous entry's hash.
        expected: Hash,
        /// The entry's prev.
        found: Hash,
    },
    /// issued_at decreased.
    #[error("entry at seq {seq}: issued_at {found} is before the previous entry's {previous}")]
    TimeWentBack {
        /// Its seq.
        seq: u64,
        /// The previous issued_at.
        previous: u64,
        /// This issued_at.
        found: u64,
    },
    /// Signed by a key that is not the chain's current signing key (e.g. a retired key).
    #[error("entry at seq {seq}: signed by {found}, but the current signing key is {expected}")]
    WrongSigner {
        /// Its seq.
        seq: u64,
        /// The current key.
        expected: PublicKey,
        /// The signer named in the entry.
        found: PublicKey,
    },
    /// A rotate entry whose signer does not match the recovery commitment.
    #[error("entry at seq {seq}: rotation signer does not match the committed recovery key")]
    RecoveryKeyMismatch {
        /// Its seq.
        seq: u64,
    },
}

/// Why a fork proof does not prove a fork.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForkError {
    /// The two entries are the same entry.
    #[error("the two entries are identical")]
    SameEntry,
    /// Different subjects or positions.
    #[error("the two entries are not at the same (subject, seq)")]
    DifferentPosition,
    /// Entries not in canonical order (hash of `a` must be below hash of `b`).
    #[error("entries must be ordered by hash")]
    NotOrdered,
    /// The key history is not a valid prefix of inception and rotations.
    #[error("key history: {0}")]
    KeyHistory(String),
    /// One of the two entries is not valid under the key history.
    #[error("entry {which}: {error}")]
    Entry {
        /// "a" or "b".
        which: &'static str,
        /// Why.
        error: ChainError,
    },
    /// Malformed encoding.
    #[error("malformed fork proof: {0}")]
    Decode(#[from] DecodeError),
}
