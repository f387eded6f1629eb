//! The HTTP JSON forms: an entry's JSON form, consent checks' answers and export lines. No panic;
//! an entry that parses from JSON prints to JSON that parses to the same entry, and its binary
//! form decodes to it too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::api::CheckResponse;
use proto::audit::parse_export_line;
use proto::entry::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<Entry>(data) {
        let json = serde_json::to_string(&e).expect("prints");
        let back: Entry = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, e);
        if let Ok(d) = Entry::from_bytes(&e.to_bytes()) {
            assert_eq!(d, e, "binary round trip");
        }
    }
    let _ = serde_json::from_slice::<CheckResponse>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_export_line(s);
        let _ = proto::audit::parse_and_decode_line(s);
    }
});
