//! `consent`: the command line for customers and auditors.
//!
//! Parses the command line, dispatches to `client::commands`, prints the report (human text, or
//! JSON with `--json`) and exits with the documented code (docs/CLI.md). Errors go to standard
//! error, as `error: ...` or, with `--json`, as one JSON object `{error, message}`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use client::cli::{Cli, Command};
use client::commands::{
    audit, check, completions, controllers, id, init, inspect, log, receipt, recover, sign, status,
    submit, verify_decision,
};
use client::error::EXIT_USAGE;
use client::{Ctx, Report};

/// `consent audit` frees on its replay thread what its workers allocated (every decoded entry);
/// mimalloc handles that with far less CPU than glibc malloc (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.global.json;
    match run(&cli) {
        Ok(report) => {
            for n in &report.notes {
                eprintln!("{n}");
            }
            let out = if let (true, Some(text)) = (json, report.json_text) {
                text
            } else if json {
                match serde_json::to_string_pretty(&report.json) {
                    Ok(s) => s,
                    Err(e) => {
                        print_error(json, &anyhow::anyhow!("serialising the output: {e}"));
                        return ExitCode::from(EXIT_USAGE);
                    }
                }
            } else {
                report.text
            };
            if !out.is_empty() {
                // A closed pipe (`consent log | head`) is not an error worth a panic.
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{out}").and_then(|()| stdout.flush());
            }
            ExitCode::from(report.exit)
        }
        Err(e) => {
            // `consent check` is for scripts: 0 allow, 1 deny or unknown, 2 any error.
            let code = if matches!(cli.command, Command::Check { .. }) {
                EXIT_USAGE
            } else {
                e.downcast_ref::<client::Error>()
                    .map_or(EXIT_USAGE, client::Error::exit_code)
            };
            print_error(json, &e);
            ExitCode::from(code)
        }
    }
}

/// Help and version go to stdout as usual; usage errors exit 2, as JSON with `--json`.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !std::env::args_os().any(|a| a == "--json") {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
    }
    let body = serde_json::json!({ "error": "usage", "message": e.to_string().trim_end() });
    eprintln!("{body}");
    ExitCode::from(EXIT_USAGE)
}

fn print_error(json: bool, e: &anyhow::Error) {
    if json {
        let code = e
            .downcast_ref::<client::Error>()
            .map_or("error", client::Error::code);
        let body = serde_json::json!({ "error": code, "message": format!("{e:#}") });
        eprintln!("{body}");
    } else {
        eprintln!("error: {e:#}");
    }
}

fn run(cli: &Cli) -> anyhow::Result<Report> {
    let ctx = Ctx::new(&cli.global)?;
    let r = match &cli.command {
        Command::Init {
            no_passphrase,
            recovery_key,
        } => init::run(&ctx, *no_passphrase, recovery_key.as_deref())
            .with_context(|| format!("consent init in {}", ctx.home.dir().display()))?,
        Command::Id { controller } => id::run(&ctx, controller)?,
        Command::Recover {
            controller,
            no_passphrase,
        } => recover::run(&ctx, controller, *no_passphrase).context("consent recover")?,
        Command::Grant(a) => sign::grant(&ctx, a)
            .with_context(|| format!("grant for controller {}", a.fields.controller))?,
        Command::Withdraw(a) => sign::change(&ctx, sign::Decision::Withdraw, a)
            .with_context(|| format!("withdraw for controller {}", a.fields.controller))?,
        Command::Refuse(a) => sign::change(&ctx, sign::Decision::Refuse, a)
            .with_context(|| format!("refuse for controller {}", a.fields.controller))?,
        Command::Status { controller } => status::run(&ctx, controller.as_deref())?,
        Command::Log { controller } => log::run(&ctx, controller)?,
        Command::Receipt { hash } => {
            receipt::run(&ctx, hash).with_context(|| format!("receipt for {hash}"))?
        }
        Command::Check {
            subject,
            controller,
            purpose,
            at,
            evidence,
            vkey,
            save,
        } => check::run(
            &ctx,
            &check::Question {
                subject,
                controller,
                purpose,
                at: at.as_deref(),
                evidence: *evidence,
                vkey: vkey.as_deref(),
                save: save.as_deref(),
            },
        )?,
        Command::Submit { file } => {
            submit::run(&ctx, file).with_context(|| format!("submitting {}", file.display()))?
        }
        Command::Controllers(c) => controllers::run(&ctx, c)?,
        Command::Completions { shell } => completions::run(*shell)?,
        Command::Inspect { file } => inspect::run(&ctx, file.as_deref())?,
        Command::Audit {
            file,
            at,
            controller,
            vkey,
        } => {
            let o = audit::Options {
                file: file.as_deref(),
                at: at.as_deref(),
                controller: controller.as_deref(),
                vkey: vkey.as_deref(),
            };
            audit::run(&ctx, &o).with_context(|| match file {
                Some(f) => format!("auditing {}", f.display()),
                None => format!("auditing the export of {}", ctx.node_url),
            })?
        }
        Command::VerifyDecision { file, vkey } => {
            verify_decision::run(&ctx, file, vkey.as_deref())?
        }
    };
    Ok(r)
}
