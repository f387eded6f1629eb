//! HTTP data-transfer types shared by the node (which serves them) and the CLI (which reads
//! them). JSON only; see docs/API.md. With the `openapi` feature they also describe themselves
//! for the node's generated OpenAPI document.

use serde::{Deserialize, Serialize};

use crate::chain::ForkProof;
use crate::entry::Entry;
use crate::keys::{Hash, PublicKey};
use crate::state::Status;

/// Every error response: a stable machine-readable code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code, e.g. `invalid_entry`, `not_found`, `fork`, `too_large`.
    pub error: String,
    /// What went wrong, precisely.
    pub message: String,
    /// For `fork`: the proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub fork_proof: Option<Box<ForkProof>>,
}

/// What happened to a submitted entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SubmitStatus {
    /// Stored durably (HTTP 201).
    Stored,
    /// Already stored (HTTP 200).
    Duplicate,
    /// Waiting for its predecessor (HTTP 202); not in the ledger.
    Pending,
}

/// Answer to `POST /v1/entries`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitResponse {
    /// stored, duplicate or pending.
    pub status: SubmitStatus,
    /// The entry hash.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// The subject.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: PublicKey,
    /// The entry's seq.
    pub seq: u64,
    /// Position in this node's ingest log (absent while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

/// allow, deny or unknown. Fail closed: a client must treat anything but allow as deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Consent given and valid at the time asked.
    Allow,
    /// Withdrawn, refused, expired or forked.
    Deny,
    /// No entry of the subject touches this controller and purpose.
    Unknown,
}

impl Verdict {
    /// The verdict for a status.
    pub fn from_status(s: Status) -> Verdict {
        match s {
            Status::Given => Verdict::Allow,
            Status::Unknown => Verdict::Unknown,
            _ => Verdict::Deny,
        }
    }

    /// The verdict's name, as in JSON: `allow`, `deny` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One consent question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct CheckQuery {
    /// Subject key, hex.
    pub subject: String,
    /// Controller key, hex.
    pub controller: String,
    /// Purpose code, e.g. `dpv:DirectMarketing`.
    pub purpose: String,
    /// Judge as of this time (RFC 3339) instead of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Attach the evidence (chain, inclusion proof, signed checkpoint).
    #[serde(default)]
    pub evidence: bool,
}

/// The answer to one consent question, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResponse {
    /// allow, deny or unknown.
    pub decision: Verdict,
    /// DPV consent status (`dpv:ConsentGiven`, ...) or `forked`.
    pub status: String,
    /// The subject asked about.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: PublicKey,
    /// The controller asked about.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub controller: PublicKey,
    /// The purpose asked about.
    pub purpose: String,
    /// Hash of the deciding entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub hash: Option<Hash>,
    /// Seq of the deciding entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Notice version of the deciding grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
    /// End of validity of the deciding grant (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
    /// The subject's head seq on this node (0 when unknown).
    pub head_seq: u64,
    /// This node's durable ingest-log size when it answered (flushed entries only).
    pub log_size: u64,
    /// The time judged at (ms since the Unix epoch).
    pub at: u64,
    /// With `evidence=true`: everything needed to re-check this answer offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<Evidence>>,
}

/// The evidence behind a decision: the subject's whole chain as stored (canonical hex, seq 1 to
/// the head), the inclusion proof of the head in a signed checkpoint of the node's log, and the
/// checkpoint with the node's verifier key. `proto::evidence::verify_decision` re-checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// The chain, canonical hex per entry, seq 1 first.
    pub chain: Vec<String>,
    /// Inclusion of the head entry in the checkpoint's tree (absent when the chain is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_inclusion: Option<InclusionProof>,
    /// The signed checkpoint (C2SP note text).
    pub checkpoint: String,
    /// The node's checkpoint verifier key (`name+id+key`).
    pub log_vkey: String,
}

/// `POST /v1/consent/check` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCheckRequest {
    /// Up to 1,000 questions, each a JSON object.
    #[serde(deserialize_with = "crate::json::objects")]
    pub questions: Vec<CheckQuery>,
}

/// One answer of a batch: the answer, or the error for that question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum BatchAnswer {
    /// Answered.
    Answer(CheckResponse),
    /// This question was invalid.
    Error(ErrorBody),
}

/// `POST /v1/consent/check` answer, in question order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCheckResponse {
    /// One per question.
    pub answers: Vec<BatchAnswer>,
}

/// An entry as served: hash, JSON form, canonical hex, and where it sits in this node's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryRecord {
    /// Entry hash.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// Position in this node's ingest log.
    pub log_index: u64,
    /// Canonical encoding, hex.
    pub hex: String,
    /// JSON form.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub entry: Entry,
}

/// `GET /v1/subjects/{subject}/entries`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainResponse {
    /// The subject.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: PublicKey,
    /// Head seq on this node (0 when unknown).
    pub head_seq: u64,
    /// Whether a fork proof is stored for this subject.
    pub forked: bool,
    /// Entries from `from_seq`, in seq order.
    pub entries: Vec<EntryRecord>,
}

/// One (controller, purpose) of a subject's current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentItem {
    /// The controller.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub controller: PublicKey,
    /// The purpose named by some entry.
    pub purpose: String,
    /// allow, deny or unknown.
    pub decision: Verdict,
    /// DPV status.
    pub status: String,
    /// Deciding entry's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Deciding entry's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub hash: Option<Hash>,
    /// End of validity, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
}

/// `GET /v1/subjects/{subject}/consents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentsResponse {
    /// The subject.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: PublicKey,
    /// Head seq.
    pub head_seq: u64,
    /// Whether forked (then every decision is deny).
    pub forked: bool,
    /// Per controller and purpose.
    pub consents: Vec<ConsentItem>,
    /// The time judged at (ms).
    pub at: u64,
}

/// `GET /v1/node/info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// The node's Ed25519 public key.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub node_key: PublicKey,
    /// Software version.
    pub version: String,
    /// Entry (and vocabulary) version.
    pub entry_version: u8,
    /// Vocabulary version label.
    pub vocabulary: String,
    /// Ingest-log size.
    pub log_size: u64,
    /// Subjects stored.
    pub subjects: u64,
    /// Entries waiting for a predecessor.
    pub pending: u64,
    /// Forked subjects.
    pub forks: u64,
    /// False after a failed flush: the node no longer accepts writes.
    pub writable: bool,
    /// The origin line of this node's checkpoints (also the key name that signs them).
    pub log_origin: String,
    /// The C2SP verifier key of this node's checkpoints (`name+id+key`).
    pub log_vkey: String,
    /// The node's libp2p peer id (empty when p2p is off).
    #[serde(default)]
    pub peer_id: String,
    /// The node's p2p listen addresses, with `/p2p/<peer id>`.
    #[serde(default)]
    pub p2p_addrs: Vec<String>,
    /// The C2SP cosigner verifier key this node cosigns other logs' checkpoints with, as a
    /// witness (`consent-witness/<node key hex>+id+key`, type 0x04).
    #[serde(default)]
    pub witness_vkey: String,
    /// Split-view proofs this node holds (logs that signed two roots for one size).
    #[serde(default)]
    pub split_views: u64,
    /// True when a freshness bound is set (`--max-staleness-secs`) and no sync round with a
    /// peer has completed within it: checks that would allow answer deny, status `stale`.
    #[serde(default)]
    pub stale: bool,
    /// When a sync round with a peer last completed (ms since the Unix epoch; 0: never).
    #[serde(default)]
    pub last_sync_ms: u64,
    /// True while the node puts back entries its store lost on disk (found by the log journal
    /// at start): it takes no writes and refuses the damaged subjects' chains (503) meanwhile.
    #[serde(default)]
    pub repairing: bool,
    /// Subjects whose chains are refused until the repair is done.
    #[serde(default)]
    pub damaged_subjects: u64,
}

/// `GET /v1/peers`: one connected peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerInfo {
    /// The peer's libp2p id.
    pub peer_id: String,
    /// Addresses of its connections.
    pub addresses: Vec<String>,
    /// Its agent (from identify), e.g. `consent-node/0.1.0`.
    pub agent: Option<String>,
    /// Seconds since the first connection.
    pub connected_secs: u64,
    /// Its gossipsub peer score, as this node sees it.
    pub score: Option<f64>,
    /// Invalid messages it has sent (10 get it banned).
    pub strikes: u32,
}

/// `GET /v1/log/proof/inclusion`: an entry's inclusion in this node's log at `tree_size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    /// The entry hash (the Merkle leaf is `SHA-256(0x00 || hash)`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// Its log index.
    pub log_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The root at that size.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub root: Hash,
    /// The audit path, leaf to root.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub proof: Vec<Hash>,
}

/// `GET /v1/log/proof/consistency`: the tree of `from` entries is a prefix of the tree of `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Root at `from`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from_root: Hash,
    /// Root at `to`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub to_root: Hash,
    /// The proof hashes.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub proof: Vec<Hash>,
}

/// One state-change event of the `GET /v1/events` stream (the SSE `data:` field).
///
/// `grant`, `withdraw` and `refuse` are ledger events: their SSE id is `log_index`. `expire` (a
/// grant's valid_until passed while it still decided) and `fork` (the subject's chain forked;
/// every check for it now denies) carry no SSE id, and `log_index` is the grant's (expire) or 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentEvent {
    /// `grant`, `withdraw`, `refuse`, `expire` or `fork`.
    pub kind: String,
    /// The subject.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub subject: PublicKey,
    /// The controller.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub controller: PublicKey,
    /// Purposes named (empty: every purpose of the controller).
    pub purposes: Vec<String>,
    /// The entry's seq.
    pub seq: u64,
    /// The entry's hash.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// The entry's log index (the SSE event id for ledger events).
    pub log_index: u64,
    /// For `expire`: the valid_until that passed (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
}

/// One line of `GET /v1/log/entries` (NDJSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Position in the ingest log, from 0.
    pub log_index: u64,
    /// Entry hash.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// Canonical encoding, hex.
    pub hex: String,
}
