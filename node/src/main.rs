//! `consent-node`: the peer node of consent-ledger.
//!
//! This is the thin first version: it explains itself and prints its version. The durable store,
//! verified ingest, HTTP API and replication land with their issues (see README.md).

use clap::Parser;

/// consent-ledger peer node (early version: storage, HTTP API and replication are not built yet).
///
/// A node replicates customers' signed consent chains, verifies every entry and answers brands'
/// "may I use this data for this purpose?" questions over HTTP.
#[derive(Parser, Debug)]
#[command(name = "consent-node", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!(
        "consent-node {}: the node's store, HTTP API and replication are not built yet; \
         this build only verifies entries through the proto crate. See README.md.",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
