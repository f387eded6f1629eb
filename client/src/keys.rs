//! The customer's key schedule: one 24-word recovery phrase from which every key derives.
//!
//! - `E`: 32 bytes of entropy, shown once as a BIP39 phrase of 24 words and never stored.
//! - Generation `g` (0 at `consent init`, +1 at each `consent recover`):
//!   `M_g = HKDF-SHA256(ikm = E, salt = "consent-ledger/v1", info = "master" || g as u32 BE)`.
//!   The device stores only the current `M_g` (optionally passphrase-encrypted).
//! - The signing key for controller `C` at generation `g`: the Ed25519 key whose RFC 8032 seed is
//!   `HKDF-SHA256(ikm = M_g, salt = "consent-ledger/v1", info = "subject" || C)`. The key at
//!   generation 0 is the chain's subject id for `C`: one pseudonym per brand, unlinkable across
//!   brands.
//! - Recovery keys are *blinded*: a recovery master key `a` (seed
//!   `HKDF-SHA256(E, "consent-ledger/v1", "recovery")`, public `A`) and, for controller `C` and
//!   generation `g`, the factor `h = SHA-512("consent-ledger/recovery-blind/v1" || A || C || g)
//!   mod L`. The chain's recovery key is `A_Cg = [h]A`, with secret scalar `h·a`. The device keeps
//!   only the public `A`, which suffices to commit to `A_Cg` in the first entry of a new chain;
//!   signing a rotation needs `a`, i.e. the 24 words. Different brands see unrelated recovery
//!   commitments.
//!
//! A stolen device therefore yields `M_g` (signing for the current generation) but not `E`: the
//! customer recovers with the words, rotates every chain to generation `g + 1`, and the thief's
//! keys are retired.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use hkdf::Hkdf;
use proto::keys::{PublicKey, SecretKey, Signature};
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, Zeroizing};

const SALT: &[u8] = b"consent-ledger/v1";

/// Errors of the key schedule.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The phrase is not a valid BIP39 English phrase of 24 words.
    #[error("the recovery phrase is not valid: {0}")]
    Phrase(String),
    /// The phrase does not belong to this device's keys.
    #[error("the recovery phrase does not match this device's recovery key")]
    WrongPhrase,
    /// A stored public key is not a valid point.
    #[error("the stored recovery public key is invalid")]
    BadRecoveryKey,
}

fn hkdf32(ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(SALT), ikm);
    let info: Vec<u8> = info.concat();
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&info, out.as_mut());
    out
}

/// The 32-byte entropy behind the recovery phrase.
pub struct Entropy(Zeroizing<[u8; 32]>);

impl Entropy {
    /// Wraps entropy drawn by the caller.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Entropy(Zeroizing::new(bytes))
    }

    /// Parses a 24-word English BIP39 phrase.
    ///
    /// # Errors
    /// [`KeyError::Phrase`].
    pub fn from_phrase(phrase: &str) -> Result<Self, KeyError> {
        let words: Vec<&str> = phrase.split_whitespace().collect();
        // The word count first: bip39's own message lists the counts it can parse (12 to 24),
        // but only 24 words hold this key's 32 bytes.
        if words.len() != 24 {
            return Err(KeyError::Phrase(format!(
                "expected 24 words, got {}",
                words.len()
            )));
        }
        let normalized = words.join(" ");
        let m = bip39::Mnemonic::parse_in(bip39::Language::English, &normalized)
            .map_err(|e| KeyError::Phrase(e.to_string()))?;
        let mut ent = m.to_entropy();
        if ent.len() != 32 {
            ent.zeroize();
            return Err(KeyError::Phrase("expected 24 words".into()));
        }
        let mut b = [0u8; 32];
        b.copy_from_slice(&ent);
        ent.zeroize();
        Ok(Entropy(Zeroizing::new(b)))
    }

    /// The 24-word phrase.
    pub fn phrase(&self) -> Zeroizing<String> {
        // 32 bytes of entropy always make a valid 24-word phrase.
        let m = bip39::Mnemonic::from_entropy_in(bip39::Language::English, self.0.as_ref());
        Zeroizing::new(m.map(|m| m.to_string()).unwrap_or_default())
    }

    /// `M_g`.
    pub fn master(&self, generation: u32) -> Master {
        Master(hkdf32(
            self.0.as_ref(),
            &[b"master", &generation.to_be_bytes()],
        ))
    }

    fn recovery_seed(&self) -> Zeroizing<[u8; 32]> {
        hkdf32(self.0.as_ref(), &[b"recovery"])
    }

    /// The recovery master public key `A`.
    pub fn recovery_public(&self) -> PublicKey {
        SecretKey::from_seed(*self.recovery_seed()).public_key()
    }

    /// Signs `message` with the blinded recovery key for `controller` at `generation`; returns
    /// the blinded public key and the signature.
    pub fn sign_recovery(
        &self,
        controller: &PublicKey,
        generation: u32,
        message: &[u8],
    ) -> Result<(PublicKey, Signature), KeyError> {
        let seed = self.recovery_seed();
        let expanded: [u8; 64] = Sha512::digest(seed.as_ref()).into();
        let mut scalar_bytes = [0u8; 32];
        scalar_bytes.copy_from_slice(&expanded[..32]);
        let a = Scalar::from_bytes_mod_order(clamp(scalar_bytes));
        let big_a = SecretKey::from_seed(*seed).public_key();
        let h = blind_factor(&big_a, controller, generation);
        let blinded = a * h;
        let mut prefix_hash = Sha512::new();
        prefix_hash.update(b"consent-ledger/recovery-prefix/v1");
        prefix_hash.update(&expanded[32..]);
        prefix_hash.update(controller.as_bytes());
        prefix_hash.update(generation.to_be_bytes());
        let prefix: [u8; 64] = prefix_hash.finalize().into();
        let mut hash_prefix = [0u8; 32];
        hash_prefix.copy_from_slice(&prefix[..32]);
        let esk = ExpandedSecretKey {
            scalar: blinded,
            hash_prefix,
        };
        let vk = ed25519_dalek::VerifyingKey::from(&esk);
        let sig = raw_sign::<Sha512>(&esk, message, &vk);
        Ok((
            PublicKey::from_bytes(vk.to_bytes()),
            Signature::from_bytes(sig.to_bytes()),
        ))
    }
}

fn clamp(mut b: [u8; 32]) -> [u8; 32] {
    b[0] &= 248;
    b[31] &= 127;
    b[31] |= 64;
    b
}

fn blind_factor(a: &PublicKey, controller: &PublicKey, generation: u32) -> Scalar {
    let mut h = Sha512::new();
    h.update(b"consent-ledger/recovery-blind/v1");
    h.update(a.as_bytes());
    h.update(controller.as_bytes());
    h.update(generation.to_be_bytes());
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The blinded recovery public key for `controller` at `generation`, from the public `A` alone.
///
/// # Errors
/// [`KeyError::BadRecoveryKey`] if `a` is not a valid point.
pub fn blinded_recovery_key(
    a: &PublicKey,
    controller: &PublicKey,
    generation: u32,
) -> Result<PublicKey, KeyError> {
    let point = CompressedEdwardsY(a.to_bytes())
        .decompress()
        .ok_or(KeyError::BadRecoveryKey)?;
    let h = blind_factor(a, controller, generation);
    Ok(PublicKey::from_bytes((point * h).compress().to_bytes()))
}

/// `M_g`, the device's master secret for its current generation.
pub struct Master(Zeroizing<[u8; 32]>);

impl Master {
    /// Wraps stored bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Master(Zeroizing::new(b))
    }

    /// The raw bytes (for storing).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The signing key for `controller`.
    pub fn signing_key(&self, controller: &PublicKey) -> SecretKey {
        SecretKey::from_seed(*hkdf32(
            self.0.as_ref(),
            &[b"subject", controller.as_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinded_signatures_verify_under_the_publicly_derived_key() {
        let e = Entropy::from_bytes([42; 32]);
        let a = e.recovery_public();
        let c = SecretKey::from_seed([7; 32]).public_key();
        for g in 0..3 {
            let (pk, sig) = e.sign_recovery(&c, g, b"rotate").expect("sign");
            assert_eq!(pk, blinded_recovery_key(&a, &c, g).expect("derive"));
            proto::sig::verify(&pk, b"rotate", &sig).expect("verifies under the rule");
        }
        // Different controllers get unrelated recovery keys.
        let d = SecretKey::from_seed([8; 32]).public_key();
        assert_ne!(
            blinded_recovery_key(&a, &c, 0).expect("c"),
            blinded_recovery_key(&a, &d, 0).expect("d")
        );
    }

    #[test]
    fn phrase_round_trip_and_generations() {
        let e = Entropy::from_bytes([1; 32]);
        let words = e.phrase();
        assert_eq!(words.split(' ').count(), 24);
        let back = Entropy::from_phrase(&format!("  {}  ", words.as_str())).expect("parse");
        assert_eq!(back.master(0).as_bytes(), e.master(0).as_bytes());
        assert_ne!(e.master(0).as_bytes(), e.master(1).as_bytes());
        assert!(Entropy::from_phrase("abandon abandon").is_err());
        let c = SecretKey::from_seed([7; 32]).public_key();
        let d = SecretKey::from_seed([8; 32]).public_key();
        let m = e.master(0);
        assert_ne!(
            m.signing_key(&c).public_key(),
            m.signing_key(&d).public_key()
        );
    }
}
