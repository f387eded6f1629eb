//! `consent recover`: after a device is lost or stolen, move every known chain to the next
//! generation with the 24 words.
//!
//! 1. Read the words; check that they match the stored `A` (when this device has a key store).
//! 2. For each known controller `C` (aliases, remembered subjects, `--controller`): fetch the
//!    chain of its subject (remembered, else `M_0`'s key for `C`), verify it, and find the
//!    generation `h` whose blinded recovery key `A_Ch` the head commits to.
//! 3. The new generation is `n = max(g, every h) + 1`. Under the subject's lock, each chain gets
//!    a rotate entry: signer `A_Ch` (signed with the words), `new_key` = `M_n`'s key for `C`,
//!    `next_recovery` = the commitment to `A_Cn`.
//! 4. Store `M_n` and `n` (and remember every subject id, since `M_0` is gone).
//!
//! Chains that fail (unreachable, forked) are reported; running `consent recover` again rotates
//! every chain to the generation after.

use std::collections::BTreeMap;

use proto::api::SubmitStatus;
use proto::entry::{recovery_commitment, Body, Content, Entry, Rotation};
use proto::keys::{Hash, PublicKey};
use serde_json::json;

use crate::clock;
use crate::commands::{check_seen, controller_label, init::new_passphrase, seen_entry};
use crate::error::{Error, Result};
use crate::home::write_atomic;
use crate::keys::{blinded_recovery_key, Entropy};
use crate::keystore::{KdfParams, KeyStore};
use crate::node::{NodeClient, VerifiedChain};
use crate::prompt::{self, RECOVERY_PHRASE_ENV};
use crate::{Ctx, Report};

/// How far past the known generations to search for a chain's recovery commitment.
const SEARCH_AHEAD: u32 = 64;

fn key_err(e: crate::keys::KeyError) -> Error {
    Error::Key(e.to_string())
}

/// The generation `h <= limit` whose blinded recovery key for `controller` matches `commitment`.
fn find_generation(
    a: &PublicKey,
    controller: &PublicKey,
    commitment: &Hash,
    limit: u32,
) -> Result<Option<u32>> {
    for h in 0..=limit {
        if recovery_commitment(&blinded_recovery_key(a, controller, h).map_err(key_err)?)
            == *commitment
        {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

/// One controller's chain, located.
struct Found {
    subject: PublicKey,
    chain: VerifiedChain,
    generation: u32,
}

fn locate(
    node: &NodeClient,
    entropy: &Entropy,
    a: &PublicKey,
    controller: &PublicKey,
    remembered: Option<PublicKey>,
    g_dev: u32,
) -> Result<Option<Found>> {
    let candidates: Vec<PublicKey> = match remembered {
        Some(s) => vec![s],
        None => (0..=g_dev)
            .map(|g| entropy.master(g).signing_key(controller).public_key())
            .collect(),
    };
    for subject in candidates {
        let chain = node.chain(&subject)?;
        let Some(head) = &chain.head else { continue };
        chain.require_not_forked()?;
        let rotations = chain
            .entries
            .iter()
            .filter(|e| matches!(e.content.body, Body::Rotate(_)))
            .count();
        let limit = g_dev
            .saturating_add(u32::try_from(rotations).unwrap_or(u32::MAX))
            .saturating_add(SEARCH_AHEAD);
        let Some(generation) = find_generation(a, controller, &head.recovery, limit)? else {
            return Err(Error::Key(format!(
                "the chain of subject {subject} does not commit to a recovery key of these words"
            )));
        };
        return Ok(Some(Found {
            subject,
            chain,
            generation,
        }));
    }
    Ok(None)
}

/// Appends the rotate entry to one chain, under its lock.
fn rotate(
    ctx: &Ctx,
    node: &NodeClient,
    entropy: &Entropy,
    controller: &PublicKey,
    found: &Found,
    n: u32,
) -> Result<Entry> {
    let a = entropy.recovery_public();
    let subject = found.subject;
    let _lock = ctx.home.lock_subject(&subject)?;
    // Fetch again under the lock: the chain may have moved since it was located.
    let chain = node.chain(&subject)?;
    chain.require_not_forked()?;
    check_seen(ctx.home.seen_head(&subject)?, &chain)?;
    let head = chain
        .head
        .clone()
        .ok_or_else(|| Error::Unverified(format!("the chain of {subject} is now empty")))?;
    let h = if head.recovery == found.chain.head.as_ref().map_or(Hash::ZERO, |x| x.recovery) {
        found.generation
    } else {
        find_generation(
            &a,
            controller,
            &head.recovery,
            n.saturating_add(SEARCH_AHEAD),
        )?
        .ok_or_else(|| {
            Error::Key(format!(
                "the chain of subject {subject} no longer commits to a recovery key of these \
                     words"
            ))
        })?
    };
    let signer = blinded_recovery_key(&a, controller, h).map_err(key_err)?;
    let content = Content {
        subject,
        seq: head.seq + 1,
        prev: head.hash,
        issued_at: clock::now_ms().max(head.issued_at),
        signer,
        recovery: None,
        body: Body::Rotate(Rotation {
            new_key: entropy.master(n).signing_key(controller).public_key(),
            next_recovery: recovery_commitment(
                &blinded_recovery_key(&a, controller, n).map_err(key_err)?,
            ),
        }),
    };
    content
        .check_form()
        .map_err(|e| Error::Key(format!("the rotate entry would be invalid: {e}")))?;
    let (pk, signature) = entropy
        .sign_recovery(controller, h, &content.signing_input())
        .map_err(key_err)?;
    if pk != signer {
        return Err(Error::Key(
            "the blinded recovery key does not match its public derivation".into(),
        ));
    }
    let entry = Entry { content, signature };
    head.check_next(&entry)
        .map_err(|e| Error::Key(format!("the rotate entry does not follow the chain: {e}")))?;
    let resp = node.submit(&entry)?;
    if resp.status == SubmitStatus::Pending {
        return Err(Error::Unverified(format!(
            "the node served head seq {} but holds the rotation as pending",
            head.seq
        )));
    }
    ctx.home.raise_seen_head(&subject, seen_entry(&entry))?;
    Ok(entry)
}

/// `consent recover [--controller C ...]`.
///
/// # Errors
/// [`Error::Key`] for words that are not valid or do not match this device; [`Error::Usage`]
/// when no controller is known. Failures of single chains are reported in the result, whose exit
/// code is that of the first failure.
pub fn run(ctx: &Ctx, extra: &[String], no_passphrase: bool) -> Result<Report> {
    if ctx.key_file.is_some() {
        return Err(Error::Usage(
            "`consent recover` restores recovery-phrase keys; a --key file has no phrase".into(),
        ));
    }
    let extra: Vec<PublicKey> = extra
        .iter()
        .map(|c| ctx.controller(c))
        .collect::<Result<_>>()?;
    let cfg = ctx.config()?;
    let mut controllers: BTreeMap<PublicKey, Option<PublicKey>> = BTreeMap::new();
    for c in cfg
        .aliases
        .values()
        .chain(cfg.subjects.keys())
        .chain(&extra)
    {
        controllers.insert(*c, cfg.subjects.get(c).copied());
    }
    if controllers.is_empty() {
        return Err(Error::Usage(
            "no controllers known on this device: pass --controller KEY for every brand you \
             have consented to"
                .into(),
        ));
    }
    let words = match prompt::from_env(RECOVERY_PHRASE_ENV) {
        Some(w) => w,
        None => prompt::read_secret("Recovery phrase (24 words): ")?,
    };
    let entropy = Entropy::from_phrase(&words).map_err(key_err)?;
    drop(words);
    let a = entropy.recovery_public();
    let keys_path = ctx.home.keys_path();
    let existing = if keys_path.exists() {
        Some(KeyStore::load(&keys_path)?)
    } else {
        None
    };
    if let Some(ks) = &existing {
        if ks.recovery_public != a {
            return Err(Error::Key(format!(
                "the recovery phrase does not match this device's keys ({})",
                keys_path.display()
            )));
        }
    }
    let pass = new_passphrase(no_passphrase)?;
    let g_dev = existing.as_ref().map_or(0, |k| k.generation);
    let node = ctx.node()?;

    let mut located = Vec::new();
    let mut failures: Vec<(PublicKey, Error)> = Vec::new();
    for (c, remembered) in &controllers {
        match locate(&node, &entropy, &a, c, *remembered, g_dev) {
            Ok(f) => located.push((*c, f)),
            Err(e) => failures.push((*c, e)),
        }
    }
    let n = located
        .iter()
        .filter_map(|(_, f)| f.as_ref().map(|f| f.generation))
        .chain(existing.as_ref().map(|k| k.generation))
        .max()
        .unwrap_or(0)
        .saturating_add(1);

    let mut subjects: BTreeMap<PublicKey, PublicKey> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for (c, found) in &located {
        let label = controller_label(c, ctx.alias_of(c).as_deref());
        match found {
            None => {
                let s = entropy.master(n).signing_key(c).public_key();
                subjects.insert(*c, s);
                lines.push(format!(
                    "{label}: no chain yet; a new chain will use subject {s}"
                ));
                rows.push(json!({ "controller": c, "result": "no_chain", "subject": s }));
            }
            Some(f) => match rotate(ctx, &node, &entropy, c, f, n) {
                Ok(e) => {
                    subjects.insert(*c, f.subject);
                    lines.push(format!(
                        "{label}: rotated at seq {} (entry {}), generation {} -> {n}",
                        e.seq(),
                        e.hash(),
                        f.generation
                    ));
                    rows.push(json!({
                        "controller": c, "result": "rotated", "subject": f.subject,
                        "seq": e.seq(), "hash": e.hash(), "from_generation": f.generation,
                    }));
                }
                Err(e) => {
                    subjects.insert(*c, f.subject);
                    failures.push((*c, e));
                }
            },
        }
    }
    // Store M_n even when some chains failed: the rotated ones now need it.
    ctx.home.ensure()?;
    let ks = KeyStore::seal(
        &entropy.master(n),
        n,
        a,
        pass.as_ref().map(|p| p.as_str()),
        KdfParams::default(),
    )?;
    write_atomic(&keys_path, ks.to_json()?.as_bytes())?;
    ctx.home.update_config(|cfg| {
        for (c, s) in &subjects {
            cfg.subjects.insert(*c, *s);
        }
        Ok(())
    })?;
    let mut exit = 0;
    for (c, e) in &failures {
        let label = controller_label(c, ctx.alias_of(c).as_deref());
        lines.push(format!("{label}: FAILED: {e}"));
        rows.push(json!({
            "controller": c, "result": "failed", "error": e.code(), "message": e.to_string(),
        }));
        if exit == 0 {
            exit = e.exit_code();
        }
    }
    lines.push(format!(
        "keys stored in {} at generation {n}{}",
        keys_path.display(),
        if failures.is_empty() {
            String::new()
        } else {
            "; run `consent recover` again once the failures are fixed".to_owned()
        }
    ));
    Ok(Report {
        text: lines.join("\n"),
        json: json!({
            "generation": n,
            "keys_file": keys_path.display().to_string(),
            "encrypted": ks.is_encrypted(),
            "controllers": rows,
        }),
        json_text: None,
        exit,
        notes: Vec::new(),
    })
}
