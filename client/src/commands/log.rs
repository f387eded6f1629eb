//! `consent log --controller C`: the chain, verified from seq 1, one line per entry.

use proto::entry::Body;
use serde_json::json;

use crate::clock;
use crate::commands::{controller_label, observe};
use crate::error::Result;
use crate::{Ctx, Report};

/// `consent log --controller C`.
///
/// # Errors
/// The node errors of [`crate::node::NodeClient::chain`]; key errors when the subject id must be
/// derived.
pub fn run(ctx: &Ctx, controller: &str) -> Result<Report> {
    let c = ctx.controller(controller)?;
    let subject = ctx.subject(&c)?;
    let node = ctx.node()?;
    let chain = node.chain(&subject)?;
    let warning = observe(&ctx.home, &chain)?;
    let mut lines = vec![format!(
        "subject {subject}  head seq {}  verified{}",
        chain.head_seq(),
        if chain.forked { "  FORKED" } else { "" }
    )];
    let mut rows = Vec::new();
    for (e, log_index) in chain.entries.iter().zip(chain.log_indexes.iter()) {
        let hash = e.hash();
        let what = match &e.content.body {
            Body::Grant(k) | Body::Withdraw(k) | Body::Refuse(k) => {
                let p = if k.purposes.is_empty() {
                    "(all purposes)".to_owned()
                } else {
                    k.purposes.join(",")
                };
                let alias = ctx.alias_of(&k.controller);
                format!("{p}  {}", controller_label(&k.controller, alias.as_deref()))
            }
            Body::Rotate(r) => format!("new key {}", r.new_key),
        };
        lines.push(format!(
            "{:>4}  {}  {:<8}  {}  {}",
            e.seq(),
            clock::format_ms(e.content.issued_at),
            e.kind().as_str(),
            hash,
            what
        ));
        rows.push(json!({
            "seq": e.seq(),
            "hash": hash,
            "log_index": log_index,
            "issued_at": clock::format_ms(e.content.issued_at),
            "entry": e,
        }));
    }
    let mut r = Report::ok(
        lines.join("\n"),
        json!({
            "subject": subject,
            "controller": c,
            "head_seq": chain.head_seq(),
            "forked": chain.forked,
            "verified": true,
            "entries": rows,
        }),
    );
    r.notes.extend(warning.map(|w| format!("warning: {w}")));
    Ok(r)
}
