//! This node's signed checkpoints (C2SP tlog-checkpoint) over the Merkle tree of its ingest log.
//!
//! The origin is `consent-node/<node public key hex>`, which is also the key name. The latest
//! checkpoint is cached and re-signed only when the log has grown. A node never signs two
//! checkpoints of one size with different roots: the tree is append-only and derived from the
//! log, which the store never rewrites.

use std::sync::Mutex;

use proto::keys::SecretKey;
use proto::note::{Checkpoint, Note, NoteSignature, Verifier};

use crate::store::{ProofError, SledStore, Store};

/// Signs and caches checkpoints.
pub struct Checkpointer {
    key: SecretKey,
    origin: String,
    /// The last signed (size, note text).
    latest: Mutex<Option<(u64, String)>>,
    /// The newest checkpoint with cosignatures (size, note text), once known.
    cosigned: Mutex<Option<(u64, String)>>,
}

impl Checkpointer {
    /// A checkpointer for the node key.
    pub fn new(key: SecretKey) -> Self {
        let origin = format!("consent-node/{}", key.public_key());
        Checkpointer {
            key,
            origin,
            latest: Mutex::new(None),
            cosigned: Mutex::new(None),
        }
    }

    /// The origin line and key name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        self.verifier().to_vkey()
    }

    /// The verifier of this node's checkpoints.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.origin.clone(),
            key: self.key.public_key(),
        }
    }

    /// The checkpoint at the current log size, signed.
    ///
    /// # Errors
    /// Storage errors.
    pub fn latest(&self, store: &SledStore) -> Result<String, ProofError> {
        self.latest_sized(store).map(|(_, note)| note)
    }

    /// The checkpoint at the current log size, signed, with that size.
    ///
    /// # Errors
    /// Storage errors.
    pub fn latest_sized(&self, store: &SledStore) -> Result<(u64, String), ProofError> {
        // Only what is durable: a checkpoint over entries a crash could take back would later
        // look like a rewritten log.
        let size = store.durable_size();
        if let Ok(guard) = self.latest.lock() {
            if let Some((s, note)) = guard.as_ref() {
                if *s == size {
                    return Ok((size, note.clone()));
                }
            }
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: store.tree_root(size)?,
            extensions: vec![],
        };
        let note = cp
            .sign(&self.origin, &self.key)
            .map(|n| n.to_text())
            .map_err(|e| {
                ProofError::Store(crate::store::StoreError::Corrupt {
                    key: "checkpoint".into(),
                    reason: e.to_string(),
                })
            })?;
        // Keep it for exports; if one of this size was kept already, serve that one (a node must
        // never show two different signed notes for one size, though here they could differ only
        // in signature randomness, which Ed25519 does not have), with the cosignatures it has.
        store.put_checkpoint(size, &note)?;
        let note = store.checkpoint(size)?.unwrap_or(note);
        if let Ok(mut guard) = self.latest.lock() {
            if guard.as_ref().is_none_or(|(s, _)| *s < size) {
                *guard = Some((size, note.clone()));
            }
        }
        Ok((size, note))
    }

    /// Adds witnesses' cosignatures to the kept checkpoint of `size`; returns the note with every
    /// signature it now has.
    ///
    /// # Errors
    /// Storage errors; a size never signed here.
    pub fn add_cosignatures(
        &self,
        store: &SledStore,
        size: u64,
        sigs: &[NoteSignature],
    ) -> Result<String, ProofError> {
        let corrupt = |reason: String| {
            ProofError::Store(crate::store::StoreError::Corrupt {
                key: format!("checkpoint {size}"),
                reason,
            })
        };
        let text = store
            .checkpoint(size)?
            .ok_or_else(|| corrupt("no checkpoint of this size was signed".into()))?;
        let mut note = Note::parse(&text).map_err(|e| corrupt(e.to_string()))?;
        for s in sigs {
            if !note.signatures.contains(s) && note.signatures.len() < proto::note::MAX_SIGNATURES {
                note.signatures.push(s.clone());
            }
        }
        let merged = note.to_text();
        store.replace_checkpoint(size, &merged)?;
        if let Ok(mut guard) = self.latest.lock() {
            if guard.as_ref().is_some_and(|(s, _)| *s == size) {
                *guard = Some((size, merged.clone()));
            }
        }
        if let Ok(mut guard) = self.cosigned.lock() {
            if guard.as_ref().is_none_or(|(s, _)| *s <= size) {
                *guard = Some((size, merged.clone()));
            }
        }
        Ok(merged)
    }

    /// The newest kept checkpoint that carries at least one witness cosignature.
    ///
    /// # Errors
    /// Storage errors.
    pub fn latest_cosigned(&self, store: &SledStore) -> Result<Option<(u64, String)>, ProofError> {
        if let Ok(guard) = self.cosigned.lock() {
            if let Some(found) = guard.as_ref() {
                return Ok(Some(found.clone()));
            }
        }
        // Not known since the start: look through the kept checkpoints once, newest first.
        for r in store.checkpoints_rev() {
            let (size, text) = r?;
            if Note::parse(&text).is_ok_and(|n| n.signatures.len() > 1) {
                if let Ok(mut guard) = self.cosigned.lock() {
                    if guard.as_ref().is_none_or(|(s, _)| *s < size) {
                        *guard = Some((size, text.clone()));
                    }
                }
                return Ok(Some((size, text)));
            }
        }
        Ok(None)
    }
}
