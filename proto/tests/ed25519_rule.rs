//! The Ed25519 validity rule against the "Taming the Many EdDSAs" edge cases, and single vs batch
//! agreement on adversarial (torsioned) signatures, with ed25519-consensus (ZIP-215) as an
//! independent reference for the cofactored equation.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use proto::keys::{PublicKey, Signature};
use proto::sig::{self, BatchItem};
use proto::SecretKey;
use sha2::{Digest, Sha512};

struct Case {
    message: Vec<u8>,
    key: PublicKey,
    sig: Signature,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../testdata/ed25519-speccheck/cases.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("cases.json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|c| {
            let h = |k: &str| hex::decode(c[k].as_str().expect("field")).expect("hex");
            Case {
                message: h("message"),
                key: PublicKey::from_bytes(h("pub_key").try_into().expect("32")),
                sig: Signature::from_bytes(h("signature").try_into().expect("64")),
            }
        })
        .collect()
}

/// Accepted case indices under our rule: S < L, canonical A and R, neither of small order, and the
/// cofactored equation. Cases 3, 4 and 5 have mixed-order points that satisfy the cofactored
/// equation; every other case breaks one of the pre-checks.
const ACCEPTED: [usize; 3] = [3, 4, 5];

#[test]
fn speccheck_vectors_single_and_batch_agree_with_the_rule() {
    let cs = cases();
    assert_eq!(cs.len(), 12);
    let honest_key = SecretKey::from_seed([9; 32]);
    let honest_pk = honest_key.public_key();
    let honest_msgs: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 40]).collect();
    let honest_sigs: Vec<Signature> = honest_msgs.iter().map(|m| honest_key.sign(m)).collect();
    let mut accepted = vec![];
    for (i, c) in cs.iter().enumerate() {
        let single = sig::verify(&c.key, &c.message, &c.sig);
        if single.is_ok() {
            accepted.push(i);
        }
        // Alone as a batch of one, and hidden in a batch of honest signatures.
        let alone = sig::verify_batch(&[BatchItem {
            key: &c.key,
            message: &c.message,
            signature: &c.sig,
        }]);
        assert_eq!(single.is_ok(), alone.is_ok(), "case {i}");
        let mut items: Vec<BatchItem<'_>> = honest_msgs
            .iter()
            .zip(&honest_sigs)
            .map(|(m, s)| BatchItem {
                key: &honest_pk,
                message: m,
                signature: s,
            })
            .collect();
        items.insert(
            3,
            BatchItem {
                key: &c.key,
                message: &c.message,
                signature: &c.sig,
            },
        );
        let mixed = sig::verify_batch(&items);
        assert_eq!(single.is_ok(), mixed.is_ok(), "case {i} in a batch");
        if let (Err(e), Err(b)) = (single, mixed) {
            assert_eq!(b.index, 3, "case {i}: the batch names the bad item");
            assert_eq!(b.error, e, "case {i}");
        }
    }
    assert_eq!(accepted, ACCEPTED);
}

/// Signs `message` with secret scalar `a` but adds a torsion point of order 8 to R: valid under
/// the cofactored equation, invalid under the cofactorless one.
fn torsioned_signature(seed: u8, message: &[u8], torsion: usize) -> (PublicKey, Signature) {
    let a = Scalar::from_bytes_mod_order(Sha512::digest([seed; 32])[..32].try_into().expect("32"));
    let big_a = (ED25519_BASEPOINT_POINT * a).compress();
    let r = Scalar::from_bytes_mod_order(Sha512::digest([seed, 1])[..32].try_into().expect("32"));
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion]).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(big_a.as_bytes());
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    (
        PublicKey::from_bytes(big_a.to_bytes()),
        Signature::from_bytes(sig),
    )
}

#[test]
fn torsioned_r_is_accepted_alike_by_single_batch_and_zip215() {
    let msg = b"consent-ledger torsion test";
    for t in 1..8 {
        for seed in 0..8u8 {
            let (pk, s) = torsioned_signature(seed.wrapping_add(40), msg, t);
            let ours = sig::verify(&pk, msg, &s);
            assert_eq!(ours, Ok(()), "torsion {t} seed {seed}");
            // ZIP-215 (cofactored) agrees.
            let vk = ed25519_consensus::VerificationKey::try_from(*pk.as_bytes()).expect("vk");
            let zs = ed25519_consensus::Signature::from(*s.as_bytes());
            assert!(vk.verify(&zs, msg).is_ok());
            // Batches of every size agree with the single verdict.
            let honest = SecretKey::from_seed([seed; 32]);
            let hpk = honest.public_key();
            let hs = honest.sign(msg);
            let mut items = vec![
                BatchItem {
                    key: &hpk,
                    message: msg,
                    signature: &hs,
                };
                (seed as usize) + 1
            ];
            items.push(BatchItem {
                key: &pk,
                message: msg,
                signature: &s,
            });
            assert_eq!(sig::verify_batch(&items), Ok(()));
        }
    }
}

#[test]
fn random_garbage_signatures_agree_with_zip215_where_prechecks_pass() {
    // Differential test against ed25519-consensus: whenever our pre-checks pass, our verdict must
    // equal the ZIP-215 verdict (both use the cofactored equation).
    let key = SecretKey::from_seed([77; 32]);
    let pk = key.public_key();
    for i in 0u32..400 {
        let msg = i.to_be_bytes();
        let mut s = key.sign(&msg).to_bytes();
        if i % 2 == 1 {
            let d = Sha512::digest(i.to_le_bytes());
            s[(d[0] as usize) % 64] ^= d[1] | 1;
        }
        let s = Signature::from_bytes(s);
        let ours = sig::verify(&pk, &msg, &s);
        let vk = ed25519_consensus::VerificationKey::try_from(*pk.as_bytes()).expect("vk");
        let theirs = vk.verify(&ed25519_consensus::Signature::from(*s.as_bytes()), &msg);
        match ours {
            Ok(()) => assert!(theirs.is_ok(), "{i}"),
            Err(proto::SigError::Equation) => assert!(theirs.is_err(), "{i}"),
            Err(_) => {} // rejected by a pre-check that ZIP-215 does not have
        }
    }
}
