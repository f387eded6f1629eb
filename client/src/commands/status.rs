//! `consent status`: current consents per controller and purpose, computed locally from chains
//! fetched from the node and verified from seq 1 (`ConsentState::fold`, then `all`).

use proto::keys::PublicKey;
use proto::state::{ConsentState, Status};
use serde_json::json;

use crate::clock;
use crate::commands::{controller_label, observe, short};
use crate::error::Result;
use crate::{Ctx, Report};

/// The chains to show: (subject, only this controller).
fn targets(ctx: &Ctx, only: Option<PublicKey>) -> Result<Vec<(PublicKey, Option<PublicKey>)>> {
    if ctx.key_file.is_some() {
        let any = only.unwrap_or(PublicKey::from_bytes([0; 32]));
        return Ok(vec![(ctx.subject(&any)?, only)]);
    }
    if let Some(c) = only {
        return Ok(vec![(ctx.subject(&c)?, Some(c))]);
    }
    Ok(ctx
        .config()?
        .subjects
        .iter()
        .map(|(c, s)| (*s, Some(*c)))
        .collect())
}

/// `consent status [--controller C]`.
///
/// # Errors
/// The node errors of [`crate::node::NodeClient::chain`] (a chain that does not verify is an
/// error, not a status); key errors when a subject id must be derived.
pub fn run(ctx: &Ctx, controller: Option<&str>) -> Result<Report> {
    let now = clock::now_ms();
    let only = controller.map(|c| ctx.controller(c)).transpose()?;
    let node = ctx.node()?;
    let mut text = Vec::new();
    let mut chains = Vec::new();
    let mut notes = Vec::new();
    let targets = targets(ctx, only)?;
    if targets.is_empty() {
        text.push("no chains yet: nothing signed on this device (try `consent grant`)".to_owned());
    }
    for (subject, only) in targets {
        let chain = node.chain(&subject)?;
        if let Some(w) = observe(&ctx.home, &chain)? {
            notes.push(format!("warning: {w}"));
        }
        let state = ConsentState::fold(chain.entries.iter());
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for (c, purpose, d) in state.all(now) {
            if only.is_some_and(|o| o != c) {
                continue;
            }
            let status = if chain.forked {
                Status::Forked
            } else {
                d.status
            };
            let alias = ctx.alias_of(&c);
            let mut line = format!(
                "  {purpose:<34} {:<9} seq {:<4}",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                d.seq.map_or("-".to_owned(), |s| s.to_string())
            );
            if only.is_none() {
                line.push_str(&format!(" {}", controller_label(&c, alias.as_deref())));
            }
            if let Some(v) = d.valid_until {
                line.push_str(&format!(" until {}", clock::format_ms(v)));
            }
            if let Some(n) = &d.notice_version {
                line.push_str(&format!(" notice {n}"));
            }
            lines.push(line.trim_end().to_owned());
            rows.push(json!({
                "controller": c,
                "controller_alias": alias,
                "purpose": purpose,
                "status": status,
                "dpv": status.dpv(),
                "allows": status.allows(),
                "seq": d.seq,
                "hash": d.hash,
                "valid_until": d.valid_until.map(clock::format_ms),
                "notice_version": d.notice_version,
            }));
        }
        let head = match only {
            Some(c) => controller_label(&c, ctx.alias_of(&c).as_deref()),
            None => "every controller".to_owned(),
        };
        text.push(format!(
            "{head}  subject {}  head seq {}{}",
            short(&subject.to_string()),
            chain.head_seq(),
            if chain.forked {
                "  FORKED: every check denies"
            } else {
                ""
            }
        ));
        if lines.is_empty() {
            text.push("  (no decisions recorded)".to_owned());
        }
        text.extend(lines);
        chains.push(json!({
            "subject": subject,
            "controller": only,
            "controller_alias": only.and_then(|c| ctx.alias_of(&c)),
            "head_seq": chain.head_seq(),
            "forked": chain.forked,
            "verified": true,
            "consents": rows,
        }));
    }
    let mut r = Report::ok(
        text.join("\n"),
        json!({ "at": clock::format_ms(now), "node": node.url(), "chains": chains }),
    );
    r.notes = notes;
    Ok(r)
}
