//! Consent state: a verified chain folded into answers to "may controller C use this subject's
//! data for purpose P at time T?".
//!
//! Rules (docs/PROTOCOL.md, "Consent state"):
//! - Entries are taken in seq order; wall-clock time never reorders them.
//! - An entry *touches* (C, P) when its controller is C and
//!   - a grant names P or a purpose broader than P (consent to `dpv:Marketing` covers
//!     `dpv:DirectMarketing`, not the other way round);
//!   - a withdraw or refuse names no purposes (everything of C), or names P, a purpose broader
//!     than P, or a purpose narrower than P (withdrawing `dpv:DirectMarketing` means P =
//!     `dpv:Marketing` can no longer be used as a whole).
//! - The touching entry with the highest seq decides: grant -> given (or expired once
//!   `T >= valid_until`), withdraw -> withdrawn, refuse -> refused; none -> unknown.
//! - Only "given" allows. A forked chain answers forked, which denies.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::entry::{Body, Entry, Kind};
use crate::error::DecodeError;
use crate::keys::{Hash, PublicKey};
use crate::vocab::{self, TermKind};

/// The consent status of one (subject, controller, purpose), in DPV terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `dpv:ConsentGiven`.
    Given,
    /// `dpv:ConsentWithdrawn`.
    Withdrawn,
    /// `dpv:ConsentRefused`.
    Refused,
    /// `dpv:ConsentExpired`.
    Expired,
    /// `dpv:ConsentUnknown`: no entry touches this controller and purpose.
    Unknown,
    /// The subject's chain is forked: its keys signed two entries at one position.
    Forked,
}

impl Status {
    /// The DPV consent-status code (or `forked`).
    pub fn dpv(self) -> &'static str {
        match self {
            Status::Given => "dpv:ConsentGiven",
            Status::Withdrawn => "dpv:ConsentWithdrawn",
            Status::Refused => "dpv:ConsentRefused",
            Status::Expired => "dpv:ConsentExpired",
            Status::Unknown => "dpv:ConsentUnknown",
            Status::Forked => "forked",
        }
    }

    /// Whether processing is allowed: only for [`Status::Given`].
    pub fn allows(self) -> bool {
        self == Status::Given
    }
}

/// The answer for one (controller, purpose, time), with the deciding entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The status.
    pub status: Status,
    /// Seq of the deciding entry (none for unknown).
    pub seq: Option<u64>,
    /// Hash of the deciding entry (none for unknown).
    pub hash: Option<Hash>,
    /// The deciding grant's notice version, if any.
    pub notice_version: Option<String>,
    /// The deciding grant's end of validity, if any.
    pub valid_until: Option<u64>,
}

impl Decision {
    /// Whether the decision allows processing.
    pub fn allows(&self) -> bool {
        self.status.allows()
    }

    fn unknown() -> Decision {
        Decision {
            status: Status::Unknown,
            seq: None,
            hash: None,
            notice_version: None,
            valid_until: None,
        }
    }
}

/// What the index keeps of an entry that touches a purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Seq of the entry.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
    /// Grant, withdraw or refuse.
    pub kind: Kind,
    /// For grants: end of validity.
    pub valid_until: Option<u64>,
    /// Notice version, if any.
    pub notice_version: Option<String>,
}

/// Per-controller index: for each purpose code named, the latest grant and the latest withdraw or
/// refuse naming it; and the latest withdraw or refuse naming no purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Latest withdraw/refuse with an empty purpose list.
    pub blanket: Option<Mark>,
    /// Latest grant naming each purpose.
    pub grants: HashMap<String, Mark>,
    /// Latest withdraw/refuse naming each purpose.
    pub negatives: HashMap<String, Mark>,
}

/// The folded consent state of one chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// Seq of the last entry applied (0 for none).
    pub head_seq: u64,
    /// Per controller.
    pub controllers: HashMap<PublicKey, ControllerState>,
}

fn later(a: Option<&Mark>, b: Option<&Mark>) -> Option<Mark> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x.seq >= y.seq { x.clone() } else { y.clone() }),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

impl ConsentState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds a verified chain (in seq order).
    pub fn fold<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut s = Self::new();
        for e in entries {
            s.apply(e, e.hash());
        }
        s
    }

    /// Folds the entries of a verified chain whose `issued_at <= at` (a prefix, since issued_at
    /// never decreases along a chain): the state as the signer declared it at time `at`.
    pub fn fold_until<'a>(entries: impl IntoIterator<Item = &'a Entry>, at: u64) -> Self {
        let mut s = Self::new();
        for e in entries {
            if e.content.issued_at > at {
                break;
            }
            s.apply(e, e.hash());
        }
        s
    }

    /// Applies the next verified entry (`hash` is its entry hash). Entries must come in seq
    /// order; an entry at or below the current head is ignored.
    pub fn apply(&mut self, entry: &Entry, hash: Hash) {
        if entry.seq() <= self.head_seq {
            return;
        }
        self.head_seq = entry.seq();
        let (Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k)) = &entry.content.body else {
            return;
        };
        let mark = Mark {
            seq: entry.seq(),
            hash,
            kind: entry.kind(),
            valid_until: k.valid_until,
            notice_version: k.notice.as_ref().map(|n| n.version.clone()),
        };
        let cs = self.controllers.entry(k.controller).or_default();
        let grant = entry.kind() == Kind::Grant;
        if k.purposes.is_empty() && !grant {
            cs.blanket = Some(mark);
            return;
        }
        for p in &k.purposes {
            let map = if grant {
                &mut cs.grants
            } else {
                &mut cs.negatives
            };
            map.insert(p.clone(), mark.clone());
        }
    }

    /// The decision for `controller` and `purpose` at time `now` (ms; used only for expiry).
    ///
    /// # Errors
    /// [`DecodeError::UnknownCode`] if `purpose` is not a purpose of the vocabulary.
    pub fn decide(
        &self,
        controller: &PublicKey,
        purpose: &str,
        now: u64,
    ) -> Result<Decision, DecodeError> {
        let v = vocab::v1();
        let term = v
            .get(purpose)
            .filter(|t| t.kind == TermKind::Purpose)
            .ok_or_else(|| DecodeError::UnknownCode {
                field: "purpose",
                code: purpose.to_owned(),
            })?;
        let Some(cs) = self.controllers.get(controller) else {
            return Ok(Decision::unknown());
        };
        let mut best: Option<Mark> = cs.blanket.clone();
        for p in std::iter::once(&term.code).chain(term.ancestors.iter()) {
            best = later(best.as_ref(), cs.grants.get(p));
            best = later(best.as_ref(), cs.negatives.get(p));
        }
        for p in &term.descendants {
            best = later(best.as_ref(), cs.negatives.get(p));
        }
        Ok(match best {
            None => Decision::unknown(),
            Some(m) => mark_decision(&m, now),
        })
    }

    /// Every (controller, purpose) that some entry names, with its decision at `now`, sorted.
    pub fn all(&self, now: u64) -> Vec<(PublicKey, String, Decision)> {
        let mut out = Vec::new();
        for (c, cs) in &self.controllers {
            let mut purposes: Vec<&String> = cs.grants.keys().chain(cs.negatives.keys()).collect();
            purposes.sort();
            purposes.dedup();
            for p in purposes {
                if let Ok(d) = self.decide(c, p, now) {
                    out.push((*c, p.clone(), d));
                }
            }
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }
}

fn mark_decision(m: &Mark, now: u64) -> Decision {
    let status = match m.kind {
        Kind::Grant => match m.valid_until {
            Some(v) if now >= v => Status::Expired,
            _ => Status::Given,
        },
        Kind::Withdraw => Status::Withdrawn,
        Kind::Refuse => Status::Refused,
        Kind::Rotate => Status::Unknown,
    };
    Decision {
        status,
        seq: Some(m.seq),
        hash: Some(m.hash),
        notice_version: m.notice_version.clone(),
        valid_until: m.valid_until,
    }
}

/// The status of an answer a node gave instead of allow because its view was older than its
/// freshness bound (the chain as it held it would have allowed).
pub const STALE_STATUS: &str = "stale";

/// The decision for a forked subject: always [`Status::Forked`], which denies.
pub fn forked_decision() -> Decision {
    Decision {
        status: Status::Forked,
        ..Decision::unknown()
    }
}
