//! `consent check`: the brand's question, answered by the node (`GET /v1/consent/check`).
//! Exit 0 allow, 1 deny or unknown; any other code is an error, which must also be read as deny.

use proto::api::{CheckQuery, Verdict};
use proto::keys::PublicKey;
use proto::vocab::TermKind;
use serde_json::json;

use crate::clock;
use crate::commands::codes;
use crate::error::{Error, Result, EXIT_DENY, EXIT_OK};
use crate::{Ctx, Report};

/// `consent check --subject S --controller C --purpose P [--at T]`.
///
/// # Errors
/// [`Error::Usage`] / [`Error::UnknownCode`] for bad arguments; the node errors of
/// [`crate::node::NodeClient::check`].
pub fn run(
    ctx: &Ctx,
    subject: &str,
    controller: &str,
    purpose: &str,
    at: Option<&str>,
) -> Result<Report> {
    let subject: PublicKey = subject
        .to_ascii_lowercase()
        .parse()
        .map_err(|e| Error::Usage(format!("--subject: {e}")))?;
    let controller = ctx.controller(controller)?;
    let purpose = codes(&[purpose.to_owned()], TermKind::Purpose, "purpose")?
        .pop()
        .ok_or_else(|| Error::Usage("--purpose is empty".into()))?;
    let at = at
        .map(|t| clock::parse_time(t).map(clock::format_ms))
        .transpose()?;
    let node = ctx.node()?;
    let r = node.check(&CheckQuery {
        subject: subject.to_string(),
        controller: controller.to_string(),
        purpose: purpose.clone(),
        at,
        evidence: false,
    })?;
    let word = match r.decision {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::Unknown => "unknown",
    };
    let mut text = format!("{word}: {} for {purpose}", r.status);
    match (r.seq, r.hash) {
        (Some(seq), Some(hash)) => text.push_str(&format!(" (decided by seq {seq}, entry {hash})")),
        _ => text.push_str(" (no entry of the subject decides this controller and purpose)"),
    }
    if let Some(v) = r.valid_until {
        text.push_str(&format!("; valid until {}", clock::format_ms(v)));
    }
    if let Some(n) = &r.notice_version {
        text.push_str(&format!("; notice version {n}"));
    }
    text.push_str(&format!("\njudged at {}", clock::format_ms(r.at)));
    let exit = if r.decision == Verdict::Allow {
        EXIT_OK
    } else {
        EXIT_DENY
    };
    let mut json = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
    json["exit"] = json!(exit);
    Ok(Report {
        text,
        json,
        exit,
        notes: Vec::new(),
    })
}
