//! The JSON form of an entry, for people and for HTTP.
//!
//! One JSON object per entry with every field of the binary form (keys, hashes and the signature
//! as lowercase hex; times as integer milliseconds). Conversion is lossless both ways: an entry
//! converted to JSON and back is the same entry, with the same bytes and hash. The JSON form is a
//! transport form only: nothing is ever signed or hashed as JSON. Unknown fields are rejected, and
//! a parsed entry passes the same form rules as a decoded one.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::entry::{Body, Consent, Content, Entry, Kind, Method, Notice, Rotation, VERSION};
use crate::error::DecodeError;
use crate::keys::{Hash, PublicKey, Signature};

/// The members of an entry's JSON form, in the order of docs/PROTOCOL.md section 9's table (the
/// order in which [`EntryJson`] writes them).
pub const MEMBERS: [&str; 20] = [
    "version",
    "kind",
    "subject",
    "seq",
    "prev",
    "issued_at",
    "signer",
    "recovery",
    "controller",
    "purposes",
    "data",
    "legal_basis",
    "notice",
    "valid_until",
    "jurisdiction",
    "method",
    "gpc",
    "new_key",
    "next_recovery",
    "signature",
];

/// The notice, in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeJson {
    /// Where it is published.
    pub url: String,
    /// SHA-256 of the text shown, hex.
    pub sha256: Hash,
    /// Version label.
    pub version: String,
}

/// An entry in JSON. Consent fields are present on grant, withdraw and refuse; `new_key` and
/// `next_recovery` on rotate; `recovery` at seq 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryJson {
    /// Entry version; always 1.
    pub version: u8,
    /// `grant`, `withdraw`, `refuse` or `rotate`.
    pub kind: String,
    /// Subject key, hex.
    pub subject: PublicKey,
    /// Position, from 1.
    pub seq: u64,
    /// Previous entry's hash, hex (64 zeros at seq 1).
    pub prev: Hash,
    /// Signer's claimed time, ms since the Unix epoch.
    pub issued_at: u64,
    /// Signing key, hex.
    pub signer: PublicKey,
    /// Recovery-key commitment (seq 1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Hash>,
    /// Controller key (consent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<PublicKey>,
    /// Purpose codes (consent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purposes: Option<Vec<String>>,
    /// Data-category codes (consent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<String>>,
    /// Legal-basis code (consent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// Notice (optional).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "notice_object"
    )]
    pub notice: Option<NoticeJson>,
    /// End of validity, ms (grants, optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
    /// Jurisdiction (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// Indication method (consent kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Global Privacy Control (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpc: Option<bool>,
    /// New signing key (rotate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key: Option<PublicKey>,
    /// Next recovery commitment (rotate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_recovery: Option<Hash>,
    /// Signature, hex.
    pub signature: Signature,
}

impl From<&Entry> for EntryJson {
    fn from(e: &Entry) -> Self {
        let c = &e.content;
        let mut j = EntryJson {
            version: VERSION,
            kind: c.kind().as_str().to_owned(),
            subject: c.subject,
            seq: c.seq,
            prev: c.prev,
            issued_at: c.issued_at,
            signer: c.signer,
            recovery: c.recovery,
            controller: None,
            purposes: None,
            data: None,
            legal_basis: None,
            notice: None,
            valid_until: None,
            jurisdiction: None,
            method: None,
            gpc: None,
            new_key: None,
            next_recovery: None,
            signature: e.signature,
        };
        match &c.body {
            Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => {
                j.controller = Some(k.controller);
                j.purposes = Some(k.purposes.clone());
                j.data = Some(k.data.clone());
                j.legal_basis = Some(k.legal_basis.clone());
                j.notice = k.notice.as_ref().map(|n| NoticeJson {
                    url: n.url.clone(),
                    sha256: n.sha256,
                    version: n.version.clone(),
                });
                j.valid_until = k.valid_until;
                j.jurisdiction = k.jurisdiction.clone();
                j.method = Some(k.method.as_str().to_owned());
                j.gpc = k.gpc;
            }
            Body::Rotate(r) => {
                j.new_key = Some(r.new_key);
                j.next_recovery = Some(r.next_recovery);
            }
        }
        j
    }
}

fn need<T>(v: Option<T>, field: &str, kind: Kind) -> Result<T, DecodeError> {
    v.ok_or_else(|| DecodeError::Json(format!("a {kind} entry needs field {field}")))
}

fn forbid<T>(v: &Option<T>, field: &str, kind: Kind) -> Result<(), DecodeError> {
    match v {
        Some(_) => Err(DecodeError::Json(format!(
            "a {kind} entry must not have field {field}"
        ))),
        None => Ok(()),
    }
}

impl TryFrom<EntryJson> for Entry {
    type Error = DecodeError;

    /// Converts and checks every form rule (the signature is not checked).
    fn try_from(j: EntryJson) -> Result<Entry, DecodeError> {
        if j.version != VERSION {
            return Err(DecodeError::UnknownVersion(j.version));
        }
        let kind: Kind = j.kind.parse()?;
        let body = if kind == Kind::Rotate {
            forbid(&j.controller, "controller", kind)?;
            forbid(&j.purposes, "purposes", kind)?;
            forbid(&j.data, "data", kind)?;
            forbid(&j.legal_basis, "legal_basis", kind)?;
            forbid(&j.notice, "notice", kind)?;
            forbid(&j.valid_until, "valid_until", kind)?;
            forbid(&j.jurisdiction, "jurisdiction", kind)?;
            forbid(&j.method, "method", kind)?;
            forbid(&j.gpc, "gpc", kind)?;
            Body::Rotate(Rotation {
                new_key: need(j.new_key, "new_key", kind)?,
                next_recovery: need(j.next_recovery, "next_recovery", kind)?,
            })
        } else {
            forbid(&j.new_key, "new_key", kind)?;
            forbid(&j.next_recovery, "next_recovery", kind)?;
            let consent = Consent {
                controller: need(j.controller, "controller", kind)?,
                purposes: need(j.purposes, "purposes", kind)?,
                data: need(j.data, "data", kind)?,
                legal_basis: need(j.legal_basis, "legal_basis", kind)?,
                notice: j.notice.map(|n| Notice {
                    url: n.url,
                    sha256: n.sha256,
                    version: n.version,
                }),
                valid_until: j.valid_until,
                jurisdiction: j.jurisdiction,
                method: need(j.method, "method", kind)?.parse::<Method>()?,
                gpc: j.gpc,
            };
            match kind {
                Kind::Grant => Body::Grant(consent),
                Kind::Withdraw => Body::Withdraw(consent),
                _ => Body::Refuse(consent),
            }
        };
        let content = Content {
            subject: j.subject,
            seq: j.seq,
            prev: j.prev,
            issued_at: j.issued_at,
            signer: j.signer,
            recovery: j.recovery,
            body,
        };
        content.check_form()?;
        Ok(Entry {
            content,
            signature: j.signature,
        })
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EntryJson::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let j: EntryJson = object(deserializer)?;
        Entry::try_from(j).map_err(serde::de::Error::custom)
    }
}

/// Takes a JSON object only. serde's derived struct deserializers also take a sequence (the
/// members by position, `[1, "grant", …]`), which the JSON form does not allow: an entry and its
/// notice are objects (docs/PROTOCOL.md section 9).
struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// Deserializes `T` from a JSON object only (not from an array of its members by position), for
/// request bodies whose documented form is an object.
///
/// # Errors
/// The deserializer's error when the input is not an object or `T` does not parse from it.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectOnly::<T>(PhantomData))
}

/// A `T` that deserializes from a JSON object only (see [`object`]); for request bodies.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(Object)
    }
}

/// Deserializes a list of `T`, each from a JSON object only (see [`object`]).
///
/// # Errors
/// The deserializer's error when the input is not a list of objects that parse as `T`.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
}

/// The `notice` member: an object, or `null` (absent).
fn notice_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NoticeJson>, D::Error> {
    struct Notice;
    impl<'de> Visitor<'de> for Notice {
        type Value = Option<NoticeJson>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            object(d).map(Some)
        }
    }
    d.deserialize_option(Notice)
}
