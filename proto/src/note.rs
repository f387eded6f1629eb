//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and tlog checkpoints
//! (c2sp.org/tlog-checkpoint).
//!
//! A note is its text (ending in a newline), a blank line, and signature lines
//! `— <name> <base64(key ID || signature)>`. The key ID of an Ed25519 key is the first four bytes
//! of `SHA-256(name || 0x0A || 0x01 || public key)`. A checkpoint is a note whose text is the
//! log's origin, its size in decimal, the base64 root hash, and optional extension lines.
//! Signatures use the Ed25519 rule of [`crate::sig`].

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::keys::{Hash, PublicKey, SecretKey, Signature};

/// Signature type byte of Ed25519 note signatures.
pub const ED25519_TYPE: u8 = 0x01;
/// Most signature lines read from one note.
pub const MAX_SIGNATURES: usize = 64;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
const EM_DASH: &str = "\u{2014}";

/// Why a note, key or checkpoint is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a well-formed note.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// Not a well-formed verifier key string.
    #[error("malformed verifier key: {0}")]
    BadKey(String),
    /// No signature by the given key.
    #[error("no signature by {0}")]
    Unsigned(String),
    /// A signature by the key that does not verify.
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    /// Not a well-formed checkpoint body.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
}

/// A key name that the note format allows: non-empty, no whitespace, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key ID of an Ed25519 key named `name`.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    typed_key_id(name, ED25519_TYPE, key)
}

/// The key ID of a key of signature type `sig_type`: `SHA-256(name || 0x0A || type || key)[:4]`
/// (signed notes use type 0x01, cosignatures 0x04).
pub fn typed_key_id(name: &str, sig_type: u8, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, sig_type]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The vkey string `name+hex(id)+base64(type || key)` of an Ed25519 key of signature type
/// `sig_type`.
pub fn typed_vkey(name: &str, sig_type: u8, key: &PublicKey) -> String {
    let mut k = vec![sig_type];
    k.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(typed_key_id(name, sig_type, key)),
        B64.encode(k)
    )
}

/// Parses a vkey string whose key is an Ed25519 key of signature type `sig_type`; returns the
/// name and the key once the key ID is checked.
///
/// # Errors
/// [`NoteError::BadKey`].
pub fn parse_typed_vkey(s: &str, sig_type: u8) -> Result<(String, PublicKey), NoteError> {
    // The key part is standard base64, which may itself contain '+': split twice only.
    let mut parts = s.trim_end_matches('\n').splitn(3, '+');
    let (Some(name), Some(id), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::BadKey("expected name+id+key".into()));
    };
    if !is_valid_name(name) {
        return Err(NoteError::BadKey("invalid key name".into()));
    }
    let key = B64
        .decode(key)
        .map_err(|_| NoteError::BadKey("key is not base64".into()))?;
    if key.len() != 33 || key[0] != sig_type {
        return Err(NoteError::BadKey(format!(
            "not an Ed25519 key of signature type {sig_type:#04x}"
        )));
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&key[1..]);
    let pk = PublicKey::from_bytes(pk);
    if hex::encode(typed_key_id(name, sig_type, &pk)) != id {
        return Err(NoteError::BadKey(
            "key ID does not match name and key".into(),
        ));
    }
    Ok((name.to_owned(), pk))
}

/// A named Ed25519 verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    /// Key name, e.g. the log's origin.
    pub name: String,
    /// The public key.
    pub key: PublicKey,
}

impl Verifier {
    /// The key ID.
    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// The vkey string `name+hex(id)+base64(0x01 || key)`.
    pub fn to_vkey(&self) -> String {
        typed_vkey(&self.name, ED25519_TYPE, &self.key)
    }

    /// Parses a vkey string.
    ///
    /// # Errors
    /// [`NoteError::BadKey`].
    pub fn from_vkey(s: &str) -> Result<Verifier, NoteError> {
        let (name, key) = parse_typed_vkey(s, ED25519_TYPE)?;
        Ok(Verifier { name, key })
    }
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: [u8; 4],
    /// Signature bytes (64 for Ed25519; other algorithms' lengths vary).
    pub signature: Vec<u8>,
}

/// A signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Signs `text` (which must end in a newline) with `key` under `name`.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] for text without a final newline or an invalid name.
    pub fn sign(text: &str, name: &str, key: &SecretKey) -> Result<Note, NoteError> {
        check_text(text)?;
        if !is_valid_name(name) {
            return Err(NoteError::Malformed("invalid key name".into()));
        }
        let mut n = Note {
            text: text.to_owned(),
            signatures: vec![],
        };
        n.add_signature(name, key);
        Ok(n)
    }

    /// Adds a signature by `key` under `name` (e.g. a second key).
    pub fn add_signature(&mut self, name: &str, key: &SecretKey) {
        let sig = key.sign(self.text.as_bytes());
        self.signatures.push(NoteSignature {
            name: name.to_owned(),
            id: key_id(name, &key.public_key()),
            signature: sig.as_bytes().to_vec(),
        });
    }

    /// Verifies the signature by `v`; other signatures are ignored.
    ///
    /// # Errors
    /// [`NoteError::Unsigned`] without a signature by that name and key ID,
    /// [`NoteError::BadSignature`] when it does not verify.
    pub fn verify(&self, v: &Verifier) -> Result<(), NoteError> {
        let id = v.id();
        let mut found = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == v.name && s.id == id)
        {
            found = true;
            let sig: [u8; 64] = s
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| NoteError::BadSignature(v.name.clone()))?;
            crate::sig::verify(&v.key, self.text.as_bytes(), &Signature::from_bytes(sig))
                .map_err(|_| NoteError::BadSignature(v.name.clone()))?;
        }
        if found {
            Ok(())
        } else {
            Err(NoteError::Unsigned(v.name.clone()))
        }
    }

    /// The serialised note.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut payload = s.id.to_vec();
            payload.extend_from_slice(&s.signature);
            out.push_str(&format!("{EM_DASH} {} {}\n", s.name, B64.encode(payload)));
        }
        out
    }

    /// Parses a serialised note (signatures are not verified).
    ///
    /// # Errors
    /// [`NoteError::Malformed`].
    pub fn parse(s: &str) -> Result<Note, NoteError> {
        if s.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note too large".into()));
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control character".into()));
        }
        if !s.ends_with('\n') {
            return Err(NoteError::Malformed("missing final newline".into()));
        }
        // The text ends at the last blank line.
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line before signatures".into()))?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        let mut signatures = Vec::new();
        for line in sigs.lines() {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures".into()));
            }
            let rest = line
                .strip_prefix(EM_DASH)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| {
                    NoteError::Malformed("signature line must start with '— '".into())
                })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::Malformed("signature line without a signature".into()))?;
            if !is_valid_name(name) {
                return Err(NoteError::Malformed("invalid key name".into()));
            }
            let payload = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64".into()))?;
            if payload.len() < 5 {
                return Err(NoteError::Malformed("signature too short".into()));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                id: [payload[0], payload[1], payload[2], payload[3]],
                signature: payload[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures".into()));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline".into()));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("control character".into()));
    }
    Ok(())
}

/// The body of a tlog checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Extension lines (opaque, non-empty).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.as_bytes())
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Parses a note text as a checkpoint.
    ///
    /// # Errors
    /// [`NoteError::BadCheckpoint`].
    pub fn from_text(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("missing final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_line = lines.next().ok_or_else(|| bad("missing size"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("size must be decimal without leading zeros"));
        }
        let size: u64 = size_line.parse().map_err(|_| bad("size out of range"))?;
        let root = B64
            .decode(lines.next().ok_or_else(|| bad("missing root"))?)
            .map_err(|_| bad("root is not base64"))?;
        let root: [u8; 32] = root.try_into().map_err(|_| bad("root must be 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root: Hash::from_bytes(root),
            extensions,
        })
    }

    /// Signs the checkpoint as a note under `name` (by convention the origin).
    ///
    /// # Errors
    /// [`NoteError`] for an invalid origin or name.
    pub fn sign(&self, name: &str, key: &SecretKey) -> Result<Note, NoteError> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(NoteError::BadCheckpoint("invalid origin".into()));
        }
        Note::sign(&self.to_text(), name, key)
    }

    /// Parses a signed checkpoint, verifies it against `v`, and checks that its origin is the
    /// key name of `v` (a log signs its checkpoints under its origin).
    ///
    /// # Errors
    /// [`NoteError`].
    pub fn open(note: &str, v: &Verifier) -> Result<(Checkpoint, Note), NoteError> {
        let n = Note::parse(note)?;
        n.verify(v)?;
        let cp = Checkpoint::from_text(&n.text)?;
        cp.check_origin(v)?;
        Ok((cp, n))
    }

    /// Checks that the checkpoint's origin is the key name of `v`: a log signs its checkpoints
    /// under its origin.
    ///
    /// # Errors
    /// [`NoteError::BadCheckpoint`] naming both.
    pub fn check_origin(&self, v: &Verifier) -> Result<(), NoteError> {
        if self.origin == v.name {
            return Ok(());
        }
        Err(NoteError::BadCheckpoint(format!(
            "origin {:?} is not the signing key's name {:?}",
            self.origin, v.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOO: &str = include_str!("../testdata/c2sp/signed-note-example-foo.txt");
    const FOO_VKEY: &str = include_str!("../testdata/c2sp/signed-note-example-foo.vkey");
    const POEM: &str = include_str!("../testdata/c2sp/signed-note-example-poem.txt");
    const CHECKPOINT: &str = include_str!("../testdata/c2sp/checkpoint-example.txt");

    #[test]
    fn c2sp_example_note_verifies_with_its_vkey() {
        let v = Verifier::from_vkey(FOO_VKEY).expect("vkey");
        assert_eq!(v.name, "example.com/foo");
        assert_eq!(hex::encode(v.id()), "530d903a");
        assert_eq!(v.to_vkey(), FOO_VKEY.trim_end());
        let n = Note::parse(FOO).expect("note");
        assert_eq!(n.text, "This is an example message.\n");
        n.verify(&v).expect("verifies");
        assert_eq!(n.to_text(), FOO);
        // One changed byte of the text fails.
        let tampered = FOO.replacen("example", "exbmple", 1);
        assert_eq!(
            Note::parse(&tampered).expect("parses").verify(&v),
            Err(NoteError::BadSignature("example.com/foo".into()))
        );
    }

    #[test]
    fn vkeys_whose_base64_contains_plus_parse() {
        let mut found = 0;
        for seed in 0u8..=255 {
            let v = Verifier {
                name: "node.example/log".into(),
                key: SecretKey::from_seed([seed; 32]).public_key(),
            };
            let vkey = v.to_vkey();
            if vkey.matches('+').count() > 2 {
                found += 1;
                assert_eq!(Verifier::from_vkey(&vkey), Ok(v), "{vkey}");
            }
        }
        assert!(found > 10, "only {found} keys with '+' in their base64");
    }

    #[test]
    fn c2sp_examples_parse() {
        let poem = Note::parse(POEM).expect("poem");
        assert!(
            poem.text.contains("\n\n"),
            "the text keeps its own blank line"
        );
        assert_eq!(hex::encode(poem.signatures[0].id), "367ba04b");
        assert_eq!(poem.to_text(), POEM);
        let cp = Note::parse(CHECKPOINT).expect("checkpoint note");
        assert_eq!(hex::encode(cp.signatures[0].id), "033de0ae");
        let body = Checkpoint::from_text(&cp.text).expect("checkpoint body");
        assert_eq!(body.origin, "example.com/behind-the-sofa");
        assert_eq!(body.size, 20_852_163);
        assert_eq!(body.to_text(), cp.text);
    }

    #[test]
    fn our_checkpoints_round_trip_and_reject_tampering() {
        let key = SecretKey::from_seed([5; 32]);
        let v = Verifier {
            name: "node.example/log".into(),
            key: key.public_key(),
        };
        let cp = Checkpoint {
            origin: "node.example/log".into(),
            size: 42,
            root: Hash::from_bytes([9; 32]),
            extensions: vec![],
        };
        let note = cp.sign(&v.name, &key).expect("sign").to_text();
        let (back, _) = Checkpoint::open(&note, &v).expect("open");
        assert_eq!(back, cp);
        let other = Verifier {
            name: "node.example/log".into(),
            key: SecretKey::from_seed([6; 32]).public_key(),
        };
        assert!(matches!(
            Checkpoint::open(&note, &other),
            Err(NoteError::Unsigned(_))
        ));
        assert!(Checkpoint::open(&note.replace("42", "43"), &v).is_err());
        // Validly signed, but under a name that is not the checkpoint's origin.
        let elsewhere = Checkpoint {
            origin: "other.example/log".into(),
            ..cp.clone()
        };
        let misnamed = elsewhere.sign(&v.name, &key).expect("sign").to_text();
        assert!(matches!(
            Checkpoint::open(&misnamed, &v),
            Err(NoteError::BadCheckpoint(m)) if m.contains("not the signing key's name")
        ));
        for bad in [
            "",
            "a\n",
            "o\n01\nAAAA\n",
            "o\n1\nnot-base64\n",
            "o\n1\nAAAA\n",
        ] {
            assert!(Checkpoint::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(Note::parse("text\n\nnot a signature\n").is_err());
        assert!(Note::parse("text\n").is_err());
    }
}
