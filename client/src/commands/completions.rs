//! `consent completions SHELL`.

use clap::CommandFactory;
use serde_json::json;

use crate::cli::Cli;
use crate::{Report, Result};

/// The completion script for `shell`.
///
/// # Errors
/// None in practice; the signature matches the other commands.
pub fn run(shell: clap_complete::Shell) -> Result<Report> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "consent", &mut out);
    let script = String::from_utf8_lossy(&out).trim_end().to_owned();
    Ok(Report::ok(
        script.clone(),
        json!({ "shell": shell.to_string(), "script": script }),
    ))
}
