//! Witnessing: add-checkpoint bodies, signed notes, checkpoints and split-view proofs. No panic;
//! an add-checkpoint body that parses prints back to the same text; the witness's checks run on
//! anything that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::note::{Checkpoint, Note};
use proto::witness::{check_add, AddCheckpoint, SplitView};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpoint::parse(data) {
        assert_eq!(
            req.to_text().as_bytes(),
            data,
            "add-checkpoint bodies are canonical"
        );
        let _ = check_add(&req, None, |_| None);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = Note::parse(text) {
            let _ = Checkpoint::from_text(&n.text);
            let _ = Note::parse(&n.to_text()).expect("a printed note parses");
        }
    }
    if let Ok(p) = serde_json::from_slice::<SplitView>(data) {
        let _ = p.verify();
        let _ = p.id();
    }
});
