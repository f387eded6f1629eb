//! Key, hash and signature newtypes.
//!
//! Every value that crosses a wire is a fixed-size byte array wrapped in a newtype: it prints and
//! parses as lowercase hex (`Display` / `FromStr`), serialises as a hex string, and exposes its
//! bytes through `as_bytes` / `to_bytes`. The secret key is zeroized on drop and its `Debug` is
//! redacted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::HexError;

fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length {
            what,
            expected: 2 * N,
            found: s.len(),
        });
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(HexError::NotLowercase { what });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::Invalid { what })?;
    Ok(out)
}

/// Reads exactly `N` bytes from a binary format.
struct BytesVisitor<const N: usize>;

impl<'de, const N: usize> serde::de::Visitor<'de> for BytesVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<[u8; N], E> {
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = seq
                .next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}

/// `bytes` as lowercase hex in `buf` (exactly twice as long), with `faster-hex`'s SIMD encoder:
/// keys and hashes are printed by the hundred thousand in exports, audits and answers.
fn lower_hex<'a>(bytes: &[u8], buf: &'a mut [u8]) -> &'a str {
    match faster_hex::hex_encode(bytes, buf) {
        Ok(s) => s,
        // Unreachable: `buf` is always twice as long as `bytes`.
        Err(_) => "",
    }
}

macro_rules! byte_newtype {
    ($(#[$meta:meta])* $name:ident, $len:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The raw bytes, copied.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 2 * $len];
                f.write_str(lower_hex(&self.0, &mut buf))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            /// Parses exactly `2 * LEN` lowercase hex digits.
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex::<$len>($what, s).map(Self)
            }
        }

        /// Hex text in human-readable formats (JSON), raw bytes in binary ones.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    let mut buf = [0u8; 2 * $len];
                    serializer.serialize_str(lower_hex(&self.0, &mut buf))
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    deserializer.deserialize_bytes(BytesVisitor::<$len>).map(Self)
                }
            }
        }
    };
}

byte_newtype!(
    /// An Ed25519 public key (32 bytes, the RFC 8032 encoding). Used for subjects, signers and
    /// controllers. Parsing does not check that the bytes are a valid curve point; signature
    /// verification does (see [`crate::sig`]).
    PublicKey,
    32,
    "public key"
);

byte_newtype!(
    /// A SHA-256 digest: entry hashes, notice hashes, recovery-key commitments, Merkle nodes.
    Hash,
    32,
    "hash"
);

byte_newtype!(
    /// An Ed25519 signature (64 bytes: the encoded point R, then the scalar S little-endian).
    Signature,
    64,
    "signature"
);

impl Hash {
    /// The all-zero hash: the `prev` of every chain's first entry.
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

/// An Ed25519 signing key (the 32-byte RFC 8032 seed). Zeroized on drop; `Debug` is redacted and
/// there is no `Display`, so it cannot end up in a log by accident.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Wraps a 32-byte seed. The caller supplies the randomness (proto has no RNG).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(seed)
    }

    /// The seed bytes. Handle with care: whoever holds these can sign.
    pub fn seed(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing_key().verifying_key().to_bytes())
    }

    /// Signs `message` (RFC 8032 Ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.signing_key().sign(message).to_bytes())
    }

    fn signing_key(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle_eq::ct_eq;
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for SecretKey {}

mod subtle_eq {
    /// Constant-time equality of two 32-byte secrets.
    pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
        let mut diff = 0u8;
        for (x, y) in a.iter().zip(b.iter()) {
            diff |= x ^ y;
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::from_bytes([0xab; 32]);
        let s = h.to_string();
        assert_eq!(s, "ab".repeat(32));
        assert_eq!(s.parse::<Hash>(), Ok(h));
        assert!(matches!(
            "ab".parse::<Hash>(),
            Err(HexError::Length {
                expected: 64,
                found: 2,
                ..
            })
        ));
        assert!(matches!(
            "AB".repeat(32).parse::<Hash>(),
            Err(HexError::NotLowercase { .. })
        ));
        assert!(matches!(
            "zz".repeat(32).parse::<Hash>(),
            Err(HexError::Invalid { .. })
        ));
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let sk = SecretKey::from_seed([7; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains("07"));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn rfc8032_test_1_public_key_and_signature() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let sk = SecretKey::from_seed(seed);
        assert_eq!(
            sk.public_key().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            sk.sign(b"").to_string(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}
