//! The entry decoder: whatever the bytes, no panic; and if they decode, encoding the entry gives
//! back exactly those bytes (the encoding is canonical), its hash and signature check run, and
//! its JSON form converts back to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::entry::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::from_bytes(data) {
        assert_eq!(
            e.to_bytes(),
            data,
            "decode then encode must give the same bytes"
        );
        let _ = e.hash();
        let _ = proto::verify_entry(&e);
        let json = serde_json::to_string(&e).expect("an entry always has a JSON form");
        let back: Entry = serde_json::from_str(&json).expect("its JSON form parses");
        assert_eq!(back, e, "JSON round trip");
    }
});
