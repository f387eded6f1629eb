//! The one Ed25519 validity rule of consent-ledger, for single and batch verification.
//!
//! Ed25519 implementations disagree on adversarial signatures ("Taming the Many EdDSAs",
//! Chalkias, Garillot, Nikolaenko 2020). A ledger replicated across nodes must not: one node
//! accepting an entry that another rejects splits the network. This module therefore fixes one
//! rule (docs/PROTOCOL.md, "Signature validity") and implements it twice, once for one signature
//! and once for a batch, such that **a batch is accepted exactly when every signature in it is
//! accepted on its own**.
//!
//! The rule: given public key bytes `A`, message `M` and signature bytes `R || S`,
//! 1. `S` is a canonical scalar (`S < L`);
//! 2. `A` and `R` are canonical point encodings (`y < p`, no sign bit on a point with `x = 0`)
//!    that decode to curve points;
//! 3. neither `A` nor `R` has small order (order dividing 8);
//! 4. the cofactored equation `[8]([S]B - R - [k]A) = 0` holds, `k = SHA-512(R || A || M) mod L`.
//!
//! Why cofactored: ed25519-dalek's `verify_batch` checks the cofactorless equation with random
//! coefficients, so for a signature whose `R` carries a small torsion component its verdict
//! depends on the coefficient drawn (it may accept what `verify_strict` rejects). With the
//! cofactored equation single and batch verification agree for every input, which is the
//! property RFC 8032 section 5.1.7 and ZIP-215 point to. Points come from curve25519-dalek 4, the
//! same arithmetic (and SIMD backend) that ed25519-dalek uses, so the batch runs as fast as
//! ed25519-dalek's own.

use foldhash::{HashMap, HashMapExt};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::error::SigError;
use crate::keys::{PublicKey, Signature};

/// Whether `bytes` is the canonical encoding of a field element `y < p` with a sign bit that is
/// not set on a point whose `x` is zero. (Whether it is on the curve is a separate question.)
pub fn is_canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    let middle_all_ff = bytes[1..31].iter().all(|&b| b == 0xff);
    // y >= p = 2^255 - 19  <=>  top == 0x7f, bytes 1..31 == 0xff, byte 0 >= 0xed.
    if top == 0x7f && middle_all_ff && bytes[0] >= 0xed {
        return false;
    }
    let sign = bytes[31] & 0x80 != 0;
    if sign {
        // x = 0 exactly when y = 1 or y = p - 1; then the sign bit must be clear.
        let y_is_one = bytes[0] == 1 && top == 0 && bytes[1..31].iter().all(|&b| b == 0);
        let y_is_minus_one = bytes[0] == 0xec && top == 0x7f && middle_all_ff;
        if y_is_one || y_is_minus_one {
            return false;
        }
    }
    true
}

/// The canonical encodings of the eight points of small order (the 8-torsion subgroup). A
/// canonical encoding is of a small-order point exactly when it is one of these, so the check
/// needs no decompression.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static TABLE: std::sync::OnceLock<[[u8; 32]; 8]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[0u8; 32]; 8];
        for (i, p) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
        {
            t[i] = p.compress().to_bytes();
        }
        t
    })
}

fn decode_point(
    bytes: &[u8; 32],
    non_canonical: SigError,
    invalid: SigError,
    small: SigError,
) -> Result<EdwardsPoint, SigError> {
    if !is_canonical_point_encoding(bytes) {
        return Err(non_canonical);
    }
    if small_order_encodings().contains(bytes) {
        return Err(small);
    }
    CompressedEdwardsY(*bytes).decompress().ok_or(invalid)
}

/// Decoded public keys, kept across batches: decoding a key costs about a tenth of a
/// verification, and a node sees the same subjects' keys again and again. Only keys that pass
/// [`check_public_key`] are kept, so a cached key gives the same verdicts as a fresh one.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: HashMap<PublicKey, EdwardsPoint>,
    /// Most keys kept; the cache is cleared when it would grow past this.
    capacity: usize,
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            // Grown as keys come: a large table allocated up front costs a page fault per
            // page touched, scattered over all of it.
            keys: HashMap::with_capacity(capacity.min(1 << 10)),
            capacity,
        }
    }

    /// The decoded point of `key`, decoding and checking it on first use.
    fn point(&mut self, key: &PublicKey) -> Result<EdwardsPoint, SigError> {
        if let Some(p) = self.keys.get(key) {
            return Ok(*p);
        }
        let p = decode_key(key)?;
        if self.keys.len() >= self.capacity {
            self.keys.clear();
        }
        self.keys.insert(*key, p);
        Ok(p)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Decodes and checks a public key under the rule (canonical, on the curve, not small order).
///
/// # Errors
/// [`SigError::NonCanonicalKey`], [`SigError::InvalidKey`] or [`SigError::SmallOrderKey`].
pub fn check_public_key(key: &PublicKey) -> Result<(), SigError> {
    decode_key(key).map(|_| ())
}

fn decode_key(key: &PublicKey) -> Result<EdwardsPoint, SigError> {
    decode_point(
        key.as_bytes(),
        SigError::NonCanonicalKey,
        SigError::InvalidKey,
        SigError::SmallOrderKey,
    )
}

fn decode_r(bytes: &[u8; 32]) -> Result<EdwardsPoint, SigError> {
    decode_point(
        bytes,
        SigError::NonCanonicalR,
        SigError::InvalidR,
        SigError::SmallOrderR,
    )
}

fn split(sig: &Signature) -> ([u8; 32], [u8; 32]) {
    let bytes = sig.as_bytes();
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    s.copy_from_slice(&bytes[32..]);
    (r, s)
}

struct Parsed {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn parse(key: &PublicKey, message: &[u8], sig: &Signature) -> Result<Parsed, SigError> {
    let (r_bytes, s_bytes) = split(sig);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SigError::NonCanonicalS)?;
    let a = decode_key(key)?;
    let r = decode_r(&r_bytes)?;
    let k = challenge(&r_bytes, key, message);
    Ok(Parsed { a, r, s, k })
}

fn challenge(r_bytes: &[u8; 32], key: &PublicKey, message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Verifies one signature under the rule.
///
/// # Errors
/// The first check that fails, as a [`SigError`].
pub fn verify(key: &PublicKey, message: &[u8], sig: &Signature) -> Result<(), SigError> {
    let p = parse(key, message, sig)?;
    // [S]B - [k]A
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &p.a, &p.s);
    if (sb_minus_ka - p.r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SigError::Equation)
    }
}

/// One signature of a batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The signer's public key.
    pub key: &'a PublicKey,
    /// The exact bytes that were signed.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// A batch failure: the index of the first item that fails alone, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("signature {index} of the batch: {error}")]
pub struct BatchError {
    /// Position of the failing item in the batch.
    pub index: usize,
    /// Why it failed.
    pub error: SigError,
}

/// Verifies many signatures at once; accepted exactly when each is accepted by [`verify`].
///
/// The coefficients `z_i` are derived deterministically from every input (as ed25519-dalek does
/// with its transcript), so the result does not depend on an RNG.
///
/// # Errors
/// When the batch fails, every item is checked alone and the first failing one is named.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), BatchError> {
    verify_batch_cached(items, &mut KeyCache::new(items.len()))
}

/// [`verify_batch`] with decoded keys kept in `cache` across calls (same verdicts).
///
/// # Errors
/// As [`verify_batch`].
pub fn verify_batch_cached(
    items: &[BatchItem<'_>],
    cache: &mut KeyCache,
) -> Result<(), BatchError> {
    if items.is_empty() {
        return Ok(());
    }
    if items.len() == 1 {
        let it = &items[0];
        return verify(it.key, it.message, it.signature)
            .map_err(|error| BatchError { index: 0, error });
    }
    match batch_equation(items, cache) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(name_failure(items)),
    }
}

fn name_failure(items: &[BatchItem<'_>]) -> BatchError {
    for (index, it) in items.iter().enumerate() {
        if let Err(error) = verify(it.key, it.message, it.signature) {
            return BatchError { index, error };
        }
    }
    // Unreachable in practice: the batch equation failed yet every item passes alone, which
    // happens with probability below 2^-120. Report it rather than accept.
    BatchError {
        index: 0,
        error: SigError::Equation,
    }
}

fn batch_equation(items: &[BatchItem<'_>], cache: &mut KeyCache) -> Result<bool, SigError> {
    // Parse everything first; each distinct key gets one point and one summed coefficient.
    let mut key_slot: HashMap<PublicKey, usize> = HashMap::with_capacity(items.len());
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut parsed = Vec::with_capacity(items.len());
    let mut transcript = Sha512::new();
    transcript.update(b"consent-ledger/batch-z/v1\0");
    for it in items {
        let (r_bytes, s_bytes) = split(it.signature);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(SigError::NonCanonicalS)?;
        let slot = match key_slot.get(it.key) {
            Some(i) => *i,
            None => {
                key_points.push(cache.point(it.key)?);
                key_slot.insert(*it.key, key_points.len() - 1);
                key_points.len() - 1
            }
        };
        let r = decode_r(&r_bytes)?;
        let k = challenge(&r_bytes, it.key, it.message);
        transcript.update(k.as_bytes());
        transcript.update(r_bytes);
        transcript.update(s_bytes);
        parsed.push((r, k, s, slot));
    }
    let seed: [u8; 64] = transcript.finalize().into();

    let n = items.len();
    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients = vec![Scalar::ZERO; key_points.len()];
    let mut scalars = Vec::with_capacity(n + key_points.len() + 1);
    let mut points = Vec::with_capacity(n + key_points.len() + 1);
    let mut zs = Coefficients::new(&seed);
    for (r, k, s, slot) in parsed {
        let z = zs.next();
        b_coefficient += z * s;
        key_coefficients[slot] += z * k;
        scalars.push(z);
        points.push(r);
    }
    scalars.extend(key_coefficients);
    points.extend(key_points);
    scalars.push(-b_coefficient);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    // -[sum z S]B + sum [z]R + sum [z k]A, times the cofactor, must be the identity.
    let check = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    Ok(check.mul_by_cofactor().is_identity())
}

/// The batch coefficients: 128-bit values, four from each SHA-512 of the transcript seed and a
/// block counter; never zero (a zero would drop an item from the equation).
struct Coefficients<'a> {
    seed: &'a [u8; 64],
    block: u64,
    digest: [u8; 64],
    used: usize,
}

impl<'a> Coefficients<'a> {
    fn new(seed: &'a [u8; 64]) -> Self {
        Coefficients {
            seed,
            block: 0,
            digest: [0; 64],
            used: 4,
        }
    }

    fn next(&mut self) -> Scalar {
        if self.used == 4 {
            let mut h = Sha512::new();
            h.update(self.seed);
            h.update(self.block.to_be_bytes());
            self.digest = h.finalize().into();
            self.block += 1;
            self.used = 0;
        }
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&self.digest[16 * self.used..16 * (self.used + 1)]);
        z[0] |= 1;
        self.used += 1;
        Scalar::from_bytes_mod_order(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn honest_signatures_verify_single_and_batch() {
        let keys: Vec<SecretKey> = (0..5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; i as usize]).collect();
        let pks: Vec<PublicKey> = (0..20).map(|i| keys[i % 5].public_key()).collect();
        let sigs: Vec<Signature> = (0..20).map(|i| keys[i % 5].sign(&msgs[i])).collect();
        let items: Vec<BatchItem<'_>> = (0..20)
            .map(|i| BatchItem {
                key: &pks[i],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        for it in &items {
            assert_eq!(verify(it.key, it.message, it.signature), Ok(()));
        }
        assert_eq!(verify_batch(&items), Ok(()));
        // One wrong message: the batch fails and names it.
        let wrong = b"tampered".to_vec();
        let mut bad = items.clone();
        bad[13].message = &wrong;
        assert_eq!(
            verify_batch(&bad),
            Err(BatchError {
                index: 13,
                error: SigError::Equation
            })
        );
    }

    #[test]
    fn small_order_table_matches_the_group_law() {
        for enc in small_order_encodings() {
            let p = CompressedEdwardsY(*enc).decompress().expect("point");
            assert!(p.is_small_order());
            assert!(is_canonical_point_encoding(enc));
        }
        // And no other canonical encoding among many random points is of small order.
        for seed in 0u32..2000 {
            let d = Sha512::digest(seed.to_le_bytes());
            let mut b = [0u8; 32];
            b.copy_from_slice(&d[..32]);
            if let Some(p) = CompressedEdwardsY(b).decompress() {
                if is_canonical_point_encoding(&b) {
                    assert_eq!(p.is_small_order(), small_order_encodings().contains(&b));
                }
            }
        }
    }

    #[test]
    fn cached_keys_give_the_same_verdicts() {
        let mut cache = KeyCache::new(2);
        let keys: Vec<SecretKey> = (0..5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
        let sigs: Vec<Signature> = (0..10).map(|i| keys[i % 5].sign(&msgs[i])).collect();
        let items: Vec<BatchItem<'_>> = (0..10)
            .map(|i| BatchItem {
                key: &pks[i % 5],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        for _ in 0..3 {
            assert_eq!(verify_batch_cached(&items, &mut cache), Ok(()));
        }
        assert!(cache.len() <= 2 + 5);
        let mut bad = items.clone();
        bad[7].message = b"other";
        assert_eq!(
            verify_batch_cached(&bad, &mut cache).map_err(|e| e.index),
            Err(7)
        );
    }

    #[test]
    fn canonical_encoding_rule() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_point_encoding(&p)); // y = p
        p[0] = 0xec;
        assert!(is_canonical_point_encoding(&p)); // y = p - 1, sign clear
        p[31] = 0xff;
        assert!(!is_canonical_point_encoding(&p)); // y = p - 1 with sign bit: x = 0
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_canonical_point_encoding(&one));
        one[31] = 0x80;
        assert!(!is_canonical_point_encoding(&one));
    }

    #[test]
    fn canonical_rule_matches_decompress_compress_round_trip() {
        // For every encoding that decodes, "canonical" must mean decode-then-encode returns it.
        let mut bytes = [0u8; 32];
        for seed in 0u32..3000 {
            let d = Sha512::digest(seed.to_be_bytes());
            bytes.copy_from_slice(&d[..32]);
            if seed % 3 == 0 {
                // Push some into the y >= p region and the x = 0 special cases.
                bytes[1..31].fill(0xff);
                bytes[31] |= 0x7f;
            }
            if let Some(pt) = CompressedEdwardsY(bytes).decompress() {
                assert_eq!(
                    is_canonical_point_encoding(&bytes),
                    pt.compress().to_bytes() == bytes,
                    "{}",
                    hex::encode(bytes)
                );
            }
        }
    }
}
