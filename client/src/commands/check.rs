//! `consent check`: the brand's question, answered by the node (`GET /v1/consent/check`).
//! Exit 0 allow, 1 deny or unknown; any other code is an error, which must also be read as deny.
//! With `--evidence` the node's decision record is verified (`proto::evidence::verify_decision`)
//! before the answer is trusted, and `--save FILE` keeps it for `consent verify-decision`.

use std::path::Path;

use proto::api::{CheckQuery, Verdict};
use proto::keys::PublicKey;
use proto::vocab::TermKind;
use serde_json::json;

use crate::clock;
use crate::commands::verify_decision::verify;
use crate::commands::{codes, trusted_key, write_new_file};
use crate::error::{Error, Result, EXIT_DENY, EXIT_OK};
use crate::{Ctx, Report};

/// What `consent check` asks, and what it does with the evidence.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// `--subject`.
    pub subject: &'a str,
    /// `--controller` (hex or alias).
    pub controller: &'a str,
    /// `--purpose`.
    pub purpose: &'a str,
    /// `--at`.
    pub at: Option<&'a str>,
    /// `--evidence`: ask for the decision record and verify it.
    pub evidence: bool,
    /// `--vkey`: the node's checkpoint key to verify the record against.
    pub vkey: Option<&'a str>,
    /// `--save`: where to write the verified record (never overwritten).
    pub save: Option<&'a Path>,
}

/// `consent check --subject S --controller C --purpose P [--at T] [--evidence [--vkey K]
/// [--save FILE]]`.
///
/// # Errors
/// [`Error::Usage`] / [`Error::UnknownCode`] for bad arguments or an existing `--save` file; the
/// node errors of [`crate::node::NodeClient::check`]; [`Error::Unverified`] when the decision
/// record does not verify; [`Error::Io`] writing it.
pub fn run(ctx: &Ctx, q: &Question<'_>) -> Result<Report> {
    let Question {
        subject,
        controller,
        purpose,
        at,
        evidence,
        vkey,
        save,
    } = *q;
    let trusted = vkey.map(trusted_key).transpose()?;
    if let Some(p) = save {
        if p.exists() {
            return Err(Error::Usage(format!(
                "{} exists; refusing to overwrite it",
                p.display()
            )));
        }
    }
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
        evidence,
    })?;
    let verified = evidence
        .then(|| verify(&r, trusted.as_ref()))
        .transpose()
        .map_err(|e| Error::Unverified(format!("the decision record of the answer: {e}")))?;
    let mut text = format!("{}: {} for {purpose}", r.decision.as_str(), r.status);
    match (r.seq, r.hash) {
        (Some(seq), Some(hash)) => text.push_str(&format!(" (decided by seq {seq}, entry {hash})")),
        _ if r.status == "forked" => text.push_str(
            " (the subject's chain is forked: two entries at one position, so no entry decides; \
             see GET /v1/subjects/SUBJECT/fork)",
        ),
        _ if r.status == proto::state::STALE_STATUS => {
            text.push_str(" (the node has not synced with a peer within its freshness bound)");
        }
        _ => text.push_str(" (no entry of the subject decides this controller and purpose)"),
    }
    if let Some(v) = r.valid_until {
        text.push_str(&format!("; valid until {}", clock::format_ms(v)));
    }
    if let Some(n) = &r.notice_version {
        text.push_str(&format!("; notice version {n}"));
    }
    text.push_str(&format!("\njudged at {}", clock::format_ms(r.at)));
    let mut notes = Vec::new();
    if let Some(v) = &verified {
        text.push_str(&format!(
            "\nevidence verified: chain of {} entries, checkpoint size {} root {}\nkey {}",
            r.evidence.as_ref().map_or(0, |e| e.chain.len()),
            v.checkpoint.size,
            v.checkpoint.root,
            v.key_line()
        ));
        if let Some(p) = save {
            let body = serde_json::to_string_pretty(&r)
                .map_err(|e| Error::Usage(format!("serialising the decision record: {e}")))?;
            write_new_file(p, format!("{body}\n").as_bytes())?;
            notes.push(format!("decision record saved to {}", p.display()));
        }
    }
    let exit = if r.decision == Verdict::Allow {
        EXIT_OK
    } else {
        EXIT_DENY
    };
    let mut json = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
    json["exit"] = json!(exit);
    if let Some(v) = &verified {
        json["evidence_verified"] = v.json();
        if let Some(p) = save {
            json["saved_to"] = json!(p.display().to_string());
        }
    }
    Ok(Report {
        text,
        json,
        json_text: None,
        exit,
        notes,
    })
}
