//! `consent inspect [FILE]`: decode an entry (canonical hex or JSON) offline, verify its form and
//! signature, print it.

use std::path::Path;

use serde_json::json;

use crate::commands::submit::read_entry;
use crate::error::{Result, EXIT_USAGE};
use crate::{Ctx, Report};

/// `consent inspect [FILE]`; exit 2 when the signature does not verify.
///
/// # Errors
/// [`crate::Error::Io`], [`crate::Error::BadFile`].
pub fn run(_ctx: &Ctx, file: Option<&Path>) -> Result<Report> {
    let entry = read_entry(file)?;
    let verdict = proto::verify_entry(&entry);
    let json = json!({
        "hash": entry.hash().to_string(),
        "entry": entry,
        "signature_valid": verdict.is_ok(),
        "error": verdict.as_ref().err().map(ToString::to_string),
    });
    let text = format!(
        "hash      {}\nsubject   {}\nseq       {}\nkind      {}\nsignature {}",
        entry.hash(),
        entry.subject(),
        entry.seq(),
        entry.kind(),
        match &verdict {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID: {e}"),
        }
    );
    let mut r = Report::ok(text, json);
    if verdict.is_err() {
        r.exit = EXIT_USAGE;
        r.notes.push("error: the entry does not verify".to_owned());
    }
    Ok(r)
}
