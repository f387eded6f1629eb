//! `consent id --controller C`: the subject id (pseudonymous key) this device uses for C.

use serde_json::json;

use crate::commands::controller_label;
use crate::error::Result;
use crate::{Ctx, Report};

/// `consent id --controller C`.
///
/// # Errors
/// [`crate::Error::Usage`] for an unknown controller; key errors when the id must be derived.
pub fn run(ctx: &Ctx, controller: &str) -> Result<Report> {
    let c = ctx.controller(controller)?;
    let subject = ctx.subject(&c)?;
    let alias = ctx.alias_of(&c);
    Ok(Report::ok(
        subject.to_string(),
        json!({
            "controller": c,
            "controller_alias": alias,
            "subject": subject,
            "label": controller_label(&c, alias.as_deref()),
        }),
    ))
}
