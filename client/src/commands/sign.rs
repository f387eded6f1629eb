//! `consent grant`, `consent withdraw`, `consent refuse`: build the next entry, sign it, submit
//! it (or, with `--offline`, write it to a file).
//!
//! Online, under the subject's lock: fetch the chain, verify it from seq 1, refuse a forked chain
//! or one older than the head cache, check that its signing key is ours, sign at head + 1 with
//! `issued_at = max(now, head.issued_at)`, submit, check the node's answer, raise the head cache.

use std::path::Path;

use proto::api::SubmitStatus;
use proto::chain::ChainHead;
use proto::entry::{Body, Consent, Content, Entry, Method, Notice};
use proto::keys::{Hash, PublicKey, SecretKey};
use proto::vocab::TermKind;
use serde_json::json;

use crate::cli::{ChangeArgs, ConsentFields, GrantArgs, OfflineArgs};
use crate::clock;
use crate::commands::{check_seen, codes, controller_label, seen_entry};
use crate::error::{Error, Result};
use crate::keystore::Identity;
use crate::{Ctx, Report};

/// Which decision to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `consent grant`.
    Grant,
    /// `consent withdraw`.
    Withdraw,
    /// `consent refuse`.
    Refuse,
}

/// `consent grant`.
///
/// # Errors
/// Usage and vocabulary errors before anything else; then as [`publish`].
pub fn grant(ctx: &Ctx, args: &GrantArgs) -> Result<Report> {
    let now = clock::now_ms();
    let valid_until = match (&args.valid_until, &args.valid_for) {
        (Some(u), _) => Some(clock::parse_time(u)?),
        (None, Some(d)) => Some(clock::add_duration(now, d)?),
        (None, None) => None,
    };
    if let Some(v) = valid_until {
        if v <= now {
            return Err(Error::Usage(format!(
                "--valid-until {} is not in the future",
                clock::format_ms(v)
            )));
        }
    }
    let purposes = codes(&args.purposes, TermKind::Purpose, "purpose")?;
    let consent = consent_body(ctx, &args.fields, purposes, valid_until)?;
    run(ctx, Decision::Grant, consent, &args.fields.offline, now)
}

/// `consent withdraw` or `consent refuse`.
///
/// # Errors
/// As [`grant`].
pub fn change(ctx: &Ctx, decision: Decision, args: &ChangeArgs) -> Result<Report> {
    let purposes = codes(&args.purposes, TermKind::Purpose, "purpose")?;
    let consent = consent_body(ctx, &args.fields, purposes, None)?;
    run(
        ctx,
        decision,
        consent,
        &args.fields.offline,
        clock::now_ms(),
    )
}

fn consent_body(
    ctx: &Ctx,
    f: &ConsentFields,
    purposes: Vec<String>,
    valid_until: Option<u64>,
) -> Result<Consent> {
    let controller = ctx.controller(&f.controller)?;
    let data = codes(&f.data, TermKind::DataCategory, "data")?;
    let legal_basis = codes(
        std::slice::from_ref(&f.legal_basis),
        TermKind::LegalBasis,
        "legal basis",
    )?
    .pop()
    .ok_or_else(|| Error::Usage("--legal-basis is empty".into()))?;
    let method: Method = f.method.parse().map_err(|_| {
        Error::Usage(format!(
            "--method {:?}: use ui-action, written, cli, api or browser-signal",
            f.method
        ))
    })?;
    let notice_hash = match (&f.notice_file, &f.notice_sha256) {
        (Some(p), _) => Some(hash_file(p)?),
        (None, Some(h)) => Some(
            h.to_ascii_lowercase()
                .parse::<Hash>()
                .map_err(|e| Error::Usage(format!("--notice-sha256: {e}")))?,
        ),
        (None, None) => None,
    };
    let notice = match (&f.notice_url, notice_hash, &f.notice_version) {
        (None, None, None) => None,
        (Some(url), Some(sha256), Some(version)) => Some(Notice {
            url: url.clone(),
            sha256,
            version: version.clone(),
        }),
        _ => {
            return Err(Error::Usage(
                "a notice needs all of --notice-url, --notice-version and --notice-file (or \
                 --notice-sha256)"
                    .into(),
            ))
        }
    };
    Ok(Consent {
        controller,
        purposes,
        data,
        legal_basis,
        notice,
        valid_until,
        jurisdiction: f.jurisdiction.clone(),
        method,
        gpc: f.gpc.then_some(true),
    })
}

fn hash_file(p: &Path) -> Result<Hash> {
    let bytes = std::fs::read(p)
        .map_err(|e| Error::io(format!("reading the notice {}", p.display()), e))?;
    Ok(proto::entry::sha256(&bytes))
}

fn body(decision: Decision, c: Consent) -> Body {
    match decision {
        Decision::Grant => Body::Grant(c),
        Decision::Withdraw => Body::Withdraw(c),
        Decision::Refuse => Body::Refuse(c),
    }
}

/// Signs `content` with `key`, turning a form error into a usage error (e.g. a jurisdiction
/// with lowercase letters).
fn sign(content: Content, key: &SecretKey) -> Result<Entry> {
    content.sign(key).map_err(|e| match e {
        proto::EntryError::Form(f) => Error::Usage(format!("the entry would be invalid: {f}")),
        other => Error::Key(other.to_string()),
    })
}

fn run(
    ctx: &Ctx,
    decision: Decision,
    consent: Consent,
    offline: &OfflineArgs,
    now: u64,
) -> Result<Report> {
    let controller = consent.controller;
    // Form problems (bad jurisdiction, too long URL) surface before the passphrase is asked.
    let probe = Content {
        subject: PublicKey::from_bytes([0; 32]),
        seq: 2,
        prev: Hash::from_bytes([1; 32]),
        issued_at: now,
        signer: PublicKey::from_bytes([0; 32]),
        recovery: None,
        body: body(decision, consent.clone()),
    };
    probe
        .check_form()
        .map_err(|f| Error::Usage(format!("the entry would be invalid: {f}")))?;
    let identity = ctx.identity()?;
    let subject = ctx.subject_with(&identity, &controller)?;
    let key = identity.signing_key(&controller);
    let body = body(decision, consent);
    if offline.offline {
        return sign_offline(ctx, &identity, subject, &key, body, offline, now);
    }
    let node = ctx.node()?;
    let lock = ctx.home.lock_subject(&subject)?;
    let chain = node.chain(&subject)?;
    chain.require_not_forked()?;
    check_seen(ctx.home.seen_head(&subject)?, &chain)?;
    let (seq, prev, not_before, recovery) = match &chain.head {
        None => (
            1,
            Hash::ZERO,
            0,
            Some(identity.first_recovery(&controller)?),
        ),
        Some(h) => {
            if h.signing_key != key.public_key() {
                return Err(Error::Key(format!(
                    "the chain of subject {subject} is signed by {}, not by this device's key {} \
                     (were the keys recovered on another device? then run `consent recover` here)",
                    h.signing_key,
                    key.public_key()
                )));
            }
            (h.seq + 1, h.hash, h.issued_at, None)
        }
    };
    if seq == 1 && key.public_key() != subject {
        return Err(Error::Key(format!(
            "subject {subject} has no chain yet, and this device's current key cannot start it"
        )));
    }
    let entry = sign(
        Content {
            subject,
            seq,
            prev,
            issued_at: now.max(not_before),
            signer: key.public_key(),
            recovery,
            body,
        },
        &key,
    )?;
    // The entry must follow the verified head (it does by construction; checked all the same).
    match &chain.head {
        Some(h) => h.check_next(&entry),
        None => ChainHead::genesis(&entry).map(|_| ()),
    }
    .map_err(|e| Error::Key(format!("the signed entry does not follow the chain: {e}")))?;
    let resp = node.submit(&entry)?;
    if resp.status == SubmitStatus::Pending {
        return Err(Error::Unverified(format!(
            "the node served head seq {} but holds entry seq {seq} as pending",
            seq - 1
        )));
    }
    ctx.home.raise_seen_head(&subject, seen_entry(&entry))?;
    drop(lock);
    let alias = ctx.alias_of(&controller);
    let mut r = entry_report(&entry, alias.as_deref());
    r.json["status"] = json!(resp.status);
    r.json["log_index"] = json!(resp.log_index);
    r.json["node"] = json!(node.url());
    if let Some(li) = resp.log_index {
        r.text.push_str(&format!("\nlog index   {li}"));
    }
    r.text
        .push_str(&format!("\nstatus      {}", status_word(resp.status)));
    Ok(r)
}

fn status_word(s: SubmitStatus) -> &'static str {
    match s {
        SubmitStatus::Stored => "stored",
        SubmitStatus::Duplicate => "already stored",
        SubmitStatus::Pending => "pending",
    }
}

fn sign_offline(
    ctx: &Ctx,
    identity: &Identity,
    subject: PublicKey,
    key: &SecretKey,
    body: Body,
    offline: &OfflineArgs,
    now: u64,
) -> Result<Report> {
    let Some(out) = &offline.out else {
        return Err(Error::Usage("--offline needs --out FILE".into()));
    };
    let controller = body
        .consent()
        .map(|c| c.controller)
        .ok_or_else(|| Error::Usage("offline signing is for grant, withdraw and refuse".into()))?;
    let _lock = ctx.home.lock_subject(&subject)?;
    let seen = ctx.home.seen_head(&subject)?;
    let prev_arg = offline
        .prev
        .as_deref()
        .map(|p| {
            p.to_ascii_lowercase()
                .parse::<Hash>()
                .map_err(|e| Error::Usage(format!("--prev: {e}")))
        })
        .transpose()?;
    let (seq, prev) = match (offline.seq, prev_arg) {
        (Some(0), _) => return Err(Error::Usage("--seq starts at 1".into())),
        (Some(1), None) => (1, Hash::ZERO),
        (Some(1), Some(_)) => {
            return Err(Error::Usage(
                "--seq 1 starts a chain: it has no --prev".into(),
            ))
        }
        (Some(s), Some(p)) => (s, p),
        (Some(_), None) => return Err(Error::Usage("--seq needs --prev HASH".into())),
        (None, Some(_)) => return Err(Error::Usage("--prev needs --seq".into())),
        (None, None) => match seen {
            Some(h) => (h.seq + 1, h.hash),
            None => {
                return Err(Error::Usage(format!(
                    "no local head for subject {subject}: pass --seq 1 to start a chain, or \
                     --seq and --prev (or fetch the chain once online, e.g. `consent status`)"
                )))
            }
        },
    };
    let mut not_before = 0;
    if let Some(h) = seen {
        if seq - 1 < h.seq {
            return Err(Error::StaleHead {
                subject,
                node_seq: seq - 1,
                seen_seq: h.seq,
            });
        }
        if seq - 1 == h.seq {
            if prev != h.hash {
                return Err(Error::Fork(format!(
                    "--prev {prev} at seq {} differs from the entry {} this device has seen \
                     there; signing would fork the chain",
                    h.seq, h.hash
                )));
            }
            not_before = h.issued_at;
        }
    }
    let recovery = if seq == 1 {
        if key.public_key() != subject {
            return Err(Error::Key(format!(
                "subject {subject} cannot be started with this device's current key"
            )));
        }
        Some(identity.first_recovery(&controller)?)
    } else {
        None
    };
    let entry = sign(
        Content {
            subject,
            seq,
            prev,
            issued_at: now.max(not_before),
            signer: key.public_key(),
            recovery,
            body,
        },
        key,
    )?;
    let text = format!("{}\n", hex::encode(entry.to_bytes()));
    crate::commands::write_new_file(out, text.as_bytes())?;
    // Nothing else may be signed at this seq from now on.
    ctx.home.raise_seen_head(&subject, seen_entry(&entry))?;
    let alias = ctx.alias_of(&controller);
    let mut r = entry_report(&entry, alias.as_deref());
    r.json["status"] = json!("signed_offline");
    r.json["file"] = json!(out.display().to_string());
    r.text.push_str(&format!(
        "\nstatus      signed offline, written to {}\n            submit it with: consent submit {}",
        out.display(),
        out.display()
    ));
    Ok(r)
}

/// The short receipt printed after signing.
pub fn entry_report(e: &Entry, alias: Option<&str>) -> Report {
    let c = &e.content;
    let consent = c.body.consent();
    let purposes = consent.map(|k| k.purposes.clone()).unwrap_or_default();
    let mut text = format!(
        "{} recorded\nhash        {}\nseq         {}\nsubject     {}",
        e.kind(),
        e.hash(),
        e.seq(),
        c.subject
    );
    if let Some(k) = consent {
        text.push_str(&format!(
            "\ncontroller  {}\npurposes    {}",
            controller_label(&k.controller, alias),
            if purposes.is_empty() {
                "(all of this controller's)".to_owned()
            } else {
                purposes.join(" ")
            }
        ));
        if !k.data.is_empty() {
            text.push_str(&format!("\ndata        {}", k.data.join(" ")));
        }
        if let Some(v) = k.valid_until {
            text.push_str(&format!("\nvalid until {}", clock::format_ms(v)));
        }
    }
    let json = json!({
        "hash": e.hash(),
        "seq": e.seq(),
        "kind": e.kind(),
        "subject": c.subject,
        "controller": consent.map(|k| k.controller),
        "controller_alias": alias,
        "purposes": purposes,
        "data": consent.map(|k| k.data.clone()).unwrap_or_default(),
        "valid_until": consent.and_then(|k| k.valid_until),
        "issued_at": clock::format_ms(c.issued_at),
    });
    Report::ok(text, json)
}
