//! The replication wire format: sync requests, sync responses and gossip batches. No panic; a
//! request that decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::sync::{decode_batch, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::from_bytes(data) {
        assert_eq!(r.to_bytes(), data, "requests are canonical");
    }
    if let Ok(r) = Response::from_bytes(data) {
        // Error messages are read leniently (lossy UTF-8), so only the re-encoding of the
        // decoded value must decode to the same value.
        let again = Response::from_bytes(&r.to_bytes()).expect("re-encoded response decodes");
        assert_eq!(again, r);
    }
    let _ = decode_batch(data);
});
