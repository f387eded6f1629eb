//! One module per subcommand, and the checks they share.

pub mod audit;
pub mod check;
pub mod completions;
pub mod controllers;
pub mod id;
pub mod init;
pub mod inspect;
pub mod log;
pub mod receipt;
pub mod recover;
pub mod sign;
pub mod status;
pub mod submit;
pub mod verify_decision;

use proto::entry::{Entry, MAX_CODES};
use proto::keys::PublicKey;
use proto::note::Verifier;
use proto::vocab::{self, TermKind};

use crate::error::{Error, Result};
use crate::home::{Home, SeenHead};
use crate::node::VerifiedChain;

/// Validates vocabulary codes of one field, then sorts and de-duplicates them (the entry's form
/// rule: sorted by bytes, unique).
///
/// # Errors
/// [`Error::UnknownCode`] with the nearest codes; [`Error::Usage`] for too many codes.
pub fn codes(raw: &[String], kind: TermKind, field: &'static str) -> Result<Vec<String>> {
    let v = vocab::v1();
    let mut out = Vec::with_capacity(raw.len());
    for c in raw {
        if !v.is(c, kind) {
            return Err(Error::UnknownCode {
                field,
                code: c.clone(),
                suggestions: v
                    .suggest(c, kind, 3)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            });
        }
        out.push(c.clone());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_CODES {
        return Err(Error::Usage(format!(
            "at most {MAX_CODES} {field} codes per entry; got {}",
            out.len()
        )));
    }
    Ok(out)
}

/// The head of a verified chain as a head-cache record.
pub fn seen_of(chain: &VerifiedChain) -> Option<SeenHead> {
    chain.head.as_ref().map(|h| SeenHead {
        seq: h.seq,
        hash: h.hash,
        issued_at: h.issued_at,
    })
}

/// The head-cache record of one entry.
pub fn seen_entry(e: &Entry) -> SeenHead {
    SeenHead {
        seq: e.seq(),
        hash: e.hash(),
        issued_at: e.content.issued_at,
    }
}

/// Checks a verified chain against the head this device has seen for its subject: the chain
/// must reach that seq, with the same entry there.
///
/// # Errors
/// [`Error::StaleHead`] when the chain is shorter; [`Error::Fork`] when it has another entry at
/// the seen seq.
pub fn check_seen(seen: Option<SeenHead>, chain: &VerifiedChain) -> Result<()> {
    let Some(seen) = seen else { return Ok(()) };
    let node_seq = chain.head_seq();
    if node_seq < seen.seq {
        return Err(Error::StaleHead {
            subject: chain.subject,
            node_seq,
            seen_seq: seen.seq,
        });
    }
    let at = usize::try_from(seen.seq.saturating_sub(1)).unwrap_or(usize::MAX);
    match chain.entries.get(at) {
        Some(e) if e.hash() == seen.hash => Ok(()),
        Some(e) => Err(Error::Fork(format!(
            "the node's entry at seq {} of subject {} is {}, but this device has seen {} there",
            seen.seq,
            chain.subject,
            e.hash(),
            seen.hash
        ))),
        None => Err(Error::StaleHead {
            subject: chain.subject,
            node_seq,
            seen_seq: seen.seq,
        }),
    }
}

/// For read-only commands: compares a verified chain with the head cache, raising the cache when
/// the chain is consistent and longer; returns a warning instead of failing when it is not.
///
/// # Errors
/// [`Error::Io`] and [`Error::BadFile`] from the cache.
pub fn observe(home: &Home, chain: &VerifiedChain) -> Result<Option<String>> {
    let seen = home.seen_head(&chain.subject)?;
    match check_seen(seen, chain) {
        Ok(()) => {}
        Err(e @ (Error::StaleHead { .. } | Error::Fork(_))) => return Ok(Some(e.to_string())),
        Err(e) => return Err(e),
    }
    if let Some(head) = seen_of(chain) {
        if seen.is_none_or(|s| s.seq < head.seq) {
            let _lock = home.lock_subject(&chain.subject)?;
            home.raise_seen_head(&chain.subject, head)?;
        }
    }
    Ok(None)
}

/// Parses a verifier key string (`name+id+key`), trimming surrounding white space.
///
/// # Errors
/// Why `s` is not a verifier key.
pub fn parse_vkey(s: &str) -> std::result::Result<Verifier, String> {
    Verifier::from_vkey(s.trim()).map_err(|e| e.to_string())
}

/// A node's checkpoint key given on the command line: a `name+id+key` string, or a file holding
/// one.
///
/// # Errors
/// [`Error::Usage`] when it is neither; [`Error::Io`] or [`Error::BadFile`] for the file.
pub fn trusted_key(arg: &str) -> Result<Verifier> {
    let err = match parse_vkey(arg) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let path = std::path::Path::new(arg);
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "--vkey {arg:?} is neither a checkpoint key ({err}; the `log_vkey` of GET \
             /v1/node/info) nor a file holding one"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse_vkey(&text).map_err(|e| Error::BadFile {
        path: path.display().to_string(),
        message: format!("not a checkpoint key (name+id+key): {e}"),
    })
}

/// Writes a new file (mode 0600) for the user (`--out`, `--save`), refusing to overwrite one.
///
/// # Errors
/// [`Error::Usage`] when `path` exists; [`Error::Io`].
pub fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    crate::home::write_new(path, bytes).map_err(|e| match e {
        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::AlreadyExists => {
            Error::Usage(format!(
                "{} exists; refusing to overwrite it",
                path.display()
            ))
        }
        other => other,
    })
}

/// `acme (3b6a27bc…)` or the key alone.
pub fn controller_label(key: &PublicKey, alias: Option<&str>) -> String {
    match alias {
        Some(a) => format!("{a} ({})", short(&key.to_string())),
        None => key.to_string(),
    }
}

/// The first 12 hex digits and an ellipsis.
pub fn short(hex: &str) -> String {
    match hex.get(..12) {
        Some(s) if hex.len() > 12 => format!("{s}…"),
        _ => hex.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proto::entry::{recovery_commitment, Body, Consent, Content, Method};
    use proto::keys::{Hash, SecretKey};

    /// A verified chain of `n` grants by one key.
    pub(crate) fn chain(n: u64) -> VerifiedChain {
        let k = SecretKey::from_seed([9; 32]);
        let mut entries: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let prev = entries.last().map_or(Hash::ZERO, Entry::hash);
            let e = Content {
                subject: k.public_key(),
                seq,
                prev,
                issued_at: 1_000 + seq,
                signer: k.public_key(),
                recovery: (seq == 1).then(|| recovery_commitment(&k.public_key())),
                body: Body::Grant(Consent {
                    controller: SecretKey::from_seed([8; 32]).public_key(),
                    purposes: vec!["dpv:Marketing".into()],
                    data: vec![],
                    legal_basis: "dpv:Consent".into(),
                    notice: None,
                    valid_until: None,
                    jurisdiction: None,
                    method: Method::Cli,
                    gpc: None,
                }),
            }
            .sign(&k)
            .expect("sign");
            entries.push(e);
        }
        let head = proto::verify_chain(&entries).ok();
        VerifiedChain {
            subject: k.public_key(),
            log_indexes: (0..n).collect(),
            entries,
            head,
            forked: false,
        }
    }

    #[test]
    fn the_head_cache_refuses_older_and_diverging_chains() {
        let c = chain(3);
        let at = |seq: u64| SeenHead {
            seq,
            hash: c.entries[(seq - 1) as usize].hash(),
            issued_at: 0,
        };
        let other = |seq: u64| SeenHead {
            seq,
            hash: Hash::from_bytes([0xee; 32]),
            issued_at: 0,
        };
        let check = |seen: Option<SeenHead>, chain: &VerifiedChain| check_seen(seen, chain);
        assert!(check(None, &c).is_ok());
        assert!(check(Some(at(2)), &c).is_ok());
        assert!(check(Some(at(3)), &c).is_ok());
        assert!(matches!(check(Some(other(2)), &c), Err(Error::Fork(_))));
        assert!(matches!(check(Some(other(3)), &c), Err(Error::Fork(_))));
        assert!(matches!(
            check(Some(at(3)), &chain(2)),
            Err(Error::StaleHead {
                node_seq: 2,
                seen_seq: 3,
                ..
            })
        ));
        assert!(matches!(
            check(Some(at(1)), &chain(0)),
            Err(Error::StaleHead { node_seq: 0, .. })
        ));
    }

    #[test]
    fn codes_are_sorted_deduplicated_and_checked() {
        let got = codes(
            &[
                "dpv:Marketing".into(),
                "dpv:DirectMarketing".into(),
                "dpv:Marketing".into(),
            ],
            TermKind::Purpose,
            "purpose",
        )
        .expect("valid");
        assert_eq!(got, vec!["dpv:DirectMarketing", "dpv:Marketing"]);
        match codes(&["dpv:DirectMarketin".into()], TermKind::Purpose, "purpose") {
            Err(Error::UnknownCode { suggestions, .. }) => {
                assert_eq!(
                    suggestions.first().map(String::as_str),
                    Some("dpv:DirectMarketing")
                );
            }
            other => panic!("expected UnknownCode, got {other:?}"),
        }
        assert!(codes(&["pd:EmailAddress".into()], TermKind::Purpose, "purpose").is_err());
    }
}
