//! Self-contained exports of a node's ledger (NDJSON, see `proto::audit::ExportLine`): a header,
//! every entry in log order, every checkpoint the node signed up to the export's size (the
//! latest one at exactly that size), every fork proof, and an end line. `consent audit --file`
//! replays it.

use std::io::Write;

use proto::audit::{ExportLine, EXPORT_FORMAT};

use crate::checkpoint::Checkpointer;
use crate::store::{SledStore, Store, StoreError};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Proof or checkpoint.
    #[error(transparent)]
    Proof(#[from] crate::store::ProofError),
    /// Writing.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// The store lost entries on disk that are not back yet: an export now would miss them.
    #[error(
        "the store lost {0} entries on disk that are not repaired yet; an export would miss \
         them (start the node with its peers to repair them)"
    )]
    Damaged(usize),
}

fn line(out: &mut dyn Write, l: &ExportLine) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, l).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the export to `out`; returns the number of entries. `progress` is called every 10,000
/// entries with the count so far.
///
/// # Errors
/// [`ExportError`].
pub fn write_export(
    store: &SledStore,
    checkpoints: &Checkpointer,
    exported_at: u64,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ExportError> {
    let lost = store.lost_entries().len();
    if lost > 0 {
        return Err(ExportError::Damaged(lost));
    }
    // Fix the size first: the log may grow while we write.
    let (size, latest) = checkpoints.latest_sized(store)?;
    line(
        out,
        &ExportLine::Header {
            format: EXPORT_FORMAT.into(),
            origin: checkpoints.origin().to_owned(),
            log_vkey: checkpoints.vkey(),
            size,
            exported_at,
        },
    )?;
    let mut next = 0u64;
    while next < size {
        let page = store.log_entries(next, 1000.min((size - next) as usize))?;
        if page.is_empty() {
            break;
        }
        let mut lines = Vec::with_capacity(page.len() * 1024);
        for (index, _, e) in page {
            proto::audit::write_entry_line(&mut lines, index, &e.to_bytes());
            next = index + 1;
            if next.is_multiple_of(10_000) {
                progress(next);
            }
        }
        out.write_all(&lines)?;
    }
    for r in store.checkpoints() {
        let (s, note) = r?;
        if s < size {
            line(out, &ExportLine::Checkpoint { note })?;
        }
    }
    line(out, &ExportLine::Checkpoint { note: latest })?;
    // A fork proof is stored without a log position: make sure none still waits for its flush.
    store.ensure_durable()?;
    for r in store.fork_proofs() {
        let proof = r?;
        line(
            out,
            &ExportLine::Fork {
                hex: hex::encode(proof.to_bytes()),
            },
        )?;
    }
    for r in store.split_views() {
        let json = r?;
        if let Ok(p) = serde_json::from_slice::<proto::witness::SplitView>(&json) {
            line(
                out,
                &ExportLine::SplitView {
                    a: p.a,
                    b: p.b,
                    prefix: p.prefix,
                },
            )?;
        }
    }
    line(out, &ExportLine::End { entries: next })?;
    out.flush()?;
    Ok(next)
}
