//! Entry version 1: the signed record a customer appends to their chain.
//!
//! An [`Entry`] is its [`Content`] (every field that is signed) plus the Ed25519 signature over
//! [`SIGNATURE_DOMAIN`] followed by the canonical encoding of the content. The entry hash is
//! SHA-256 over [`HASH_DOMAIN`] followed by the full encoded entry (content and signature).
//! Byte layouts and bounds: docs/PROTOCOL.md and [`crate::encoding`].

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{DecodeError, EntryError};
use crate::keys::{Hash, PublicKey, SecretKey, Signature};
use crate::vocab::{self, TermKind};

/// The only entry version this crate knows.
pub const VERSION: u8 = 1;
/// Domain-separation tag prepended to the encoded content before signing.
pub const SIGNATURE_DOMAIN: &[u8] = b"consent-ledger/entry-signature/v1\0";
/// Domain-separation tag prepended to the encoded entry before hashing.
pub const HASH_DOMAIN: &[u8] = b"consent-ledger/entry-hash/v1\0";
/// Domain-separation tag prepended to a recovery public key to form its commitment.
pub const RECOVERY_DOMAIN: &[u8] = b"consent-ledger/recovery-key/v1\0";

/// Largest encoded entry, in bytes.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// Largest seq and largest time value: 2^53 - 1, so that both survive JSON numbers.
pub const MAX_U53: u64 = (1 << 53) - 1;
/// Most purposes (and most data categories) in one entry.
pub const MAX_CODES: usize = 16;
/// Longest notice URL, in bytes.
pub const MAX_URL: usize = 512;
/// Longest notice version, in bytes.
pub const MAX_NOTICE_VERSION: usize = 64;
/// Longest jurisdiction, in bytes.
pub const MAX_JURISDICTION: usize = 16;

/// What an entry does.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Consent given (`dpv:ConsentGiven`).
    Grant = 1,
    /// Consent withdrawn by the subject (`dpv:ConsentWithdrawn`).
    Withdraw = 2,
    /// Consent refused when asked (`dpv:ConsentRefused`).
    Refuse = 3,
    /// The chain moves to a new signing key, authorised by the recovery key.
    Rotate = 4,
}

impl Kind {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Grant => "grant",
            Kind::Withdraw => "withdraw",
            Kind::Refuse => "refuse",
            Kind::Rotate => "rotate",
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Grant,
            2 => Kind::Withdraw,
            3 => Kind::Refuse,
            4 => Kind::Rotate,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Ok(match s {
            "grant" => Kind::Grant,
            "withdraw" => Kind::Withdraw,
            "refuse" => Kind::Refuse,
            "rotate" => Kind::Rotate,
            _ => return Err(DecodeError::Json(format!("unknown kind {s:?}"))),
        })
    }
}

/// How the subject indicated the decision (ISO/IEC TS 27560 "collection method").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// An affirmative action in a user interface (a button, a tick box).
    UiAction = 1,
    /// A written or signed statement.
    Written = 2,
    /// The `consent` command line.
    Cli = 3,
    /// An API call made on the subject's instruction.
    Api = 4,
    /// A browser or device signal such as Global Privacy Control.
    BrowserSignal = 5,
}

impl Method {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::UiAction => "ui-action",
            Method::Written => "written",
            Method::Cli => "cli",
            Method::Api => "api",
            Method::BrowserSignal => "browser-signal",
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Method::UiAction,
            2 => Method::Written,
            3 => Method::Cli,
            4 => Method::Api,
            5 => Method::BrowserSignal,
            _ => return None,
        })
    }
}

impl FromStr for Method {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Ok(match s {
            "ui-action" => Method::UiAction,
            "written" => Method::Written,
            "cli" => Method::Cli,
            "api" => Method::Api,
            "browser-signal" => Method::BrowserSignal,
            _ => return Err(DecodeError::UnknownMethod(s.to_owned())),
        })
    }
}

/// The notice the subject was shown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notice {
    /// Where the notice is published.
    pub url: String,
    /// SHA-256 of the exact text shown.
    pub sha256: Hash,
    /// The notice's version label.
    pub version: String,
}

/// The body of a grant, withdraw or refuse entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Consent {
    /// The brand (data controller), by its Ed25519 public key.
    pub controller: PublicKey,
    /// Purpose codes, sorted by bytes, unique. Empty on a withdraw or refuse means "every purpose
    /// of this controller"; a grant names at least one.
    pub purposes: Vec<String>,
    /// Personal-data category codes, sorted, unique; may be empty.
    pub data: Vec<String>,
    /// Legal-basis code, e.g. `dpv:Consent`.
    pub legal_basis: String,
    /// The notice shown, if any.
    pub notice: Option<Notice>,
    /// End of validity (ms since the Unix epoch); grants only.
    pub valid_until: Option<u64>,
    /// Jurisdiction, e.g. `EU` or `US-CA`.
    pub jurisdiction: Option<String>,
    /// How the decision was indicated.
    pub method: Method,
    /// Global Privacy Control state at the time: `Some(true)` when `Sec-GPC: 1` was present.
    pub gpc: Option<bool>,
}

/// The body of a rotate entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rotation {
    /// The chain's signing key from the next entry on.
    pub new_key: PublicKey,
    /// Commitment to the next recovery key ([`recovery_commitment`]).
    pub next_recovery: Hash,
}

/// What an entry carries after its header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Consent given.
    Grant(Consent),
    /// Consent withdrawn.
    Withdraw(Consent),
    /// Consent refused.
    Refuse(Consent),
    /// Key rotation.
    Rotate(Rotation),
}

impl Body {
    /// The entry kind.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Grant(_) => Kind::Grant,
            Body::Withdraw(_) => Kind::Withdraw,
            Body::Refuse(_) => Kind::Refuse,
            Body::Rotate(_) => Kind::Rotate,
        }
    }

    /// The consent body, unless this is a rotation.
    pub fn consent(&self) -> Option<&Consent> {
        match self {
            Body::Grant(c) | Body::Withdraw(c) | Body::Refuse(c) => Some(c),
            Body::Rotate(_) => None,
        }
    }
}

/// Everything an entry's signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Content {
    /// The chain's identity: the public key that signed seq 1.
    pub subject: PublicKey,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the entry at `seq - 1`; all zero at seq 1.
    pub prev: Hash,
    /// When the signer says it signed (ms since the Unix epoch).
    pub issued_at: u64,
    /// The key that signs this entry: the chain's current signing key, or for a rotation the
    /// recovery key being revealed.
    pub signer: PublicKey,
    /// At seq 1 only: commitment to the first recovery key.
    pub recovery: Option<Hash>,
    /// Kind and kind-specific fields.
    pub body: Body,
}

impl Content {
    /// The entry kind.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// The canonical encoding (no signature).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        crate::encoding::encode_content(self, &mut out);
        out
    }

    /// The exact bytes that are signed: [`SIGNATURE_DOMAIN`] then [`Content::to_bytes`].
    pub fn signing_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + SIGNATURE_DOMAIN.len());
        out.extend_from_slice(SIGNATURE_DOMAIN);
        crate::encoding::encode_content(self, &mut out);
        out
    }

    /// Checks every form rule (bounds, alphabets, sorted sets, vocabulary, kind rules) that the
    /// decoder checks.
    ///
    /// # Errors
    /// The first rule broken, as a [`DecodeError`].
    pub fn check_form(&self) -> Result<(), DecodeError> {
        check_form(self)
    }

    /// Signs the content. The signer field must already name `key`'s public key.
    ///
    /// # Errors
    /// A form error, or [`EntryError::SignerMismatch`] if `key` is not the named signer.
    pub fn sign(self, key: &SecretKey) -> Result<Entry, EntryError> {
        self.check_form()?;
        if key.public_key() != self.signer {
            return Err(EntryError::SignerMismatch);
        }
        let signature = key.sign(&self.signing_input());
        Ok(Entry {
            content: self,
            signature,
        })
    }
}

/// A signed entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The signed fields.
    pub content: Content,
    /// Ed25519 signature by `content.signer` over [`Content::signing_input`].
    pub signature: Signature,
}

impl Entry {
    /// The canonical encoding: content, then the 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        crate::encoding::encode_content(&self.content, &mut out);
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// Decodes canonical bytes (form rules only; the signature is not checked).
    ///
    /// # Errors
    /// See [`crate::encoding::decode_entry`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::encoding::decode_entry(bytes)
    }

    /// The entry hash: SHA-256 over [`HASH_DOMAIN`] and [`Entry::to_bytes`].
    pub fn hash(&self) -> Hash {
        hash_entry_bytes(&self.to_bytes())
    }

    /// Shorthand for `content.subject`.
    pub fn subject(&self) -> PublicKey {
        self.content.subject
    }

    /// Shorthand for `content.seq`.
    pub fn seq(&self) -> u64 {
        self.content.seq
    }

    /// Shorthand for the kind.
    pub fn kind(&self) -> Kind {
        self.content.kind()
    }

    /// Verifies the signature against the signer the entry names (and, at seq 1, that the signer
    /// is the subject). Whether that signer is authorised at this position is a chain question
    /// ([`crate::chain`]).
    ///
    /// # Errors
    /// [`EntryError::FirstSignerNotSubject`] or [`EntryError::Signature`].
    pub fn verify_signature(&self) -> Result<(), EntryError> {
        if self.content.seq == 1 && self.content.signer != self.content.subject {
            return Err(EntryError::FirstSignerNotSubject);
        }
        crate::sig::verify(
            &self.content.signer,
            &self.content.signing_input(),
            &self.signature,
        )?;
        Ok(())
    }
}

/// The entry hash of already-encoded entry bytes.
pub fn hash_entry_bytes(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(bytes);
    Hash::from_bytes(h.finalize().into())
}

/// The commitment to a recovery public key: SHA-256 over [`RECOVERY_DOMAIN`] and the key.
pub fn recovery_commitment(key: &PublicKey) -> Hash {
    let mut h = Sha256::new();
    h.update(RECOVERY_DOMAIN);
    h.update(key.as_bytes());
    Hash::from_bytes(h.finalize().into())
}

/// SHA-256 of arbitrary bytes (e.g. a notice text).
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash::from_bytes(Sha256::digest(bytes).into())
}

fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), DecodeError> {
    if value < min || value > max {
        return Err(DecodeError::OutOfRange { field, value });
    }
    Ok(())
}

fn check_str(
    field: &'static str,
    s: &str,
    min: usize,
    max: usize,
    allowed: fn(u8) -> bool,
) -> Result<(), DecodeError> {
    if s.len() < min || s.len() > max {
        return Err(DecodeError::Length {
            field,
            len: s.len(),
            min,
            max,
        });
    }
    if !s.bytes().all(allowed) {
        return Err(DecodeError::BadCharacter { field });
    }
    Ok(())
}

fn check_codes(field: &'static str, codes: &[String], kind: TermKind) -> Result<(), DecodeError> {
    if codes.len() > MAX_CODES {
        return Err(DecodeError::TooMany {
            field,
            count: codes.len(),
            max: MAX_CODES,
        });
    }
    for c in codes {
        check_code(field, c, kind)?;
    }
    if codes.windows(2).any(|w| w[0].as_bytes() >= w[1].as_bytes()) {
        return Err(DecodeError::NotSorted { field });
    }
    Ok(())
}

fn check_code(field: &'static str, code: &str, kind: TermKind) -> Result<(), DecodeError> {
    check_str(field, code, 3, 64, |b| {
        b.is_ascii_alphanumeric() || b == b':'
    })?;
    if !vocab::v1().is(code, kind) {
        return Err(DecodeError::UnknownCode {
            field,
            code: code.to_owned(),
        });
    }
    Ok(())
}

/// Printable ASCII without space (URLs, notice versions).
pub(crate) fn is_visible_ascii(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

pub(crate) fn is_jurisdiction_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'
}

fn check_form(c: &Content) -> Result<(), DecodeError> {
    check_range("seq", c.seq, 1, MAX_U53)?;
    check_range("issued_at", c.issued_at, 0, MAX_U53)?;
    if (c.seq == 1) != c.prev.is_zero() {
        return Err(DecodeError::PrevZeroMismatch);
    }
    if (c.seq == 1) != c.recovery.is_some() {
        return Err(DecodeError::RecoveryPresence);
    }
    match &c.body {
        Body::Rotate(_) => {
            if c.seq == 1 {
                return Err(DecodeError::RotateAtSeqOne);
            }
        }
        Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => {
            if matches!(c.body, Body::Grant(_)) && k.purposes.is_empty() {
                return Err(DecodeError::NoPurposes);
            }
            check_codes("purposes", &k.purposes, TermKind::Purpose)?;
            check_codes("data", &k.data, TermKind::DataCategory)?;
            check_code("legal_basis", &k.legal_basis, TermKind::LegalBasis)?;
            if let Some(n) = &k.notice {
                check_str("notice.url", &n.url, 1, MAX_URL, is_visible_ascii)?;
                check_str(
                    "notice.version",
                    &n.version,
                    1,
                    MAX_NOTICE_VERSION,
                    is_visible_ascii,
                )?;
            }
            if let Some(v) = k.valid_until {
                if !matches!(c.body, Body::Grant(_)) {
                    return Err(DecodeError::ValidUntilNotAllowed);
                }
                check_range("valid_until", v, 0, MAX_U53)?;
                if v <= c.issued_at {
                    return Err(DecodeError::ValidUntilNotAfterIssue);
                }
            }
            if let Some(j) = &k.jurisdiction {
                check_str("jurisdiction", j, 2, MAX_JURISDICTION, is_jurisdiction_char)?;
            }
        }
    }
    Ok(())
}
