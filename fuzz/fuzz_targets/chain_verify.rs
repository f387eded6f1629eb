//! The chain verifier and fork proofs: the input is cut into length-prefixed entries (u16 big
//! endian); those that decode are verified as a chain, one by one, in batch, and as fork-proof
//! material. Nothing may panic, and the batch and single verdicts must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::entry::Entry;

fuzz_target!(|data: &[u8]| {
    let mut entries = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && entries.len() < 16 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = n.min(rest.len());
        if let Ok(e) = Entry::from_bytes(&rest[..take]) {
            entries.push(e);
        }
        rest = &rest[take..];
    }
    let _ = proto::verify_chain(&entries);
    let batch = proto::chain::verify_entries(&entries);
    let single = entries.iter().position(|e| proto::verify_entry(e).is_err());
    assert_eq!(
        batch.is_ok(),
        single.is_none(),
        "batch and single verification disagree"
    );
    if let Ok(p) = proto::chain::ForkProof::from_bytes(rest) {
        let _ = p.verify();
        assert_eq!(p.to_bytes(), rest, "fork proofs are canonical");
    }
});
