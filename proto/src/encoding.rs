//! The canonical binary encoding of entries (version 1).
//!
//! Fixed-width big-endian integers, fixed-size keys and hashes, length-prefixed strings, one-byte
//! option tags, and sets sorted by bytes. There is exactly one encoding of each entry: the decoder
//! rejects every other byte string (trailing bytes, unsorted or duplicate sets, option tags other
//! than 0 and 1, lengths over their bounds, unknown versions, kinds and codes), so
//! `encode(decode(b)) == b` whenever `decode(b)` succeeds. The layout is in docs/PROTOCOL.md.

use crate::entry::{
    Body, Consent, Content, Entry, Method, Notice, Rotation, MAX_CODES, MAX_ENTRY_BYTES,
    MAX_JURISDICTION, MAX_NOTICE_VERSION, MAX_URL, VERSION,
};
use crate::error::DecodeError;
use crate::keys::{Hash, PublicKey, Signature};

/// Appends the canonical encoding of `c` (no signature) to `out`. `c` is assumed to pass
/// [`Content::check_form`]; values over their bounds are not representable and would be cut.
pub fn encode_content(c: &Content, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(c.body.kind() as u8);
    out.extend_from_slice(c.subject.as_bytes());
    out.extend_from_slice(&c.seq.to_be_bytes());
    out.extend_from_slice(c.prev.as_bytes());
    out.extend_from_slice(&c.issued_at.to_be_bytes());
    out.extend_from_slice(c.signer.as_bytes());
    match &c.recovery {
        None => out.push(0),
        Some(h) => {
            out.push(1);
            out.extend_from_slice(h.as_bytes());
        }
    }
    match &c.body {
        Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => encode_consent(k, out),
        Body::Rotate(r) => {
            out.extend_from_slice(r.new_key.as_bytes());
            out.extend_from_slice(r.next_recovery.as_bytes());
        }
    }
}

fn put_str8(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    let n = b.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&b[..n]);
}

fn put_set(codes: &[String], out: &mut Vec<u8>) {
    let n = codes.len().min(255);
    out.push(n as u8);
    for c in &codes[..n] {
        put_str8(c, out);
    }
}

fn encode_consent(k: &Consent, out: &mut Vec<u8>) {
    out.extend_from_slice(k.controller.as_bytes());
    put_set(&k.purposes, out);
    put_set(&k.data, out);
    put_str8(&k.legal_basis, out);
    match &k.notice {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            let url = n.url.as_bytes();
            let len = url.len().min(u16::MAX as usize);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&url[..len]);
            out.extend_from_slice(n.sha256.as_bytes());
            put_str8(&n.version, out);
        }
    }
    match k.valid_until {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    match &k.jurisdiction {
        None => out.push(0),
        Some(j) => {
            out.push(1);
            put_str8(j, out);
        }
    }
    out.push(k.method as u8);
    out.push(match k.gpc {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
}

/// A cursor over input bytes; every read names the field it reads for error messages.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated { field })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }

    fn arr32(&mut self, field: &'static str) -> Result<[u8; 32], DecodeError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, field)?);
        Ok(a)
    }

    fn tag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadOptionTag { field, tag }),
        }
    }

    fn string(
        &mut self,
        len: usize,
        max: usize,
        field: &'static str,
    ) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::Length {
                field,
                len,
                min: 0,
                max,
            });
        }
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadCharacter { field })
    }

    fn str8(&mut self, max: usize, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u8(field)? as usize;
        self.string(len, max, field)
    }

    fn set(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let count = self.u8(field)? as usize;
        if count > MAX_CODES {
            return Err(DecodeError::TooMany {
                field,
                count,
                max: MAX_CODES,
            });
        }
        (0..count).map(|_| self.str8(64, field)).collect()
    }
}

/// Decodes one entry from exactly `bytes`, checking every form rule (not the signature).
///
/// # Errors
/// [`DecodeError::TooLarge`] over [`MAX_ENTRY_BYTES`]; [`DecodeError::Truncated`];
/// [`DecodeError::TrailingBytes`]; [`DecodeError::UnknownVersion`], [`DecodeError::UnknownKind`],
/// [`DecodeError::UnknownMethod`], [`DecodeError::BadGpc`], [`DecodeError::BadOptionTag`]; and
/// every error of [`Content::check_form`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind_byte = r.u8("kind")?;
    let kind =
        crate::entry::Kind::from_byte(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    let subject = PublicKey::from_bytes(r.arr32("subject")?);
    let seq = r.u64("seq")?;
    let prev = Hash::from_bytes(r.arr32("prev")?);
    let issued_at = r.u64("issued_at")?;
    let signer = PublicKey::from_bytes(r.arr32("signer")?);
    let recovery = if r.tag("recovery")? {
        Some(Hash::from_bytes(r.arr32("recovery")?))
    } else {
        None
    };
    let body = if kind == crate::entry::Kind::Rotate {
        Body::Rotate(Rotation {
            new_key: PublicKey::from_bytes(r.arr32("new_key")?),
            next_recovery: Hash::from_bytes(r.arr32("next_recovery")?),
        })
    } else {
        let consent = decode_consent(&mut r)?;
        match kind {
            crate::entry::Kind::Grant => Body::Grant(consent),
            crate::entry::Kind::Withdraw => Body::Withdraw(consent),
            _ => Body::Refuse(consent),
        }
    };
    let mut sig = [0u8; 64];
    sig.copy_from_slice(r.take(64, "signature")?);
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            count: bytes.len() - r.pos,
        });
    }
    let content = Content {
        subject,
        seq,
        prev,
        issued_at,
        signer,
        recovery,
        body,
    };
    content.check_form()?;
    Ok(Entry {
        content,
        signature: Signature::from_bytes(sig),
    })
}

fn decode_consent(r: &mut Reader<'_>) -> Result<Consent, DecodeError> {
    let controller = PublicKey::from_bytes(r.arr32("controller")?);
    let purposes = r.set("purposes")?;
    let data = r.set("data")?;
    let legal_basis = r.str8(64, "legal_basis")?;
    let notice = if r.tag("notice")? {
        let len = r.u16("notice.url")? as usize;
        let url = r.string(len, MAX_URL, "notice.url")?;
        let sha256 = Hash::from_bytes(r.arr32("notice.sha256")?);
        let version = r.str8(MAX_NOTICE_VERSION, "notice.version")?;
        Some(Notice {
            url,
            sha256,
            version,
        })
    } else {
        None
    };
    let valid_until = if r.tag("valid_until")? {
        Some(r.u64("valid_until")?)
    } else {
        None
    };
    let jurisdiction = if r.tag("jurisdiction")? {
        Some(r.str8(MAX_JURISDICTION, "jurisdiction")?)
    } else {
        None
    };
    let m = r.u8("method")?;
    let method = Method::from_byte(m).ok_or(DecodeError::UnknownMethod(m.to_string()))?;
    let gpc = match r.u8("gpc")? {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        other => return Err(DecodeError::BadGpc(other)),
    };
    Ok(Consent {
        controller,
        purposes,
        data,
        legal_basis,
        notice,
        valid_until,
        jurisdiction,
        method,
        gpc,
    })
}
