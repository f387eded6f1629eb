//! consent-ledger's pure core: entries, their canonical encoding, hashing, signatures, chain
//! rules, fork proofs, the vocabulary and consent state.
//!
//! This crate does no I/O: no files, sockets, clocks or randomness. Time and keys come in as
//! arguments. docs/PROTOCOL.md specifies every byte it produces.
//!
//! # Layout
//! - [`keys`]: `PublicKey`, `SecretKey`, `Hash`, `Signature` newtypes (hex text form).
//! - [`sig`]: the one Ed25519 validity rule, single and batch.
//! - [`entry`]: entry v1 types, domain tags, hashing and signing.
//! - [`encoding`]: the canonical binary encoding and its strict decoder.
//! - [`json`]: the lossless JSON form.
//! - [`chain`]: entry, link and chain verification; key rotation; fork proofs.
//! - [`state`]: folding a chain into consent decisions.
//! - [`merkle`]: RFC 6962 Merkle trees: roots, inclusion and consistency proofs.
//! - [`note`]: C2SP signed notes and tlog checkpoints (Ed25519).
//! - [`vocab`]: DPV purposes, legal bases, data categories; the TCF v2.2 mapping.
//! - [`audit`]: replaying an export and reporting every anomaly.
//! - [`sync`]: the replication wire format (gossip payloads, the sync protocol).
//! - [`api`]: HTTP data-transfer types shared by node and client.
//! - [`evidence`]: offline verification of decision records.
//! - [`error`]: one error enum per concern.
//!
//! # Example
//! ```
//! use proto::entry::{Body, Consent, Content, Method, recovery_commitment};
//! use proto::keys::{Hash, SecretKey};
//! use proto::state::{ConsentState, Status};
//!
//! let subject = SecretKey::from_seed([1; 32]);
//! let recovery = SecretKey::from_seed([2; 32]);
//! let brand = SecretKey::from_seed([3; 32]).public_key();
//! let entry = Content {
//!     subject: subject.public_key(),
//!     seq: 1,
//!     prev: Hash::ZERO,
//!     issued_at: 1_767_225_600_000,
//!     signer: subject.public_key(),
//!     recovery: Some(recovery_commitment(&recovery.public_key())),
//!     body: Body::Grant(Consent {
//!         controller: brand,
//!         purposes: vec!["dpv:Marketing".into()],
//!         data: vec!["pd:EmailAddress".into()],
//!         legal_basis: "dpv:Consent".into(),
//!         notice: None,
//!         valid_until: None,
//!         jurisdiction: Some("EU".into()),
//!         method: Method::Cli,
//!         gpc: None,
//!     }),
//! }
//! .sign(&subject)?;
//! let bytes = entry.to_bytes();
//! let decoded = proto::entry::Entry::from_bytes(&bytes)?;
//! proto::chain::verify_chain(&[decoded.clone()])?;
//! let state = ConsentState::fold([&decoded]);
//! let d = state.decide(&brand, "dpv:DirectMarketing", 1_767_225_600_001)?;
//! assert_eq!(d.status, Status::Given);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod chain;
pub mod encoding;
pub mod entry;
pub mod error;
pub mod evidence;
pub mod json;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod sig;
pub mod state;
pub mod sync;
pub mod vocab;
pub mod witness;

pub use chain::{verify_chain, verify_entry, verify_link, ChainHead, ForkProof};
pub use entry::{Body, Consent, Content, Entry, Kind, Method, Notice, Rotation};
pub use error::{ChainError, DecodeError, EntryError, ForkError, HexError, SigError};
pub use keys::{Hash, PublicKey, SecretKey, Signature};
pub use state::{ConsentState, Decision, Status};
