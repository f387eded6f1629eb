//! `consent receipt HASH`: fetch one entry, verify it (form, signature, hash) and its place in
//! the subject's chain (verified from seq 1), and print a receipt.

use proto::keys::Hash;
use proto::state::{ConsentState, Status};

use crate::commands::observe;
use crate::error::{Error, Result};
use crate::receipt::{human, record, Evidence};
use crate::{Ctx, Report};

/// `consent receipt HASH`.
///
/// # Errors
/// [`Error::Usage`] for a malformed hash; the node errors of [`crate::node::NodeClient`];
/// [`Error::Unverified`] when the entry or its chain does not verify, or the entry is not in the
/// chain.
pub fn run(ctx: &Ctx, hash: &str) -> Result<Report> {
    let hash: Hash = hash
        .to_ascii_lowercase()
        .parse()
        .map_err(|e| Error::Usage(format!("hash: {e}")))?;
    let node = ctx.node()?;
    let (entry, log_index) = node.entry(&hash)?;
    let chain = node.chain(&entry.subject())?;
    let at = usize::try_from(entry.seq() - 1).unwrap_or(usize::MAX);
    match chain.entries.get(at) {
        Some(e) if e.hash() == hash => {}
        _ => {
            return Err(Error::Unverified(format!(
                "entry {hash} is not at seq {} of its subject's verified chain",
                entry.seq()
            )))
        }
    }
    let warning = observe(&ctx.home, &chain)?;
    let alias = entry
        .content
        .body
        .consent()
        .and_then(|c| ctx.alias_of(&c.controller));
    let now = crate::clock::now_ms();
    let state = ConsentState::fold(chain.entries.iter());
    let current = match entry.content.body.consent() {
        None => Vec::new(),
        Some(k) => k
            .purposes
            .iter()
            .filter_map(|p| {
                let status = if chain.forked {
                    Some(Status::Forked)
                } else {
                    state.decide(&k.controller, p, now).ok().map(|d| d.status)
                };
                status.map(|s| (p.clone(), s))
            })
            .collect(),
    };
    let ev = Evidence {
        hash,
        log_index,
        node: node.url().to_owned(),
        chain_head_seq: chain.head_seq(),
        forked: chain.forked,
        current,
    };
    let mut r = Report::ok(
        human(&entry, &ev, alias.as_deref()),
        record(&entry, &ev, alias.as_deref()),
    );
    r.notes.extend(warning.map(|w| format!("warning: {w}")));
    Ok(r)
}
