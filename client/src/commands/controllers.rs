//! `consent controllers add|list|remove`: aliases for controller keys.

use proto::keys::PublicKey;
use serde_json::json;

use crate::cli::ControllersCommand;
use crate::error::{Error, Result};
use crate::{Ctx, Report};

fn valid_alias(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `consent controllers ...`.
///
/// # Errors
/// [`Error::Usage`] for a bad alias or key, or an alias already naming another key.
pub fn run(ctx: &Ctx, cmd: &ControllersCommand) -> Result<Report> {
    match cmd {
        ControllersCommand::Add {
            name,
            controller_key: key,
        } => {
            if !valid_alias(name) {
                return Err(Error::Usage(format!(
                    "alias {name:?}: use 1 to 64 letters, digits, '-', '_' or '.' (and not a key)"
                )));
            }
            let key: PublicKey = key
                .to_ascii_lowercase()
                .parse()
                .map_err(|e| Error::Usage(format!("controller key: {e}")))?;
            ctx.home.update_config(|c| match c.aliases.get(name) {
                Some(k) if *k != key => Err(Error::Usage(format!(
                    "alias {name} already names {k}; remove it first"
                ))),
                _ => {
                    c.aliases.insert(name.clone(), key);
                    Ok(())
                }
            })?;
            Ok(Report::ok(
                format!("{name} = {key}"),
                json!({ "name": name, "key": key }),
            ))
        }
        ControllersCommand::Remove { name } => {
            let mut removed = None;
            ctx.home.update_config(|c| {
                removed = c.aliases.remove(name);
                Ok(())
            })?;
            match removed {
                Some(k) => Ok(Report::ok(
                    format!("removed {name} ({k})"),
                    json!({ "name": name, "key": k }),
                )),
                None => Err(Error::Usage(format!("no alias {name}"))),
            }
        }
        ControllersCommand::List => {
            let cfg = ctx.config()?;
            let mut lines = Vec::new();
            let mut rows = Vec::new();
            for (name, key) in &cfg.aliases {
                let subject = cfg.subjects.get(key);
                lines.push(format!(
                    "{name:<16} {key}{}",
                    subject.map_or(String::new(), |s| format!("  subject {s}"))
                ));
                rows.push(json!({ "name": name, "key": key, "subject": subject }));
            }
            for (key, subject) in &cfg.subjects {
                if !cfg.aliases.values().any(|k| k == key) {
                    lines.push(format!("{:<16} {key}  subject {subject}", "-"));
                    rows.push(json!({ "name": null, "key": key, "subject": subject }));
                }
            }
            if lines.is_empty() {
                lines.push(
                    "no controllers yet (add one with `consent controllers add NAME KEY`)".into(),
                );
            }
            Ok(Report::ok(lines.join("\n"), json!({ "controllers": rows })))
        }
    }
}
