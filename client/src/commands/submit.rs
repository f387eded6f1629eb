//! `consent submit FILE`: submit an entry signed earlier with `--offline`.
//!
//! Under the subject's lock it fetches and verifies the chain first, and refuses to submit an
//! entry that would fork it (another entry already at its seq) or that cannot follow the head
//! yet (its predecessor is missing).

use std::io::Read;
use std::path::Path;

use proto::api::SubmitStatus;
use proto::entry::Entry;
use serde_json::json;

use crate::commands::{check_seen, seen_entry, sign::entry_report};
use crate::error::{Error, Result};
use crate::{Ctx, Report};

/// Reads one entry from `path` (`-`: standard input) as canonical hex or JSON.
///
/// # Errors
/// [`Error::Io`], [`Error::BadFile`].
pub fn read_entry(path: Option<&Path>) -> Result<Entry> {
    let mut text = String::new();
    let name = match path {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(p)
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
            p.display().to_string()
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::io("reading standard input", e))?;
            "standard input".to_owned()
        }
    };
    let bad = |m: String| Error::BadFile {
        path: name.clone(),
        message: m,
    };
    let text = text.trim();
    if text.starts_with('{') {
        serde_json::from_str::<Entry>(text)
            .map_err(|e| bad(format!("not an entry's JSON form: {e}")))
    } else {
        let bytes = hex::decode(text).map_err(|_| bad("neither JSON nor hex".into()))?;
        Entry::from_bytes(&bytes).map_err(|e| bad(format!("not an entry: {e}")))
    }
}

/// `consent submit FILE`.
///
/// # Errors
/// [`Error::BadFile`] for an entry that does not verify on its own; [`Error::Fork`] when the
/// node has another entry at its seq; [`Error::Usage`] when its predecessor is missing; the node
/// errors of [`crate::node::NodeClient`].
pub fn run(ctx: &Ctx, file: &Path) -> Result<Report> {
    let entry = read_entry(Some(file))?;
    proto::verify_entry(&entry).map_err(|e| Error::BadFile {
        path: file.display().to_string(),
        message: format!("the entry does not verify: {e}"),
    })?;
    let subject = entry.subject();
    let seq = entry.seq();
    let hash = entry.hash();
    let node = ctx.node()?;
    let lock = ctx.home.lock_subject(&subject)?;
    let chain = node.chain(&subject)?;
    chain.require_not_forked()?;
    let seen = ctx.home.seen_head(&subject)?;
    // The entry itself may be what the cache has seen (signed offline); judge the chain against
    // the cache only up to the entry's predecessor.
    if let Some(s) = seen.filter(|s| s.seq < seq) {
        check_seen(Some(s), &chain)?;
    }
    if let Some(s) = seen.filter(|s| s.seq == seq && s.hash != hash) {
        return Err(Error::Fork(format!(
            "this device has seen entry {} at seq {seq}; submitting {hash} would fork the chain",
            s.hash
        )));
    }
    let node_seq = chain.head_seq();
    let already = usize::try_from(seq - 1)
        .ok()
        .and_then(|i| chain.entries.get(i));
    match already {
        Some(e) if e.hash() == hash => {}
        Some(e) => {
            return Err(Error::Fork(format!(
                "the node already has entry {} at seq {seq}; submitting {hash} would fork the \
                 chain, so it was not submitted",
                e.hash()
            )))
        }
        None if seq > node_seq + 1 => {
            return Err(Error::Usage(format!(
                "the node's head for subject {subject} is seq {node_seq}: submit the entries \
                 before seq {seq} first"
            )))
        }
        None => {
            let check = match &chain.head {
                Some(h) => h.check_next(&entry),
                None => proto::ChainHead::genesis(&entry).map(|_| ()),
            };
            check.map_err(|e| Error::BadFile {
                path: file.display().to_string(),
                message: format!("the entry cannot follow the node's verified chain: {e}"),
            })?;
        }
    }
    let resp = node.submit(&entry)?;
    if resp.status == SubmitStatus::Pending {
        return Err(Error::Unverified(format!(
            "the node served head seq {node_seq} but holds entry seq {seq} as pending"
        )));
    }
    ctx.home.raise_seen_head(&subject, seen_entry(&entry))?;
    drop(lock);
    let alias = entry
        .content
        .body
        .consent()
        .and_then(|c| ctx.alias_of(&c.controller));
    let mut r = entry_report(&entry, alias.as_deref());
    r.json["status"] = json!(resp.status);
    r.json["log_index"] = json!(resp.log_index);
    r.json["node"] = json!(node.url());
    if let Some(li) = resp.log_index {
        r.text.push_str(&format!("\nlog index   {li}"));
    }
    r.text.push_str(&format!(
        "\nstatus      {}",
        match resp.status {
            SubmitStatus::Duplicate => "already stored",
            _ => "stored",
        }
    ));
    Ok(r)
}
