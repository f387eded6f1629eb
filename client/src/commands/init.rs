//! `consent init`: create this device's keys.
//!
//! Draws 32 bytes of entropy, shows them once as 24 words on standard error (never on standard
//! output, never in `--json`), and stores only `M_0`, `A` and the generation in `keys.json`
//! (mode 0600, optionally passphrase-sealed). With `--key FILE`, writes a new random key file.

use serde_json::json;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::home::{self, write_new};
use crate::keys::Entropy;
use crate::keystore::{KdfParams, KeyFile, KeyStore};
use crate::prompt::{self, PASSPHRASE_ENV};
use crate::{Ctx, Report};

/// A passphrase for a new key store: none with `--no-passphrase`; else `CONSENT_PASSPHRASE`
/// (empty means none); else asked (twice on a terminal; empty means none).
///
/// # Errors
/// [`Error::Usage`] when the two entries differ; [`Error::Io`].
pub fn new_passphrase(no_passphrase: bool) -> Result<Option<Zeroizing<String>>> {
    if no_passphrase {
        return Ok(None);
    }
    if let Some(p) = prompt::from_env(PASSPHRASE_ENV) {
        return Ok(Some(p).filter(|p| !p.is_empty()));
    }
    let p = prompt::read_secret("New passphrase for the key store (empty for none): ")?;
    if p.is_empty() {
        return Ok(None);
    }
    if prompt::interactive() {
        let again = prompt::read_secret("Repeat the passphrase: ")?;
        if *again != *p {
            return Err(Error::Usage("the two passphrases differ".into()));
        }
    }
    Ok(Some(p))
}

fn already_exists(path: &std::path::Path) -> Error {
    Error::Usage(format!(
        "{} already exists; refusing to overwrite keys (use another CONSENT_HOME or --key FILE, \
         or `consent recover` to restore from the words)",
        path.display()
    ))
}

fn map_exists(path: &std::path::Path) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::AlreadyExists => {
            already_exists(path)
        }
        other => other,
    }
}

fn random32() -> Result<Zeroizing<[u8; 32]>> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(b.as_mut())
        .map_err(|e| Error::Key(format!("the OS random generator failed: {e}")))?;
    Ok(b)
}

/// Shows the words on standard error, numbered, four to a line.
fn show_words(words: &str) {
    let mut out = String::from(
        "\nYour recovery phrase (24 words). Write it down and keep it offline: it is shown only \
         this once,\nit is not stored anywhere, and it is the only way to recover your consent \
         chains if this\ndevice is lost or stolen.\n\n",
    );
    for (i, w) in words.split(' ').enumerate() {
        out.push_str(&format!("{:>4}. {w:<10}", i + 1));
        if i % 4 == 3 {
            out.push('\n');
        }
    }
    eprintln!("{out}");
    prompt::wait_for_enter("Press Enter once you have written the 24 words down: ");
}

/// `consent init`.
///
/// # Errors
/// [`Error::Usage`] when keys exist already; [`Error::Io`]; [`Error::Key`].
pub fn run(ctx: &Ctx, no_passphrase: bool, recovery_key: Option<&str>) -> Result<Report> {
    if let Some(path) = &ctx.key_file {
        let recovery = recovery_key
            .map(|r| {
                r.to_ascii_lowercase()
                    .parse::<proto::PublicKey>()
                    .map_err(|e| Error::Usage(format!("--recovery-key: {e}")))
            })
            .transpose()?;
        if path.exists() {
            return Err(already_exists(path));
        }
        let seed = random32()?;
        write_new(path, KeyFile::render(&seed, recovery.as_ref()).as_bytes())
            .map_err(map_exists(path))?;
        let subject = proto::SecretKey::from_seed(*seed).public_key();
        return Ok(Report::ok(
            format!(
                "Key file written to {} (mode 0600)\nsubject     {subject} (the same for every \
                 controller)\nrecovery    {}",
                path.display(),
                if recovery.is_some() {
                    "committed to the given recovery key"
                } else {
                    "none (the chain cannot be recovered)"
                }
            ),
            json!({
                "key_file": path.display().to_string(),
                "subject": subject,
                "recovery_key": recovery,
            }),
        ));
    }
    if recovery_key.is_some() {
        return Err(Error::Usage(
            "--recovery-key is for key files (--key FILE); phrase keys derive their recovery keys"
                .into(),
        ));
    }
    let path = ctx.home.keys_path();
    if path.exists() {
        return Err(already_exists(&path));
    }
    home::create_private_dir(ctx.home.dir())?;
    ctx.home.ensure()?;
    let pass = new_passphrase(no_passphrase)?;
    let entropy = Entropy::from_bytes(*random32()?);
    let ks = KeyStore::seal(
        &entropy.master(0),
        0,
        entropy.recovery_public(),
        pass.as_ref().map(|p| p.as_str()),
        KdfParams::default(),
    )?;
    write_new(&path, ks.to_json()?.as_bytes()).map_err(map_exists(&path))?;
    show_words(&entropy.phrase());
    let encrypted = ks.is_encrypted();
    Ok(Report::ok(
        format!(
            "Keys created in {} (generation 0, {}).\nEach controller sees a different subject \
             id: `consent id --controller NAME`.",
            path.display(),
            if encrypted {
                "sealed with your passphrase"
            } else {
                "not passphrase-protected; file mode 0600"
            }
        ),
        json!({
            "keys_file": path.display().to_string(),
            "home": ctx.home.dir().display().to_string(),
            "generation": 0,
            "encrypted": encrypted,
            "words_shown_on": "stderr",
        }),
    ))
}
