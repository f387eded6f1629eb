//! `consent`: the command line for customers and auditors.
//!
//! This first version offers `consent inspect`, which decodes and verifies an encoded entry
//! (hex or JSON) offline and prints it; key management and the node commands land with the CLI
//! issue.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// consent-ledger's command line for customers and auditors (early version).
#[derive(Parser, Debug)]
#[command(name = "consent", version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode an entry (canonical hex, or its JSON form) and verify its form and signature.
    ///
    /// Reads FILE, or standard input when FILE is `-` or absent.
    ///
    /// Example: consent inspect entry.hex
    Inspect {
        /// A file holding one entry as canonical hex or JSON.
        file: Option<std::path::PathBuf>,
    },
}

fn read_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut s = String::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
        }
    }
    Ok(s)
}

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Inspect { file } => {
            let text = read_input(file.as_deref())?;
            let text = text.trim();
            let entry = if text.starts_with('{') {
                serde_json::from_str::<proto::Entry>(text).context("parsing the JSON entry")?
            } else {
                let bytes = hex::decode(text).context("the input is neither JSON nor hex")?;
                proto::Entry::from_bytes(&bytes).context("decoding the entry")?
            };
            let verdict = proto::verify_entry(&entry);
            if cli.json {
                let v = serde_json::json!({
                    "hash": entry.hash().to_string(),
                    "entry": entry,
                    "signature_valid": verdict.is_ok(),
                    "error": verdict.as_ref().err().map(ToString::to_string),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("hash      {}", entry.hash());
                println!("subject   {}", entry.subject());
                println!("seq       {}", entry.seq());
                println!("kind      {}", entry.kind());
                println!(
                    "signature {}",
                    match &verdict {
                        Ok(()) => "valid".to_owned(),
                        Err(e) => format!("INVALID: {e}"),
                    }
                );
            }
            if verdict.is_err() {
                bail!("the entry does not verify");
            }
            Ok(())
        }
    }
}
